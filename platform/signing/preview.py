"""The preview ("Xem danh sách"): exactly the doses that would be signed, checked again now.

Between ticking and previewing, a dose may have been edited, its person un-verified, someone
else may have signed it, or the officer's signing unit may have changed. Such doses drop out of
the selection here, each with the reason, so that what the officer reviews is what a batch
prepared from this preview would sign.

A full selection is 3,000 doses of up to 1,000 people, and the page is opened often: it must
not load and build 3,000 objects each time. So:

- ``_validate``: one set-based statement re-checks every selected dose and returns, per person
  and facility, the figures of the doses that still qualify (count, first and last date,
  resign count, the name key that orders the pages), and only the ids of the doses that no
  longer do. Only when some fail, their names and verification details are read, and they
  are removed from the selection;
- ``preview``: those figures and one page of people (``PAGE_SIZE``) with their ticked doses;
- ``validated_selection``: for the batch preparation, the same validation and removals, then
  every remaining dose id with its version.

Two statements per view, whatever the size of the selection.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    Select,
    SQLColumnExpression,
    any_,
    bindparam,
    case,
    delete,
    func,
    null,
    select,
    true,
)
from sqlalchemy.orm import Session

from kyso.platform.auth.access import signable_facilities
from kyso.platform.db import is_postgresql
from kyso.platform.formatting import SortKey, sort_key
from kyso.platform.i18n import translate
from kyso.platform.models import (
    Dose,
    Facility,
    Gender,
    Person,
    Role,
    SigningSelection,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.records.readmodel import join_dose, with_dose_details
from kyso.platform.signing.search import SigningState, check_officer, signed_any
from kyso.platform.signing.selection import MAX_DOSES, MAX_PEOPLE
from kyso.platform.signing.texts import status_reason

PAGE_SIZE = 100  # people per preview page
_CHUNK = 500  # dose ids per IN list (far below every driver's parameter limit)


class DropReason(enum.StrEnum):
    OUT_OF_SCOPE = "out_of_scope"
    NOT_VERIFIED = "not_verified"
    CHANGED = "changed"
    ALREADY_SIGNED = "already_signed"


@dataclass(frozen=True)
class Dropped:
    """A ticked dose that left the selection, and why."""

    dose_id: int
    person_name: str
    dose_number: int
    facility: str
    reason: DropReason
    status: VerificationStatus
    detail: Mapping[str, Any] | None

    def text(self, lang: str) -> str:
        return translate(
            f"signing.dropped_{self.reason.value}",
            lang,
            name=self.person_name,
            number=self.dose_number,
            facility=self.facility,
            reason=status_reason(self.status, self.detail, lang),
        )


@dataclass(frozen=True)
class PreviewDose:
    id: int
    version: int  # the version that a batch prepared from this preview signs
    dose_number: int
    vaccinated_on: date
    product: str
    lot: str
    facility_id: int
    facility: str
    state: SigningState  # UNSIGNED or RESIGN


@dataclass(frozen=True)
class PreviewPerson:
    id: int
    full_name: str
    birth_date: date
    gender: Gender
    identity_number: str | None
    doses: tuple[PreviewDose, ...]


@dataclass(frozen=True)
class SelectionFacts:
    """The whole (re-validated) selection in figures, computed in SQL."""

    people: int = 0
    doses: int = 0
    first_date: date | None = None
    last_date: date | None = None
    facilities: tuple[str, ...] = ()  # the facilities that administered the doses, by name
    resign: int = 0  # doses signed in an older version, to sign again


@dataclass(frozen=True)
class Preview:
    """The re-validated selection: its figures, what dropped out, and one page of people."""

    people: tuple[PreviewPerson, ...]  # the people of this page, by name, with their doses
    dropped: tuple[Dropped, ...]
    facts: SelectionFacts = SelectionFacts()
    page: int = 1
    page_size: int = PAGE_SIZE

    @property
    def people_count(self) -> int:
        return self.facts.people

    @property
    def dose_count(self) -> int:
        return self.facts.doses

    @property
    def first_date(self) -> date | None:
        return self.facts.first_date

    @property
    def last_date(self) -> date | None:
        return self.facts.last_date

    @property
    def facilities(self) -> tuple[str, ...]:
        return self.facts.facilities

    @property
    def resign_count(self) -> int:
        return self.facts.resign

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.facts.people / self.page_size))

    @property
    def within_limits(self) -> bool:
        return 0 < self.dose_count <= MAX_DOSES and self.people_count <= MAX_PEOPLE


def preview(
    session: Session, officer: User, *, page: int = 1, page_size: int = PAGE_SIZE
) -> Preview:
    """The officer's selection, re-validated, with page ``page`` of its people.

    Doses that no longer qualify are removed from the selection and reported. A page beyond
    the last (people were removed meanwhile) shows the last one. The caller owns the
    transaction (commit to make the removals stick).
    """
    checked = _validate(session, officer)
    pages = max(1, math.ceil(checked.facts.people / page_size))
    page = min(max(1, page), pages)
    start = (page - 1) * page_size
    people = _page(session, officer, checked.people[start : start + page_size])
    return Preview(
        people=people,
        dropped=checked.dropped,
        facts=checked.facts,
        page=page,
        page_size=page_size,
    )


def validated_selection(
    session: Session, officer: User
) -> tuple[dict[int, int], tuple[Dropped, ...]]:
    """Every dose of the re-validated selection (dose id -> version to sign), and the drops.

    For the batch preparation: the same checks as ``preview`` (and the same removals), then
    all the remaining doses. The version is the one the officer ticked, which the validation
    just found equal to the dose's current version. The caller owns the transaction.
    """
    dropped = _validate(session, officer).dropped
    rows = session.connection().execute(
        select(SigningSelection.dose_id, SigningSelection.dose_version).where(
            SigningSelection.user_id == officer.id
        )
    )
    return {dose_id: version for dose_id, version in rows.tuples().all()}, dropped


_REASON_CODES = {
    DropReason.OUT_OF_SCOPE: 1,
    DropReason.NOT_VERIFIED: 2,
    DropReason.ALREADY_SIGNED: 3,
    DropReason.CHANGED: 4,
}
_REASONS = {code: reason for reason, code in _REASON_CODES.items()}


@dataclass(frozen=True)
class _Checked:
    facts: SelectionFacts
    dropped: tuple[Dropped, ...]
    people: tuple[int, ...]  # the people still selected, in page order (name key, id)


def _validate(session: Session, officer: User) -> _Checked:
    """Check every selected dose again in one statement; remove and report those that fail.

    One row per person and facility comes back for the doses that still qualify (their count,
    first and last date, how many to sign again, and the person's name key for the page
    order), and one row per dose that does not, with the reason; nothing else. The doses are
    joined from the scope's facilities as PostgreSQL finds cheapest; for a facility it reads
    them from ``ix_doses_signing_search`` (index-only, some hundred pages in order: cheaper
    than 3,000 look-ups by id). A dose missing there is out of scope. Each person is read
    once; "signed in this version" and "signed before" are the dose's own signed_version (no
    probe of dose_signatures). Verification details are read for dropped doses only.
    """
    check_officer(officer)
    session.flush()  # the statements below go to the connection, past the session's autoflush
    mine = SigningSelection.user_id == officer.id
    statement = _validation_statement(officer, is_postgresql(session))
    groups = session.connection().execute(statement).tuples().all()
    doses = resign = 0
    first: date | None = None
    last: date | None = None
    facilities: set[str | None] = set()
    people: dict[int, str] = {}
    drops: dict[int, DropReason] = {}
    for code, dose_id, person_id, name, facility, count, low, high, resigns in groups:
        if code:
            drops[dose_id] = _REASONS[code]
            continue
        doses += count
        resign += resigns
        facilities.add(facility)
        people[person_id] = name
        first = low if first is None or low < first else first
        last = high if last is None or high > last else last
    dropped: tuple[Dropped, ...] = ()
    if drops:
        dropped = _describe(session, officer, drops)
        for chunk in _chunks(list(drops)):
            session.execute(
                delete(SigningSelection).where(mine, SigningSelection.dose_id.in_(chunk))
            )
    facts = SelectionFacts(
        people=len(people),
        doses=doses,
        first_date=first,
        last_date=last,
        facilities=tuple(sorted(name for name in facilities if name is not None)),
        resign=resign,
    )
    order = sorted(people, key=lambda person_id: (sort_key(people[person_id]), person_id))
    return _Checked(facts, dropped, tuple(order))


# Built statements by (officer, role, signing unit, facility, PostgreSQL or not): an officer
# opens the preview again and again, and building this statement costs more CPU than running its
# result through Python. The facility is part of the key because the scope depends on it
# (signable_facilities); the backend because the form of the statement does.
_STATEMENTS: dict[tuple[int, Role, int | None, int | None, bool], Select[Any]] = {}
_STATEMENTS_MAX = 1024


def _validation_statement(officer: User, postgresql: bool) -> Select[Any]:
    """The statement of ``_validate`` for this officer (scope and selection), built once.

    The form (not the answer) depends on the officer, so that each plan reads what it needs:

    - the scope: an officer of one facility (``facility_id`` set) keeps ``IN (scope)``, which
      PostgreSQL serves by an index-only scan of that facility's doses in
      ``ix_doses_signing_search`` (~100 pages, cheaper than 3,000 look-ups by id); an officer
      of a central unit (tens of facilities, up to 500,000 doses in scope) has, on
      PostgreSQL, each selected dose looked up by id (a LATERAL subquery with LIMIT 1), and
      the scope is one array computed once (``facility_id = ANY(ARRAY(scope))``), not a
      facilities probe per dose. Otherwise, with fresh statistics, PostgreSQL hashes the
      selection and reads every dose of the scope, which grows with the unit, not with the
      selection.
    """
    key = (officer.id, officer.role, officer.signing_unit_id, officer.facility_id, postgresql)
    statement = _STATEMENTS.get(key)
    if statement is not None:
        return statement
    mine = SigningSelection.user_id == officer.id
    scope = signable_facilities(officer)
    columns = select(
        Dose.id, Dose.version, Dose.signed_version, Dose.facility_id, Dose.vaccinated_on
    )
    scoped: Any
    if postgresql and officer.facility_id is None:
        # Each selected dose by id (LIMIT 1 keeps the planner from turning this into a join
        # that reads all the scope's doses: 310,000 index entries for a district centre), the
        # scope computed once.
        scoped = (
            columns.where(
                Dose.id == SigningSelection.dose_id,
                Dose.facility_id == any_(func.array(scope.scalar_subquery())),
            )
            .limit(1)
            .lateral("scoped")
        )
        joined: ColumnElement[bool] = true()
    else:
        scoped = columns.where(Dose.facility_id.in_(scope)).subquery("scoped")
        joined = scoped.c.id == SigningSelection.dose_id
    # The selection's people, each read once (~1,000 primary-key probes for 3,000 doses), not
    # once per dose as a join of people to the selection's rows is unless PostgreSQL memoizes
    # it (which its statistics of signing_selections decide, run to run).
    people = (
        select(Person.id, Person.full_name, Person.verification_status)
        .where(Person.id.in_(select(SigningSelection.person_id).where(mine)))
        .cte("selected_people")
        .prefix_with("MATERIALIZED")
    )
    # 2: a signature of the current version that nothing superseded; 1: older ones only;
    # NULL: never signed (the dose's signed_version, kept by triggers: search.signed_current).
    signed = case(
        (scoped.c.signed_version == scoped.c.version, 2),
        (scoped.c.signed_version.is_not(None), 1),
        else_=null(),
    )
    rows = (
        select(
            SigningSelection.dose_id.label("dose_id"),
            SigningSelection.person_id.label("person_id"),
            SigningSelection.dose_version.label("selected_version"),
            scoped.c.version.label("version"),
            scoped.c.facility_id.label("facility_id"),
            scoped.c.vaccinated_on.label("vaccinated_on"),
            people.c.full_name.label("full_name"),
            people.c.verification_status.label("status"),
            signed.label("signed"),
        )
        .select_from(SigningSelection)
        .outerjoin(scoped, joined)
        .join(people, people.c.id == SigningSelection.person_id)
        .where(mine)
        .cte("checked")
        # Each dose looked up once, though its columns are used several times below.
        .prefix_with("MATERIALIZED")
    )
    codes = _REASON_CODES
    reason = case(
        (rows.c.version.is_(None), codes[DropReason.OUT_OF_SCOPE]),
        (rows.c.status != VerificationStatus.VERIFIED, codes[DropReason.NOT_VERIFIED]),
        (rows.c.signed == 2, codes[DropReason.ALREADY_SIGNED]),
        (rows.c.version != rows.c.selected_version, codes[DropReason.CHANGED]),
        else_=0,
    )
    dropped_id = case((reason != 0, rows.c.dose_id), else_=null())
    statement = (
        select(
            reason,
            dropped_id,
            rows.c.person_id,
            rows.c.full_name,
            Facility.name,
            func.count(),
            func.min(rows.c.vaccinated_on),
            func.max(rows.c.vaccinated_on),
            func.count(rows.c.signed),
        )
        .outerjoin(Facility, Facility.id == rows.c.facility_id)
        .group_by(reason, dropped_id, rows.c.person_id, rows.c.full_name, Facility.name)
    )
    if len(_STATEMENTS) >= _STATEMENTS_MAX:
        _STATEMENTS.clear()
    _STATEMENTS[key] = statement
    return statement


def _describe(
    session: Session, officer: User, drops: Mapping[int, DropReason]
) -> tuple[Dropped, ...]:
    """What the messages about the dropped doses need (verification details: theirs only)."""
    found: list[tuple[tuple[SortKey, int, int, int], Dropped]] = []
    for chunk in _chunks(list(drops)):
        rows = (
            session.connection()
            .execute(
                with_dose_details(
                    select(
                        Dose.id,
                        Person.id,
                        Dose.dose_number,
                        Person.full_name,
                        Facility.name,
                        Person.verification_status,
                        Person.verification_detail,
                    ),
                    person=True,
                    facility=True,
                ).where(Dose.id.in_(chunk))
            )
            .tuples()
        )
        for dose_id, person_id, number, name, facility, status, detail in rows:
            item = Dropped(
                dose_id=dose_id,
                person_name=name,
                dose_number=number,
                facility=facility,
                reason=drops[dose_id],
                status=status,
                detail=detail,
            )
            found.append(((sort_key(name), person_id, number, dose_id), item))
    found.sort(key=lambda pair: pair[0])
    return tuple(item for _key, item in found)


def _page(session: Session, officer: User, people_ids: Sequence[int]) -> tuple[PreviewPerson, ...]:
    """These people (in this order), with their ticked doses."""
    if not people_ids:
        return ()
    order = {person_id: n for n, person_id in enumerate(people_ids)}
    rows = (
        session.connection()
        .execute(
            with_dose_details(
                join_dose(
                    select(
                        Person.id,
                        Person.full_name,
                        Person.birth_date,
                        Person.gender,
                        Person.identity_number,
                        Dose.id,
                        Dose.version,
                        Dose.dose_number,
                        Dose.vaccinated_on,
                        Dose.lot,
                        Dose.facility_id,
                        VaccineProduct.name,
                        Facility.name,
                        signed_any(),
                    )
                    .select_from(SigningSelection)
                    .join(Person, Person.id == SigningSelection.person_id),
                    SigningSelection.dose_id,
                ),
                product=True,
                facility=True,
            ).where(
                SigningSelection.user_id == officer.id,
                _among(SigningSelection.person_id, people_ids, session),
            )
        )
        .tuples()
        .all()
    )
    ordered = sorted(rows, key=lambda row: (order[row[0]], row[7], row[5]))
    people: list[PreviewPerson] = []
    person: tuple[int, str, date, Gender, str | None] | None = None
    doses: list[PreviewDose] = []
    for (
        person_id,
        full_name,
        birth_date,
        gender,
        identity_number,
        dose_id,
        version,
        number,
        when,
        lot,
        facility_id,
        product,
        facility,
        signed_before,
    ) in ordered:
        if person is None or person[0] != person_id:
            if person is not None:
                people.append(PreviewPerson(*person, doses=tuple(doses)))
            person = (person_id, full_name, birth_date, gender, identity_number)
            doses = []
        doses.append(
            PreviewDose(
                id=dose_id,
                version=version,
                dose_number=number,
                vaccinated_on=when,
                product=product,
                lot=lot,
                facility_id=facility_id,
                facility=facility,
                state=SigningState.RESIGN if signed_before else SigningState.UNSIGNED,
            )
        )
    if person is not None:
        people.append(PreviewPerson(*person, doses=tuple(doses)))
    return tuple(people)


def _among(
    column: SQLColumnExpression[int], ids: Sequence[int], session: Session
) -> ColumnElement[bool]:
    """``column IN ids``; on PostgreSQL as one array parameter (``= ANY``): a list of 100
    parameters is rendered, sent and parsed again on every call, which costs more CPU than
    the query."""
    if is_postgresql(session):
        return column == any_(bindparam("ids", list(ids), type_=ARRAY(Integer())))
    return column.in_(list(ids))


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])
