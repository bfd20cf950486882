"""The preview ("Xem danh sách"): exactly the doses that would be signed, checked again now.

Between ticking and previewing, a dose may have been edited, its person un-verified, someone
else may have signed it, or the officer's signing unit may have changed. Such doses drop out of
the selection here, each with the reason, so that what the officer reviews is what a batch
prepared from this preview would sign.

A full selection is 3,000 doses of up to 1,000 people, and the page is opened often: it must
not load and build 3,000 objects each time. So:

- ``_validate``: one set-based statement over the selection re-checks every dose and returns
  the summary (doses, first and last date, resign count per facility; the people counted from
  the selection) and only the dose ids that no longer qualify. Only when some do, their names
  and verification details are read, and they are removed;
- ``preview``: the summary and one page of people (``PAGE_SIZE``) with their ticked doses;
- ``validated_selection``: for the batch preparation, the same validation and then every
  remaining dose id with its version.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, case, delete, distinct, func, null, select
from sqlalchemy.orm import Session

from kyso.platform.auth.access import signable_facilities
from kyso.platform.i18n import translate
from kyso.platform.models import (
    Dose,
    Facility,
    Gender,
    Person,
    SigningSelection,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.signing.search import (
    SigningState,
    check_officer,
    signed_any,
    signed_current,
)
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
    facts, dropped = _validate(session, officer)
    pages = max(1, math.ceil(facts.people / page_size))
    page = min(max(1, page), pages)
    people = _page(session, officer, (page - 1) * page_size, page_size) if facts.doses else ()
    return Preview(people=people, dropped=dropped, facts=facts, page=page, page_size=page_size)


def validated_selection(
    session: Session, officer: User
) -> tuple[dict[int, int], tuple[Dropped, ...]]:
    """Every dose of the re-validated selection (dose id -> version to sign), and the drops.

    For the batch preparation: the same checks as ``preview`` (and the same removals), then
    all the remaining doses. The version is the one the officer ticked, which the validation
    just found equal to the dose's current version. The caller owns the transaction.
    """
    _facts, dropped = _validate(session, officer)
    rows = session.execute(
        select(SigningSelection.dose_id, SigningSelection.dose_version).where(
            SigningSelection.user_id == officer.id
        )
    )
    return {dose_id: version for dose_id, version in rows.tuples()}, dropped


_REASON_CODES = {
    DropReason.OUT_OF_SCOPE: 1,
    DropReason.NOT_VERIFIED: 2,
    DropReason.ALREADY_SIGNED: 3,
    DropReason.CHANGED: 4,
}
_REASONS = {code: reason for reason, code in _REASON_CODES.items()}


def _validate(session: Session, officer: User) -> tuple[SelectionFacts, tuple[Dropped, ...]]:
    """Check every selected dose again in one statement; remove and report those that fail.

    The statement groups the selection by (drop reason, dose id if dropped, facility): the
    doses that still qualify come back as one row per facility with their count, dates and
    resign count; each dropped dose as a row of its own. Nothing else is transferred.
    """
    check_officer(officer)
    codes = _REASON_CODES
    reason = case(
        (Dose.facility_id.not_in(signable_facilities(officer)), codes[DropReason.OUT_OF_SCOPE]),
        (
            Person.verification_status != VerificationStatus.VERIFIED,
            codes[DropReason.NOT_VERIFIED],
        ),
        (signed_current(), codes[DropReason.ALREADY_SIGNED]),
        (Dose.version != SigningSelection.dose_version, codes[DropReason.CHANGED]),
        else_=0,
    )
    rows = (
        select(
            SigningSelection.dose_id.label("dose_id"),
            Dose.facility_id.label("facility_id"),
            Dose.vaccinated_on.label("vaccinated_on"),
            reason.label("reason"),
            case((signed_any(), 1), else_=0).label("resign"),
        )
        .join(Dose, Dose.id == SigningSelection.dose_id)
        .join(Person, Person.id == SigningSelection.person_id)
        .where(SigningSelection.user_id == officer.id)
        .cte("checked")
    )
    if session.get_bind().dialect.name == "postgresql":
        # Evaluated once per dose: the reason (with its signature probe) is used twice below.
        rows = rows.prefix_with("MATERIALIZED")
    dropped_id = case((rows.c.reason != 0, rows.c.dose_id), else_=null())
    people = (
        select(func.count(distinct(SigningSelection.person_id)))
        .where(SigningSelection.user_id == officer.id)
        .scalar_subquery()
    )
    groups = session.execute(
        select(
            rows.c.reason,
            dropped_id,
            Facility.name,
            func.count(),
            func.min(rows.c.vaccinated_on),
            func.max(rows.c.vaccinated_on),
            func.sum(rows.c.resign),
            people,
        )
        .join(Facility, Facility.id == rows.c.facility_id)
        .group_by(rows.c.reason, dropped_id, rows.c.facility_id, Facility.name)
    ).tuples()
    doses = resign = people_count = 0
    first: date | None = None
    last: date | None = None
    facilities: set[str] = set()
    drops: dict[int, DropReason] = {}
    for code, dose_id, facility, count, low, high, resigns, selected_people in groups:
        people_count = selected_people
        if code:
            drops[dose_id] = _REASONS[code]
            continue
        doses += count
        resign += resigns or 0
        facilities.add(facility)
        first = low if first is None or low < first else first
        last = high if last is None or high > last else last
    dropped: tuple[Dropped, ...] = ()
    if drops:
        dropped = _describe(session, officer, drops)
        for chunk in _chunks(list(drops)):
            session.execute(
                delete(SigningSelection).where(
                    SigningSelection.user_id == officer.id, SigningSelection.dose_id.in_(chunk)
                )
            )
        people_count = session.execute(select(people)).scalar_one()
    facts = SelectionFacts(
        people=people_count,
        doses=doses,
        first_date=first,
        last_date=last,
        facilities=tuple(sorted(facilities)),
        resign=resign,
    )
    return facts, dropped


def _describe(
    session: Session, officer: User, drops: Mapping[int, DropReason]
) -> tuple[Dropped, ...]:
    """What the messages about the dropped doses need (verification details: theirs only)."""
    found: list[tuple[tuple[str, int, int, int], Dropped]] = []
    for chunk in _chunks(list(drops)):
        rows = session.execute(
            select(
                Dose.id,
                Person.name_key,
                Person.id,
                Dose.dose_number,
                Person.full_name,
                Facility.name,
                Person.verification_status,
                Person.verification_detail,
            )
            .join(Person, Person.id == Dose.person_id)
            .join(Facility, Facility.id == Dose.facility_id)
            .where(Dose.id.in_(chunk))
        ).tuples()
        for dose_id, key, person_id, number, name, facility, status, detail in rows:
            item = Dropped(
                dose_id=dose_id,
                person_name=name,
                dose_number=number,
                facility=facility,
                reason=drops[dose_id],
                status=status,
                detail=detail,
            )
            found.append(((key, person_id, number, dose_id), item))
    found.sort(key=lambda pair: pair[0])
    return tuple(item for _key, item in found)


def _page(session: Session, officer: User, offset: int, size: int) -> tuple[PreviewPerson, ...]:
    """``size`` people of the selection from ``offset``, by name, with their ticked doses."""
    mine = SigningSelection.user_id == officer.id
    page_people = (
        select(Person.id, Person.name_key)
        .where(Person.id.in_(select(SigningSelection.person_id).where(mine)))
        .order_by(Person.name_key, Person.id)
        .limit(size)
        .offset(offset)
        .subquery()
    )
    rows = session.execute(
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
        .select_from(page_people)
        .join(Person, Person.id == page_people.c.id)
        .join(SigningSelection, and_(mine, SigningSelection.person_id == page_people.c.id))
        .join(Dose, Dose.id == SigningSelection.dose_id)
        .join(VaccineProduct, VaccineProduct.id == Dose.product_id)
        .join(Facility, Facility.id == Dose.facility_id)
        .order_by(page_people.c.name_key, page_people.c.id, Dose.dose_number, Dose.id)
    ).tuples()
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
    ) in rows:
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


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])
