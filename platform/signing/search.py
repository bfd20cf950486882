"""Finding the doses a signing officer may sign: filters, scope, pages of people.

Results are pages of people (each with the doses that matched), in Vietnamese alphabetical order
of the name (a ă â b c d đ …, tones second: Dương before Đặng and Đoàn; ``db.vietnamese``) and
then the id, and paged by keyset (the last name and id of a page), not by OFFSET: a page
never repeats or skips a person when doses get signed, ticked or added between two clicks, and
a late page costs the same as the first.

The name filter is a prefix of the whole name as written on the identity card, family name
first ("nguyen van a" finds "Nguyễn Văn An" and "Nguyễn Văn Anh"), ignoring accents, case and
extra spaces. It deliberately does not match a given name alone ("an"): that cannot use an
index over a million people, and in Vietnam it would return a large share of any population.
Officers narrow by date, phone or identity number instead.

Performance (PostgreSQL, 10 million people): one query for the page of people and, on a first
page, its count capped at ``COUNT_CAP`` people (a broad search never counts the whole result);
one for the page's people and one for their doses. A search by dates, signing state and name
reads only the scope's doses in ``ix_doses_signing_search``, which carries the person's name
and the signed version (``keys_from_doses``); one by phone or identity number starts from
people(phone, name_key || '') or people(identity_number) and checks each person's doses.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    Select,
    SQLColumnExpression,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from kyso.platform.auth.access import signable_facilities
from kyso.platform.db import backend, is_postgresql, vietnamese
from kyso.platform.errors import DomainError
from kyso.platform.formatting import day
from kyso.platform.inputs import DateInvalid, is_number, parse_date
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
from kyso.platform.models.signing import NAME_AFTER_PHONE
from kyso.platform.records.names import name_key
from kyso.platform.records.readmodel import with_dose_details

COUNT_CAP = 1000  # a result count above this is shown as "1.000+"
# People with a matching dose looked up by id, at most (PostgreSQL: one array parameter). Up to
# ~100,000 this beats EXISTS, whose plan for a broad name reads the whole people table in
# parallel workers that each compute the matching doses again (bench/README.md, 1M people:
# a district centre's month, "Nguyễn", to sign: 820 -> 456 ms at load 8).
CANDIDATE_CAP = 100_000
# SQLite: at most this many (the ids are bound one by one, below its 32,766 variables).
SQLITE_CANDIDATE_CAP = 20_000
# Digits of a phone prefix ("0903") from which the phone drives a name + phone search (below
# that, a prefix such as "09" is shared by most people: the name drives). Four digits leave
# ~1 person in 360 (28,000 at 10M people), checked against the name in the index.
PHONE_NARROWS = 4
NAME_MAX = 120
_LIKE_SPECIAL = re.compile(r"([\\%_])")


class SigningState(enum.StrEnum):
    """Where a dose stands, as the officer needs to know it."""

    UNSIGNED = "unsigned"
    SIGNED = "signed"  # signed in its current version
    RESIGN = "resign"  # signed in an older version: edited since, must be signed again


class StateFilter(enum.StrEnum):
    TO_SIGN = "to_sign"  # not signed, or signed in an older version
    SIGNED = "signed"
    ALL = "all"


@dataclass(frozen=True)
class SearchFilters:
    """What the officer typed; empty values do not filter."""

    date_from: date | None = None
    date_to: date | None = None
    name: str = ""
    phone: str = ""
    identity_number: str = ""
    status: VerificationStatus | None = None
    state: StateFilter = StateFilter.ALL
    only_my_facility: bool = False

    def as_args(self) -> dict[str, str]:
        """The filters as query-string arguments (links, hidden fields); empty ones left out."""
        args = {
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "name": self.name,
            "phone": self.phone,
            "id": self.identity_number,
            "status": self.status.value if self.status else "",
            "state": self.state.value if self.state is not StateFilter.ALL else "",
            "mine": "1" if self.only_my_facility else "",
        }
        return {key: value for key, value in args.items() if value}


def parse_filters(args: Mapping[str, str]) -> tuple[SearchFilters, list[DomainError]]:
    """Filters from a query string or form; what cannot be read is left out and reported."""
    problems: list[DomainError] = []

    def when(key: str, label: str) -> date | None:
        try:
            return parse_date(args.get(key), label)
        except DateInvalid as invalid:
            problems.append(invalid)  # that condition is left out
            return None

    status: VerificationStatus | None = None
    raw_status = (args.get("status") or "").strip()
    if raw_status:
        try:
            status = VerificationStatus(raw_status)
        except ValueError:
            problems.append(DomainError("signing.bad_filter"))
    try:
        state = StateFilter((args.get("state") or StateFilter.ALL.value).strip())
    except ValueError:
        problems.append(DomainError("signing.bad_filter"))
        state = StateFilter.ALL
    filters = SearchFilters(
        date_from=when("from", "signing.date_from"),
        date_to=when("to", "signing.date_to"),
        name=" ".join((args.get("name") or "").split())[:NAME_MAX],
        phone=(args.get("phone") or "").strip()[:20],
        identity_number=(args.get("id") or "").strip()[:20],
        status=status,
        state=state,
        only_my_facility=(args.get("mine") or "") in {"1", "on", "true"},
    )
    return filters, problems


def normalise_phone(text: str) -> str:
    """Digits only, "+84 90…" and "84 90…" written as "090…" (how numbers are stored)."""
    digits = re.sub(r"\D", "", text)
    if text.strip().startswith("+84") or (digits.startswith("84") and len(digits) == 11):
        digits = "0" + digits[2:]
    return digits


@dataclass(frozen=True)
class Cursor:
    """Where a page starts or ends: the sort key of a person (name as written, id)."""

    full_name: str
    person_id: int

    def encode(self) -> str:
        return f"{self.person_id}:{self.full_name}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        """None for anything malformed: a bad cursor starts from the first page."""
        if not text:
            return None
        head, sep, key = text.partition(":")
        if not sep or not is_number(head) or len(key) > NAME_MAX:
            return None
        return cls(key, int(head))


@dataclass(frozen=True)
class ResultDose:
    id: int
    version: int
    dose_number: int
    vaccinated_on: date
    product: str
    lot: str
    facility_id: int
    facility: str
    state: SigningState
    selected: bool  # ticked, in the version shown
    changed_since_selected: bool  # ticked, but edited since: must be looked at and ticked again
    selectable: bool


@dataclass(frozen=True)
class ResultPerson:
    id: int
    full_name: str
    birth_date: date
    gender: Gender
    identity_number: str | None
    phone: str | None
    status: VerificationStatus
    detail: Mapping[str, Any] | None
    doses: tuple[ResultDose, ...]

    @property
    def verified(self) -> bool:
        return self.status is VerificationStatus.VERIFIED

    @property
    def selectable_doses(self) -> tuple[ResultDose, ...]:
        return tuple(d for d in self.doses if d.selectable)

    @property
    def all_selected(self) -> bool:
        selectable = self.selectable_doses
        return bool(selectable) and all(d.selected for d in selectable)

    @property
    def facility(self) -> str:
        """The facility that must correct the record (where the first shown dose was given)."""
        return self.doses[0].facility if self.doses else ""


@dataclass(frozen=True)
class SearchPage:
    people: tuple[ResultPerson, ...]
    count: int | None  # people matching, at most COUNT_CAP; counted on a first page only
    count_capped: bool
    next_cursor: Cursor | None = None
    previous_cursor: Cursor | None = None
    filters: SearchFilters = field(default_factory=SearchFilters)


def check_officer(officer: User) -> None:
    """Only a signing officer with a signing unit has a scope; anyone else is told why."""
    if officer.role is not Role.SIGNING_OFFICER:
        raise DomainError("signing.not_an_officer")
    if officer.signing_unit_id is None:
        raise DomainError("signing.no_unit")


def scope_facility_ids(session: Session, officer: User) -> list[int]:
    """The facilities whose doses the officer signs; an officer without a unit is told so."""
    check_officer(officer)
    # An account whose facility lies under another signing unit (saved before the user rules
    # required the unit to cover the facility, or left so by a reorganisation) signs nothing:
    # signable_facilities is empty for it. Searching and ticking say why; a selection made
    # before shows its doses dropped as out of scope in the preview.
    facility = session.get(Facility, officer.facility_id) if officer.facility_id else None
    if facility is not None and facility.signing_unit_id != officer.signing_unit_id:
        raise DomainError("signing.unit_not_covering_facility", facility=facility.name)
    return list(session.scalars(signable_facilities(officer)))


def signed_current() -> ColumnElement[bool]:
    """The dose has a signature over its current version that nothing superseded.

    Read from the dose's own ``signed_version`` (kept by triggers, migration 0016: the greatest
    version signed and not superseded, 0 when all are superseded): no probe of dose_signatures.
    Versions only grow and start at 1, so equality means the current version is signed.
    IS NOT DISTINCT FROM (``version`` is never NULL) makes a never-signed dose (NULL) false,
    not unknown, so that its negation ("to sign") is true for it.
    """
    return Dose.signed_version.is_not_distinct_from(Dose.version)


def signed_any() -> ColumnElement[bool]:
    """The dose has a signature, of any version, superseded or not."""
    return Dose.signed_version.is_not(None)


def validate(filters: SearchFilters) -> None:
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        raise DomainError(
            "signing.date_order",
            date_from=day(filters.date_from),
            date_to=day(filters.date_to),
        )


def dose_conditions(
    officer: User, filters: SearchFilters, facility_ids: Sequence[int]
) -> list[ColumnElement[bool]]:
    """Conditions on ``Dose``: the officer's scope and the dose filters."""
    conditions: list[ColumnElement[bool]] = [Dose.facility_id.in_(facility_ids)]
    if filters.only_my_facility:
        mine = officer.facility_id
        conditions.append(Dose.facility_id == mine if mine is not None else false())
    if filters.date_from:
        conditions.append(Dose.vaccinated_on >= filters.date_from)
    if filters.date_to:
        conditions.append(Dose.vaccinated_on <= filters.date_to)
    if filters.state is StateFilter.TO_SIGN:
        conditions.append(~signed_current())
    elif filters.state is StateFilter.SIGNED:
        conditions.append(signed_current())
    return conditions


def _like_prefix(text: str) -> str:
    return _LIKE_SPECIAL.sub(r"\\\1", text) + "%"


def starts_with(
    column: SQLColumnExpression[str] | SQLColumnExpression[str | None], prefix: str, dialect: str
) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, in the form the database's index serves.

    PostgreSQL turns ``LIKE 'prefix%'`` into a range scan of a varchar_pattern_ops index
    whatever the collation (a plain range would need a C-collated index). SQLite never uses an
    index for LIKE (case-insensitive, while the columns are BINARY-collated), but does for
    ``column >= prefix AND column < bound``, where the bound is the prefix with its last
    character's successor: in code point order (= UTF-8 byte order, BINARY) exactly the
    strings that start with the prefix lie in between. The columns hold lower-case keys and
    digits, so case sensitivity does not change the result.
    """
    if dialect == "postgresql" or not prefix or ord(prefix[-1]) >= 0x10FFFF:
        return column.like(_like_prefix(prefix), escape="\\")
    bound = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if 0xD800 <= ord(bound[-1]) <= 0xDFFF:  # no surrogates in a str bound: past them instead
        bound = prefix[:-1] + chr(0xE000)
    return and_(column >= prefix, column < bound)


def person_conditions(filters: SearchFilters, dialect: str) -> list[ColumnElement[bool]]:
    """Conditions on ``Person``: name prefix, phone, identity number, verification status.

    ``dialect`` is the database's (``db.backend(session)``): see ``starts_with``.
    """
    conditions: list[ColumnElement[bool]] = []
    key = name_key(filters.name)
    phone = normalise_phone(filters.phone) if filters.phone else ""
    if key:
        name: SQLColumnExpression[str] = Person.name_key
        if len(phone) >= PHONE_NARROWS:
            # The name as the second column of ix_people_phone_name (name_key || ''), which
            # no other index holds: the phone drives. Both planners would otherwise walk
            # ix_people_name_key over every "tran thanh…" and check the phone on each row:
            # SQLite cannot tell which of two ranges is narrower ("nguyen van": ~10 % of
            # people, 20 ms, against 0.1 ms), and PostgreSQL estimates any name prefix
            # narrower than one of its histogram buckets at a few dozen rows ("huynh thi":
            # 26 estimated, 1,575 read at 300,000 people). On PostgreSQL both prefixes are
            # then index conditions of ix_people_phone_name: the name is checked on the index
            # entries of the ~28,000 people (at 10M) who share a 4-digit prefix.
            name = NAME_AFTER_PHONE
        conditions.append(starts_with(name, key, dialect))
    if filters.phone and not phone:
        conditions.append(false())  # typed something, but no digits: nothing matches
    elif phone:  # a full number is its own prefix: one indexed path for both
        conditions.append(starts_with(Person.phone, phone, dialect))
    if filters.identity_number:
        conditions.append(Person.identity_number == re.sub(r"\s", "", filters.identity_number))
    if filters.status is not None:
        conditions.append(Person.verification_status == filters.status)
    return conditions


def search(
    session: Session,
    officer: User,
    filters: SearchFilters,
    *,
    page_size: int,
    after: Cursor | None = None,
    before: Cursor | None = None,
) -> SearchPage:
    """One page of people with the doses that matched, for ``officer`` only."""
    validate(filters)
    facility_ids = scope_facility_ids(session, officer)
    doses_match = dose_conditions(officer, filters, facility_ids)
    dialect = backend(session)
    # The people of the page, as keys (name as written, id) in Vietnamese alphabetical order
    # (the database's collation for it), the id breaking ties.
    keys: Select[Any]
    if keys_from_doses(filters):
        person_id, full_name = Dose.person_id, Dose.person_name
        keys = (
            select(person_id.label("id"))
            .where(*doses_match, *dose_name_conditions(filters, dialect))
            .group_by(person_id, full_name)
        )
    else:
        person_id, full_name = Person.id, Person.full_name
        keys = select(person_id.label("id")).where(
            *person_conditions(filters, dialect),
            has_matching_dose(session, filters, doses_match),
        )

    # One query gives both the page and, on a first page, the capped count: the matching set
    # is computed once (it dominates the cost), only the first COUNT_CAP + 1 keys travel.
    first_page = after is None and before is None
    name = vietnamese(session, full_name)
    sort_key = tuple_(name, person_id)

    def at(cursor: Cursor) -> Any:
        return tuple_(vietnamese(session, literal(cursor.full_name)), literal(cursor.person_id))

    # The keyset condition holds for all of a person's doses or none (their name is the same
    # on each): on the doses route it is a WHERE before the grouping, not a HAVING.
    if before is not None:
        keys = keys.where(sort_key < at(before))
        keys = keys.order_by(name.desc(), person_id.desc())
    else:
        if after is not None:
            keys = keys.where(sort_key > at(after))
        keys = keys.order_by(name, person_id)
    limit = max(COUNT_CAP, page_size) + 1 if first_page else page_size + 1
    rows = list(session.execute(keys.limit(limit)))
    count = len(rows) if first_page else None
    more = len(rows) > page_size
    rows = rows[:page_size]
    if before is not None:
        rows.reverse()
    # Going forwards there is a previous page when we came from one, and vice versa.
    has_next = more if before is None else True
    has_previous = (after is not None) if before is None else more
    by_id = {
        p.id: p for p in session.scalars(select(Person).where(Person.id.in_([r.id for r in rows])))
    }
    found = [by_id[r.id] for r in rows if r.id in by_id]

    verified = {p.id: p.verification_status is VerificationStatus.VERIFIED for p in found}
    doses = _page_doses(session, officer, verified, doses_match)
    people = tuple(
        ResultPerson(
            id=p.id,
            full_name=p.full_name,
            birth_date=p.birth_date,
            gender=p.gender,
            identity_number=p.identity_number,
            phone=p.phone,
            status=p.verification_status,
            detail=p.verification_detail,
            doses=tuple(doses.get(p.id, ())),
        )
        for p in found
    )
    return SearchPage(
        people=people,
        count=None if count is None else min(count, COUNT_CAP),
        count_capped=count is not None and count > COUNT_CAP,
        next_cursor=Cursor(found[-1].full_name, found[-1].id) if found and has_next else None,
        previous_cursor=Cursor(found[0].full_name, found[0].id) if found and has_previous else None,
        filters=filters,
    )


def keys_from_doses(filters: SearchFilters) -> bool:
    """Whether the page's people are found from their doses alone.

    A dose carries a copy of its person's name and name key (``Dose.person_name``,
    ``Dose.person_name_key``, kept by the database: migration 0016), and ``ix_doses_signing_search``
    includes them with the signed version: a search by date, state and name is then one
    index-only scan of the scope's doses in the date range, grouped by person and sorted, and
    no person is read until the page's (50) are. The people route reads one person per
    candidate (at 10M people, a district centre's month and "Nguyễn": 30,650 people, 120,000
    buffer accesses, 160 ms, against 12,600 index entries and 23 ms from the doses). A phone
    or an identity number narrows to a few people (looked up first); the verification status
    lives on the person only.
    """
    return not (filters.phone or filters.identity_number or filters.status is not None)


def dose_name_conditions(filters: SearchFilters, dialect: str) -> list[ColumnElement[bool]]:
    """The name prefix on the dose's copy of its person's name key (``keys_from_doses``)."""
    key = name_key(filters.name)
    return [starts_with(Dose.person_name_key, key, dialect)] if key else []


def has_matching_dose(
    session: Session, filters: SearchFilters, doses_match: list[ColumnElement[bool]]
) -> ColumnElement[bool]:
    """The condition "this person has a matching dose", in the form that plans well.

    With an identity number or a phone the people are few: an EXISTS per person. Otherwise the
    doses side usually narrows most (a facility and a date range), but PostgreSQL's planner,
    seeing a name prefix as common as "nguyen" (38 % of Vietnamese), prefers to read the whole
    people table. So the people with a matching dose are fetched first (an index-only scan of
    doses) and looked up by id; when there are too many of them (``CANDIDATE_CAP``), EXISTS
    again. With both the name and the ids in one statement, PostgreSQL still walks the name
    index when the name is the narrower (a rare name among 50,000 candidates).
    """
    exists_dose = exists().where(Dose.person_id == Person.id, *doses_match)
    if filters.identity_number or filters.phone:
        return exists_dose
    postgresql = is_postgresql(session)
    cap = CANDIDATE_CAP if postgresql else min(CANDIDATE_CAP, SQLITE_CANDIDATE_CAP)
    people = (
        select(Dose.person_id.label("id")).where(*doses_match).distinct().limit(cap + 1).subquery()
    )
    if postgresql:
        # The ids travel as one text ("1,2,…") both ways: turning thousands of them into
        # Python rows and back into a parameter costs more than looking them up. Sent untyped,
        # PostgreSQL reads the parameter once as an integer[] constant (a text-typed one would
        # be parsed again for every row).
        found, listed = (
            session.connection()
            .execute(select(func.count(), func.string_agg(cast(people.c.id, Text), ",")))
            .one()
        )
        if found > cap:
            return exists_dose
        array = bindparam("candidates", "{" + (listed or "") + "}", NullType())
        return Person.id == any_(cast(array, ARRAY(Integer())))
    candidates = session.connection().execute(select(people.c.id)).scalars().all()
    if len(candidates) > cap:
        return exists_dose
    return Person.id.in_(candidates)


def _page_doses(
    session: Session,
    officer: User,
    verified: Mapping[int, bool],
    doses_match: list[ColumnElement[bool]],
) -> dict[int, list[ResultDose]]:
    """The matching doses of a page's people, in one query (no query per person)."""
    if not verified:
        return {}
    stmt = (
        with_dose_details(
            select(
                Dose.id,
                Dose.person_id,
                Dose.version,
                Dose.dose_number,
                Dose.vaccinated_on,
                Dose.lot,
                Dose.facility_id,
                VaccineProduct.name,
                Facility.name,
                signed_current().label("signed_current"),
                signed_any().label("signed_any"),
                SigningSelection.dose_version,
            ),
            product=True,
            facility=True,
        )
        .outerjoin(
            SigningSelection,
            and_(SigningSelection.dose_id == Dose.id, SigningSelection.user_id == officer.id),
        )
        .where(Dose.person_id.in_(list(verified)), *doses_match)
        .order_by(Dose.person_id, Dose.dose_number, Dose.id)
    )
    result: dict[int, list[ResultDose]] = {}
    for row in session.execute(stmt):
        (
            dose_id,
            person_id,
            version,
            number,
            when,
            lot,
            facility_id,
            product,
            facility,
            is_current,
            is_any,
            selected_version,
        ) = row
        state = (
            SigningState.SIGNED
            if is_current
            else SigningState.RESIGN
            if is_any
            else SigningState.UNSIGNED
        )
        result.setdefault(person_id, []).append(
            ResultDose(
                id=dose_id,
                version=version,
                dose_number=number,
                vaccinated_on=when,
                product=product,
                lot=lot,
                facility_id=facility_id,
                facility=facility,
                state=state,
                selected=selected_version == version,
                changed_since_selected=selected_version is not None and selected_version != version,
                selectable=verified[person_id] and state is not SigningState.SIGNED,
            )
        )
    return result
