"""The officer's selection: the doses ticked for the next signing batch.

Rules (also enforced again at preview, since records change between ticking and signing):
- only doses in the officer's scope; a crafted id outside it refuses the whole request and is
  written to the audit trail;
- only doses of people verified against the National Population Database;
- never a dose already signed in its current version;
- at most ``MAX_PEOPLE`` people and ``MAX_DOSES`` doses: an addition that would go beyond is
  refused as a whole, saying how many can still be added.

Ticking a dose records the version the officer saw; ticking it again records the new version.
Every change takes a lock for the officer first, so that two tabs cannot both pass the limits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, delete, distinct, func, select, text, update
from sqlalchemy.orm import Session

from kyso.platform.auth.service import audit
from kyso.platform.db import backend, is_postgresql, is_sqlite, vietnamese
from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.models import (
    Dose,
    Person,
    SigningSelection,
    User,
    VerificationStatus,
)
from kyso.platform.models.columns import utcnow
from kyso.platform.records.readmodel import with_dose_details
from kyso.platform.signing.search import (
    SearchFilters,
    StateFilter,
    dose_conditions,
    has_matching_dose,
    person_conditions,
    scope_facility_ids,
    signed_current,
    validate,
)
from kyso.platform.signing.texts import CountError, count_text, status_reason

MAX_PEOPLE = 1000
MAX_DOSES = 3000


@dataclass(frozen=True)
class SelectionSummary:
    people: int
    doses: int

    @property
    def people_left(self) -> int:
        return max(0, MAX_PEOPLE - self.people)

    @property
    def doses_left(self) -> int:
        return max(0, MAX_DOSES - self.doses)


@dataclass(frozen=True)
class SelectionChange:
    """What a change did, for the message shown to the officer."""

    added: int
    removed: int
    summary: SelectionSummary
    skipped_unverified: int = 0  # tick all: people left out because they are not verified
    skipped_capped: bool = False
    more_left: bool = False  # "Chọn ... người đầu tiên": the search has more people than it took


class LimitExceeded(DomainError):
    """The addition would make the batch larger than one signing may be."""

    def __init__(
        self,
        summary: SelectionSummary,
        doses: int,
        people: int,
        *,
        at_least: bool = False,
    ) -> None:
        super().__init__("signing.limit_exceeded")
        self.summary = summary
        self.doses = doses
        self.people = people
        self.at_least = at_least

    def text(self, language: str = "vi") -> str:
        return translate(
            "signing.limit_exceeded",
            language,
            doses=count_text(self.doses, language, at_least=self.at_least),
            people=count_text(self.people, language, at_least=self.at_least),
            max_people=count_text(MAX_PEOPLE, language),
            max_doses=count_text(MAX_DOSES, language),
            have_people=count_text(self.summary.people, language),
            have_doses=count_text(self.summary.doses, language),
            people_left=count_text(self.summary.people_left, language),
            doses_left=count_text(self.summary.doses_left, language),
        )


class NotVerified(DomainError):
    """A dose of a person who is not verified against the registry was asked for."""

    def __init__(
        self, name: str, status: VerificationStatus, detail: Mapping[str, Any] | None, others: int
    ) -> None:
        super().__init__("signing.refused_not_verified")
        self.name = name
        self.status = status
        self.detail = detail
        self.others = others

    def text(self, language: str = "vi") -> str:
        text = translate(
            "signing.refused_not_verified",
            language,
            name=self.name,
            reason=status_reason(self.status, self.detail, language),
        )
        if self.others:
            text += " " + translate("signing.refused_others", language, count=self.others)
        return text


def summary(session: Session, officer: User) -> SelectionSummary:
    doses, people = session.execute(
        select(func.count(), func.count(distinct(SigningSelection.person_id))).where(
            SigningSelection.user_id == officer.id
        )
    ).one()
    return SelectionSummary(people=int(people), doses=int(doses))


def selected_dose_ids(session: Session, officer: User) -> set[int]:
    return set(
        session.scalars(
            select(SigningSelection.dose_id).where(SigningSelection.user_id == officer.id)
        )
    )


def _lock(session: Session, officer: User) -> None:
    """Serialise one officer's selection changes, so that two tabs cannot both pass the limits.

    PostgreSQL: lock the officer's row. SQLite has no row locks and starts a transaction only
    at the first write, so a no-op write takes the database's write lock before anything is read.
    """
    if is_sqlite(session):
        session.execute(update(User).where(User.id == officer.id).values(id=User.id))
    else:
        session.execute(select(User.id).where(User.id == officer.id).with_for_update())


def _refuse_out_of_scope(session: Session, officer: User, dose_ids: Collection[int]) -> None:
    # Only a crafted request gets here (the page never offers such a dose): keep a trace.
    audit(
        session,
        "signing.selection_refused",
        officer,
        target="doses",
        dose_ids=sorted(dose_ids)[:20],
        count=len(dose_ids),
    )
    session.flush()
    raise CountError("signing.refused_out_of_scope", count=len(dose_ids))


def _first_that_fit(
    rows: list[Row[Any]], have: SelectionSummary, *, truncated: bool
) -> list[Row[Any]]:
    """The rows of the first people (in order) whose doses all fit in what the batch has left."""
    if truncated and rows:  # the last person's doses may go on beyond the rows read
        rows = [r for r in rows if r.person_id != rows[-1].person_id]
    by_person: dict[int, list[Row[Any]]] = {}
    for r in rows:
        by_person.setdefault(r.person_id, []).append(r)
    kept: list[Row[Any]] = []
    people = doses = 0
    for theirs in by_person.values():
        new = [r for r in theirs if r.selected_version is None]
        is_new_person = len(new) == len(theirs)
        if doses + len(new) > have.doses_left or people + is_new_person > have.people_left:
            break
        kept += theirs
        doses += len(new)
        people += is_new_person
    return kept


def _add(session: Session, officer: User, rows: list[Row[Any]]) -> int:
    """Insert or refresh (dose_id, person_id, version) rows, within the limits."""
    existing = {
        dose_id: (person_id, version)
        for dose_id, person_id, version in session.execute(
            select(
                SigningSelection.dose_id,
                SigningSelection.person_id,
                SigningSelection.dose_version,
            ).where(SigningSelection.user_id == officer.id)
        )
    }
    have = SelectionSummary(
        people=len({person for person, _ in existing.values()}), doses=len(existing)
    )
    have_people = {person for person, _ in existing.values()}
    new = [r for r in rows if r.dose_id not in existing]
    refreshed = [r for r in rows if r.dose_id in existing and existing[r.dose_id][1] != r.version]
    new_people = {r.person_id for r in new} - have_people
    if len(new) > have.doses_left or len(new_people) > have.people_left:
        raise LimitExceeded(have, doses=len(new), people=len({r.person_id for r in new}))
    if new:
        _insert(session, officer, new)
    if refreshed:
        _refresh(session, officer, refreshed)
    return len(new)


def _insert(session: Session, officer: User, rows: list[Row[Any]]) -> None:
    """The new rows in one statement on PostgreSQL (``INSERT … SELECT FROM unnest(arrays)``):
    ticking a search adds up to 3,000 rows, and an executemany sends the server one INSERT
    per row. SQLite runs in-process, where an executemany costs little."""
    now = utcnow()
    if is_postgresql(session):
        session.execute(
            _PG_INSERT,
            {
                "user_id": officer.id,
                "added_at": now,
                "dose_ids": [r.dose_id for r in rows],
                "person_ids": [r.person_id for r in rows],
                "versions": [r.version for r in rows],
            },
        )
        return
    session.execute(
        _SELECTIONS.insert(),
        [
            {
                "user_id": officer.id,
                "dose_id": r.dose_id,
                "person_id": r.person_id,
                "dose_version": r.version,
                "added_at": now,
            }
            for r in rows
        ],
    )


def _refresh(session: Session, officer: User, rows: list[Row[Any]]) -> None:
    """The version seen now of doses ticked before an edit: one statement on PostgreSQL."""
    if is_postgresql(session):
        session.execute(
            _PG_REFRESH,
            {
                "user_id": officer.id,
                "dose_ids": [r.dose_id for r in rows],
                "versions": [r.version for r in rows],
            },
        )
        return
    session.execute(
        _SELECTIONS.update()
        .where(
            _SELECTIONS.c.user_id == bindparam("k_user"),
            _SELECTIONS.c.dose_id == bindparam("k_dose"),
        )
        .values(dose_version=bindparam("v_version")),
        [{"k_user": officer.id, "k_dose": r.dose_id, "v_version": r.version} for r in rows],
    )


_SELECTIONS = cast(Table, SigningSelection.__table__)
# Array parameters: the statement's text never changes (compiled once), whatever the count.
_PG_INSERT = text(
    "INSERT INTO signing_selections (user_id, dose_id, person_id, dose_version, added_at)"
    " SELECT :user_id, d.dose_id, d.person_id, d.dose_version, :added_at"
    " FROM unnest(CAST(:dose_ids AS integer[]), CAST(:person_ids AS integer[]),"
    " CAST(:versions AS integer[])) AS d(dose_id, person_id, dose_version)"
)
_PG_REFRESH = text(
    "UPDATE signing_selections AS s SET dose_version = d.dose_version"
    " FROM unnest(CAST(:dose_ids AS integer[]), CAST(:versions AS integer[]))"
    " AS d(dose_id, dose_version)"
    " WHERE s.user_id = :user_id AND s.dose_id = d.dose_id"
)


def add_doses(
    session: Session,
    officer: User,
    dose_ids: Iterable[int],
    seen: Mapping[int, int] | None = None,
) -> SelectionChange:
    """Tick these doses (all or none).

    ``seen`` maps dose ids to the version the page showed: a dose edited since the page was
    drawn is refused, so that the officer never ticks data they have not seen.
    """
    wanted = set(dose_ids)
    facility_ids = scope_facility_ids(session, officer)
    _lock(session, officer)
    added = _add(session, officer, _checked(session, officer, wanted, facility_ids, seen or {}))
    return SelectionChange(added=added, removed=0, summary=summary(session, officer))


def _checked(
    session: Session,
    officer: User,
    wanted: set[int],
    facility_ids: list[int],
    seen: Mapping[int, int],
) -> list[Row[Any]]:
    """The rows to add for ``wanted`` dose ids, or a refusal saying why (none are added)."""
    if not wanted:
        return []
    if len(wanted) > MAX_DOSES:
        raise CountError("signing.too_many_requested", max_doses=MAX_DOSES)
    rows = list(
        session.execute(
            with_dose_details(
                select(
                    Dose.id.label("dose_id"),
                    Dose.person_id,
                    Dose.version,
                    Dose.dose_number,
                    Dose.facility_id,
                    Person.full_name,
                    Person.verification_status,
                    Person.verification_detail,
                    signed_current().label("signed"),
                ),
                person=True,
            )
            .where(Dose.id.in_(wanted))
            .order_by(vietnamese(session, Person.full_name), Person.id, Dose.dose_number)
        )
    )
    scope = set(facility_ids)
    outside = wanted - {r.dose_id for r in rows if r.facility_id in scope}
    if outside:
        _refuse_out_of_scope(session, officer, outside)
    unverified = [r for r in rows if r.verification_status is not VerificationStatus.VERIFIED]
    if unverified:
        first = unverified[0]
        others = len({r.person_id for r in unverified}) - 1
        raise NotVerified(
            first.full_name, first.verification_status, first.verification_detail, others
        )
    signed = [r for r in rows if r.signed]
    if signed:
        raise DomainError(
            "signing.refused_already_signed",
            name=signed[0].full_name,
            number=signed[0].dose_number,
        )
    changed = [r for r in rows if seen.get(r.dose_id, r.version) != r.version]
    if changed:
        raise DomainError(
            "signing.refused_changed", name=changed[0].full_name, number=changed[0].dose_number
        )
    return rows


def remove_doses(session: Session, officer: User, dose_ids: Iterable[int]) -> SelectionChange:
    """Untick these doses (ids not in the selection are ignored)."""
    wanted = set(dose_ids)
    removed = 0
    if wanted:
        _lock(session, officer)
        removed = _delete(
            session,
            delete(SigningSelection).where(
                SigningSelection.user_id == officer.id, SigningSelection.dose_id.in_(wanted)
            ),
        )
    return SelectionChange(added=0, removed=removed, summary=summary(session, officer))


def _delete(session: Session, statement: Any) -> int:
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


def update_page(
    session: Session,
    officer: User,
    *,
    add: Iterable[int],
    remove: Iterable[int],
    seen: Mapping[int, int] | None = None,
) -> SelectionChange:
    """One page's ticks: removals first (they make room), then the additions (all or none).

    If the additions are refused, the removals stay done and the refusal is raised.
    """
    to_add = set(add)
    to_remove = set(remove) - to_add
    removed = remove_doses(session, officer, to_remove).removed if to_remove else 0
    added = add_doses(session, officer, to_add, seen).added if to_add else 0
    return SelectionChange(added=added, removed=removed, summary=summary(session, officer))


def add_person(
    session: Session, officer: User, person_id: int, filters: SearchFilters | None = None
) -> SelectionChange:
    """Tick every selectable dose of one person (those matching ``filters`` when given)."""
    filters = filters or SearchFilters(state=StateFilter.ALL)
    validate(filters)
    facility_ids = scope_facility_ids(session, officer)
    in_scope = session.scalar(
        select(Dose.id).where(Dose.person_id == person_id, Dose.facility_id.in_(facility_ids))
    )
    if in_scope is None:
        # The page never offers a person outside the scope: a crafted request.
        _refuse_out_of_scope(session, officer, {person_id})
    doses = session.execute(
        select(Dose.id, signed_current().label("signed")).where(
            Dose.person_id == person_id, *dose_conditions(officer, filters, facility_ids)
        )
    )
    wanted = {d.id for d in doses if not d.signed}
    if not wanted:
        raise DomainError("signing.nothing_to_add")
    return add_doses(session, officer, wanted)


def remove_person(session: Session, officer: User, person_id: int) -> SelectionChange:
    _lock(session, officer)
    removed = _delete(
        session,
        delete(SigningSelection).where(
            SigningSelection.user_id == officer.id, SigningSelection.person_id == person_id
        ),
    )
    return SelectionChange(added=0, removed=removed, summary=summary(session, officer))


def clear(session: Session, officer: User) -> SelectionChange:
    _lock(session, officer)
    removed = _delete(
        session, delete(SigningSelection).where(SigningSelection.user_id == officer.id)
    )
    return SelectionChange(added=0, removed=removed, summary=summary(session, officer))


def add_search(
    session: Session, officer: User, filters: SearchFilters, *, first: bool = False
) -> SelectionChange:
    """Tick all ("chọn tất cả"): every selectable dose of the whole search, not just the page.

    Selectable means: person verified, not signed in its current version, in scope. People who
    are not verified are left out and counted, so that the officer knows they exist.

    ``first`` ("Chọn 1.000 người đầu tiên"): a search larger than one signing takes the first
    people in the list's order, as many as still fit (all their doses, within both limits),
    instead of refusing. Once they are signed, the same button takes the next ones.
    """
    validate(filters)
    facility_ids = scope_facility_ids(session, officer)
    _lock(session, officer)
    doses_match = [*dose_conditions(officer, filters, facility_ids), ~signed_current()]
    # The people of the search with a dose that could be signed (see has_matching_dose).
    people = [
        *person_conditions(filters, backend(session)),
        has_matching_dose(session, filters, doses_match),
    ]
    selectable = (
        with_dose_details(
            select(
                Dose.id.label("dose_id"),
                Dose.person_id,
                Dose.version,
                SigningSelection.dose_version.label("selected_version"),
            ),
            person=True,
        )
        .outerjoin(
            SigningSelection,
            (SigningSelection.dose_id == Dose.id) & (SigningSelection.user_id == officer.id),
        )
        .where(
            *people,
            *doses_match,
            Person.verification_status == VerificationStatus.VERIFIED,
            (SigningSelection.dose_version.is_(None))
            | (SigningSelection.dose_version != Dose.version),
        )
        .order_by(vietnamese(session, Person.full_name), Person.id, Dose.dose_number)
    )
    # New doses can be at most MAX_DOSES; refreshed ones at most what is already selected, so
    # more than MAX_DOSES rows means the limit is exceeded whatever they are.
    rows = list(session.execute(selectable.limit(MAX_DOSES + 1)))
    have = summary(session, officer)
    more_left = False
    if first:
        truncated = len(rows) > MAX_DOSES
        kept = _first_that_fit(rows, have, truncated=truncated)
        more_left = len(kept) < len(rows)
        if rows and not kept:  # the batch is full: sign it first
            new = [r for r in rows if r.selected_version is None]
            raise LimitExceeded(
                have, doses=len(new), people=len({r.person_id for r in new}), at_least=truncated
            )
        rows = kept
    elif len(rows) > MAX_DOSES:
        new = [r for r in rows if r.selected_version is None]
        raise LimitExceeded(
            have, doses=len(new), people=len({r.person_id for r in new}), at_least=True
        )
    unverified_people = (
        select(Person.id)
        .where(*people, Person.verification_status != VerificationStatus.VERIFIED)
        .limit(MAX_PEOPLE + 1)
        .subquery()
    )
    skipped = int(session.scalar(select(func.count()).select_from(unverified_people)) or 0)
    added = _add(session, officer, rows)
    return SelectionChange(
        added=added,
        removed=0,
        summary=summary(session, officer),
        skipped_unverified=min(skipped, MAX_PEOPLE),
        skipped_capped=skipped > MAX_PEOPLE,
        more_left=more_left,
    )
