"""Verification statistics (Appendix 03): who cannot be signed for, and why.

"Thống kê xác minh đối tượng" → "Xuất danh sách đối tượng không hợp lệ": the people of a
facility's records whose verification against the National Population Database failed, in
three groups, each with its count, a list paged by keyset and an Excel export:

- ``no_identity`` — no 12-digit personal identification number: nothing recorded
  (``no_identity``), or only a 9-digit CMND (``old_id_only``). A CMND is not *wrong*
  (see ``registry.identity``) but is not a personal identification number either, and the
  person cannot be verified until the 12-digit number is known: the fix is the same as for a
  missing number, so it is counted here, and the reason column tells the two apart.
- ``wrong_format`` — a 12-digit number that breaks the format or disagrees with the person's
  birth year or gender (``wrong_format``);
- ``mismatch`` — the registry does not know the number, or holds another name, birth date or
  gender (``mismatch``).

People still ``pending`` or ``unavailable`` are not invalid (nobody knows yet) and are left out.

Conditions: the facility that administered a dose ("approving facility": the facility that
stands behind the record and must correct it; any facility type), the person's area of
residence (commune or district; offered to commune/ward stations and administrators), and the
group. Scope: facility staff see people with a dose given at their facility; administrators
the facilities of their province (or of the country).

Reading. A province's administrator (without a facility condition) reads the summary
``stats_people`` (``stats.summary``: one row per province and person with a dose there, kept by
every writer of doses and of people's status and area): the counts and charts are index-only
scans over the province's invalid people, whatever the number of its doses, and the list pages
the province's rows by person id. Facility staff and a facility condition read the doses (a
facility's are few); a national administrator reads the people (no dose condition). The
per-month chart reads every person's latest dose date from the summary (for a national
administrator an index-only scan of the invalid people's one "first" row each).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select
from sqlalchemy.orm import Session, aliased

from kyso.platform.auth.access import recordable_facilities, visible_facilities
from kyso.platform.errors import DomainError
from kyso.platform.inputs import parse_number, storable
from kyso.platform.models import (
    Area,
    AreaLevel,
    Dose,
    Facility,
    FacilityType,
    Gender,
    Person,
    Role,
    StatsPerson,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.records.readmodel import with_dose_details

STATS_ROLES = frozenset({Role.FACILITY_STAFF, Role.ADMINISTRATOR})
PAGE_SIZE_MAX = 200
FACILITY_CHOICES_MAX = 300  # beyond this, administrators type a facility code


class Group(enum.StrEnum):
    NO_IDENTITY = "no_identity"
    WRONG_FORMAT = "wrong_format"
    MISMATCH = "mismatch"


GROUP_STATUSES: Mapping[Group, tuple[VerificationStatus, ...]] = {
    Group.NO_IDENTITY: (VerificationStatus.NO_IDENTITY, VerificationStatus.OLD_ID_ONLY),
    Group.WRONG_FORMAT: (VerificationStatus.WRONG_FORMAT,),
    Group.MISMATCH: (VerificationStatus.MISMATCH,),
}
INVALID_STATUSES: tuple[VerificationStatus, ...] = tuple(
    status for statuses in GROUP_STATUSES.values() for status in statuses
)


def group_of(status: VerificationStatus) -> Group | None:
    for group, statuses in GROUP_STATUSES.items():
        if status in statuses:
            return group
    return None


@dataclass(frozen=True)
class StatsFilters:
    group: Group | None = None
    facility_id: int | None = None
    area_id: int | None = None

    def as_args(self) -> dict[str, str]:
        args = {
            "group": self.group.value if self.group else "",
            "facility": str(self.facility_id) if self.facility_id else "",
            "area": str(self.area_id) if self.area_id else "",
        }
        return {k: v for k, v in args.items() if v}


@dataclass(frozen=True)
class Scope:
    """What a user may look at, and the choices the page offers."""

    user: User
    facilities: tuple[Facility, ...]  # the choices (empty: too many, type a code)
    areas: tuple[Area, ...]  # area choices for commune stations (empty: type a code or none)
    area_condition: bool  # whether the area condition is offered
    national: bool  # a national administrator: every person, no dose condition needed

    def facility_ids(self) -> Select[tuple[int]]:
        return visible_facilities(self.user)


def scope_for(session: Session, user: User) -> Scope:
    """The user's scope; DomainError for roles the statistics are not for."""
    if user.role not in STATS_ROLES or not user.active:
        raise DomainError("stats.not_allowed")
    if user.role is Role.FACILITY_STAFF:
        own = session.get(Facility, user.facility_id) if user.facility_id else None
        if own is None:
            raise DomainError("stats.no_facility")
        areas: tuple[Area, ...] = ()
        if own.type is FacilityType.COMMUNE_STATION:
            commune = session.get(Area, own.area_id)
            # The station's commune first, then the other communes of its district.
            siblings = (
                list(
                    session.scalars(
                        select(Area)
                        .where(Area.parent_id == commune.parent_id, Area.id != commune.id)
                        .order_by(Area.name)
                    )
                )
                if commune is not None and commune.parent_id is not None
                else []
            )
            areas = tuple([commune, *siblings] if commune is not None else siblings)
        return Scope(user, (own,), areas, bool(areas), national=False)
    national = user.province_id is None
    count = session.scalar(select(func.count()).select_from(visible_facilities(user).subquery()))
    facilities: tuple[Facility, ...] = ()
    if (count or 0) <= FACILITY_CHOICES_MAX:
        facilities = tuple(
            session.scalars(
                select(Facility)
                .where(Facility.id.in_(visible_facilities(user)))
                .order_by(Facility.code)
            )
        )
    return Scope(user, facilities, (), True, national=national)


def _parse_int(text: str | None) -> int | None:
    text = (text or "").strip()
    return parse_number(text)


def parse_filters(
    session: Session, scope: Scope, args: Mapping[str, str]
) -> tuple[StatsFilters, list[DomainError]]:
    """Filters from a query string; what cannot be read or is outside the scope is reported."""
    problems: list[DomainError] = []
    group: Group | None = None
    raw = (args.get("group") or "").strip()
    if raw:
        try:
            group = Group(raw)
        except ValueError:
            problems.append(DomainError("stats.bad_group"))
    facility_id = _parse_int(args.get("facility"))
    code = (args.get("facility_code") or "").strip()[:32]
    if facility_id is None and code:
        facility_id = (
            session.scalar(select(Facility.id).where(Facility.code == code))
            if storable(code)
            else None
        )
        if facility_id is None:
            problems.append(DomainError("stats.facility_unknown", code=code))
    if facility_id is not None and not _facility_in_scope(session, scope, facility_id):
        problems.append(DomainError("stats.facility_not_allowed"))
        facility_id = None
    area_id = _parse_int(args.get("area"))
    area_code = (args.get("area_code") or "").strip()[:16]
    if area_id is None and area_code:
        area_id = (
            session.scalar(select(Area.id).where(Area.code == area_code))
            if storable(area_code)
            else None
        )
        if area_id is None:
            problems.append(DomainError("stats.area_unknown", code=area_code))
    if area_id is not None and not _area_in_scope(session, scope, area_id):
        problems.append(DomainError("stats.area_not_allowed"))
        area_id = None
    return StatsFilters(group, facility_id, area_id), problems


def _facility_in_scope(session: Session, scope: Scope, facility_id: int) -> bool:
    found = session.scalar(scope.facility_ids().where(Facility.id == facility_id))
    return found is not None


def _area_in_scope(session: Session, scope: Scope, area_id: int) -> bool:
    if not scope.area_condition:
        return False
    if scope.areas:
        return any(a.id == area_id for a in scope.areas)
    area = session.get(Area, area_id)
    if area is None or area.level is AreaLevel.PROVINCE:
        return False
    return scope.national or area.province_id == scope.user.province_id


def conditions(session: Session, scope: Scope, filters: StatsFilters) -> list[ColumnElement[bool]]:
    """Conditions on ``Person``: the scope, the facility and the area (not the group)."""
    result: list[ColumnElement[bool]] = []
    if filters.facility_id is not None:
        result.append(
            Person.id.in_(select(Dose.person_id).where(Dose.facility_id == filters.facility_id))
        )
    elif not scope.national:
        result.append(
            Person.id.in_(select(Dose.person_id).where(Dose.facility_id.in_(scope.facility_ids())))
        )
    if filters.area_id is not None:
        result.append(_area_condition(session, Person.area_id, filters.area_id))
    return result


def _area_condition(session: Session, column: Any, area_id: int) -> ColumnElement[bool]:
    """Residence in the area: a commune, or a district and its communes."""
    area = session.get(Area, area_id)
    if area is not None and area.level is AreaLevel.DISTRICT:
        communes = select(Area.id).where(Area.parent_id == area.id)
        return or_(column == area.id, column.in_(communes))
    return column == area_id  # type: ignore[no-any-return]


def _province(scope: Scope, filters: StatsFilters) -> int | None:
    """The province whose summary rows answer, or None: read the doses or the people.

    A province's administrator without a facility condition: the people with a dose at one of
    the province's facilities (``visible_facilities``) are that province's summary rows.
    """
    user = scope.user
    if user.role is Role.ADMINISTRATOR and not scope.national and filters.facility_id is None:
        return user.province_id
    return None


def _summary_conditions(
    session: Session,
    province_id: int,
    filters: StatsFilters,
    statuses: Sequence[VerificationStatus],
) -> list[ColumnElement[bool]]:
    """Conditions on ``StatsPerson``: the province, the statuses and the area."""
    result = [
        StatsPerson.province_id == province_id,
        StatsPerson.verification_status == statuses[0]
        if len(statuses) == 1
        else StatsPerson.verification_status.in_(statuses),
    ]
    if filters.area_id is not None:
        result.append(_area_condition(session, StatsPerson.area_id, filters.area_id))
    return result


def _summary_hidden(province_id: int) -> ColumnElement[bool]:
    """``_not_kept`` for a province's administrator, on the summary: the first dose's facility
    is outside the province (the units the administrator records for)."""
    return StatsPerson.first_province_id != province_id


def _dose_scope(scope: Scope, filters: StatsFilters) -> ColumnElement[bool] | None:
    """Which doses of a listed person are shown: those of the facility or of the scope."""
    if filters.facility_id is not None:
        return Dose.facility_id == filters.facility_id
    if scope.national:
        return None
    return Dose.facility_id.in_(scope.facility_ids())


def _not_kept(scope: Scope) -> ColumnElement[bool]:
    """Whether another unit keeps the person's phone, address and area: the person's first
    recorded dose is outside the units this user records for (``records.service.keeps_person``);
    the list and the export show them blank."""
    if scope.national:
        return false()
    first = aliased(Dose)
    # correlate(Person): inside EXISTS the subquery would otherwise take ``people`` into its
    # own FROM and find the first dose of everybody, not of this person.
    first_id = (
        select(func.min(first.id))
        .where(first.person_id == Person.id)
        .correlate(Person)
        .scalar_subquery()
    )
    kept = aliased(Dose)
    return ~exists().where(
        kept.id == first_id, kept.facility_id.in_(recordable_facilities(scope.user))
    )


def counts(session: Session, scope: Scope, filters: StatsFilters) -> dict[Group, int]:
    """People per group (every group, whatever ``filters.group`` says)."""
    province = _province(scope, filters)
    statement = (
        select(Person.verification_status, func.count())
        .where(
            Person.verification_status.in_(INVALID_STATUSES), *conditions(session, scope, filters)
        )
        .group_by(Person.verification_status)
    )
    if province is not None:
        statement = (
            select(StatsPerson.verification_status, func.count())
            .where(*_summary_conditions(session, province, filters, INVALID_STATUSES))
            .group_by(StatsPerson.verification_status)
        )
    result = dict.fromkeys(Group, 0)
    for status, count in session.execute(statement):
        group = group_of(VerificationStatus(status))
        if group is not None:
            result[group] += int(count)
    return result


AREAS_CHARTED = 10  # the chart per area shows the areas with the most people


@dataclass(frozen=True)
class AreaCount:
    name: str | None  # None: no area recorded, or kept by another unit (hidden in the list too)
    people: int


def by_area(
    session: Session, scope: Scope, filters: StatsFilters, *, top: int = AREAS_CHARTED
) -> list[AreaCount]:
    """People of the selected groups per area of residence, the ``top`` largest first, then
    one line for everyone else whose area is unknown or hidden.

    A person whose area this user does not see in the list (another unit keeps it) is counted
    under "unknown", so that the chart never tells what the list hides.
    """
    province = _province(scope, filters)
    people = (
        select(
            StatsPerson.area_id.label("area_id"), _summary_hidden(province).label("hidden")
        ).where(*_summary_conditions(session, province, filters, _statuses(filters)))
        if province is not None
        else select(Person.area_id.label("area_id"), _not_kept(scope).label("hidden")).where(
            Person.verification_status.in_(_statuses(filters)),
            *conditions(session, scope, filters),
        )
    ).subquery()
    rows = session.execute(
        select(people.c.area_id, people.c.hidden, func.count()).group_by(
            people.c.area_id, people.c.hidden
        )
    )
    known: dict[int, int] = {}
    unknown = 0
    for area_id, hidden, count in rows:
        if area_id is None or hidden:
            unknown += int(count)
        else:
            known[area_id] = known.get(area_id, 0) + int(count)
    names = (
        dict(session.execute(select(Area.id, Area.name).where(Area.id.in_(known))).tuples().all())
        if known
        else {}
    )
    ranked = sorted(known.items(), key=lambda item: (-item[1], names.get(item[0], "")))
    result = [AreaCount(names.get(area_id), count) for area_id, count in ranked[:top]]
    if unknown:
        result.append(AreaCount(None, unknown))
    return result


@dataclass(frozen=True)
class MonthCount:
    year: int
    month: int
    people: int


def by_latest_dose_month(session: Session, scope: Scope, filters: StatsFilters) -> list[MonthCount]:
    """People of the selected groups per month of their latest dose (any facility), oldest
    month first; people with no dose recorded are left out. One grouped statement, by day (a
    few hundred days: no date arithmetic per person), added up by month here."""
    province = _province(scope, filters)
    day = StatsPerson.latest_dose_on
    statement: Select[tuple[date, int]]
    if province is not None:
        statement = select(day, func.count()).where(
            *_summary_conditions(session, province, filters, _statuses(filters))
        )
    elif scope.national and filters.facility_id is None:
        # Everyone: an index-only scan of the invalid people's one row each (the row of their
        # first dose's province, ``ix_stats_people_first``).
        statement = select(day, func.count()).where(
            StatsPerson.province_id == StatsPerson.first_province_id,
            StatsPerson.verification_status.in_(_statuses(filters)),
            *(
                [_area_condition(session, StatsPerson.area_id, filters.area_id)]
                if filters.area_id is not None
                else []
            ),
        )
    else:
        # The people of the conditions, each with their one "first" row.
        statement = (
            select(day, func.count())
            .select_from(Person)
            .join(
                StatsPerson,
                and_(
                    StatsPerson.person_id == Person.id,
                    StatsPerson.province_id == StatsPerson.first_province_id,
                ),
            )
            .where(
                Person.verification_status.in_(_statuses(filters)),
                *conditions(session, scope, filters),
            )
        )
    months: dict[tuple[int, int], int] = {}
    for when, count in session.execute(statement.group_by(day)):
        key = (when.year, when.month)
        months[key] = months.get(key, 0) + int(count)
    return [MonthCount(y, m, n) for (y, m), n in sorted(months.items())]


@dataclass(frozen=True)
class DoseRow:
    id: int
    dose_number: int
    vaccinated_on: date
    product: str
    lot: str
    facility: str


@dataclass(frozen=True)
class PersonRow:
    id: int
    full_name: str
    birth_date: date
    gender: Gender
    identity_number: str | None
    phone: str | None
    address: str | None
    area: str | None
    status: VerificationStatus
    detail: Mapping[str, Any] | None
    doses: tuple[DoseRow, ...]

    @property
    def group(self) -> Group | None:
        return group_of(self.status)


@dataclass(frozen=True)
class Page:
    people: tuple[PersonRow, ...]
    next_after: int | None  # the cursor of the next page: the last person's id


def _statuses(filters: StatsFilters) -> tuple[VerificationStatus, ...]:
    return GROUP_STATUSES[filters.group] if filters.group else INVALID_STATUSES


def page(
    session: Session,
    scope: Scope,
    filters: StatsFilters,
    *,
    after: int | None = None,
    size: int = 50,
) -> Page:
    """One page of invalid people ordered by id, after the person ``after`` (keyset)."""
    size = max(1, min(size, PAGE_SIZE_MAX))
    statuses = _statuses(filters)
    status_condition = (
        Person.verification_status == statuses[0]
        if len(statuses) == 1
        else Person.verification_status.in_(statuses)
    )
    statement = (
        select(Person, Area.name, _not_kept(scope))
        .outerjoin(Area, Area.id == Person.area_id)
        .where(status_condition, *conditions(session, scope, filters))
        .order_by(Person.id)
        .limit(size + 1)
    )
    if after is not None:
        statement = statement.where(Person.id > after)
    province = _province(scope, filters)
    if province is not None:
        # The province's rows in person order (the summary's primary key), then each person.
        statement = (
            select(Person, Area.name, _summary_hidden(province))
            .select_from(StatsPerson)
            .join(Person, Person.id == StatsPerson.person_id)
            .outerjoin(Area, Area.id == Person.area_id)
            .where(*_summary_conditions(session, province, filters, statuses))
            .order_by(StatsPerson.person_id)
            .limit(size + 1)
        )
        if after is not None:
            statement = statement.where(StatsPerson.person_id > after)
    rows = list(session.execute(statement))
    more = len(rows) > size
    rows = rows[:size]
    ids = [person.id for person, _, _ in rows]
    doses: dict[int, list[DoseRow]] = {}
    if ids:
        dose_statement = (
            with_dose_details(
                select(
                    Dose.id,
                    Dose.person_id,
                    Dose.dose_number,
                    Dose.vaccinated_on,
                    VaccineProduct.name,
                    Dose.lot,
                    Facility.name,
                ),
                product=True,
                facility=True,
            )
            .where(Dose.person_id.in_(ids))
            .order_by(Dose.person_id, Dose.dose_number)
        )
        limit = _dose_scope(scope, filters)
        if limit is not None:
            dose_statement = dose_statement.where(limit)
        for dose_id, person_id, number, when, product, lot, facility in session.execute(
            dose_statement
        ):
            doses.setdefault(person_id, []).append(
                DoseRow(dose_id, number, when, product, lot, facility)
            )
    people = tuple(
        PersonRow(
            id=person.id,
            full_name=person.full_name,
            birth_date=person.birth_date,
            gender=person.gender,
            identity_number=person.identity_number,
            phone=None if hidden else person.phone,
            address=None if hidden else person.address,
            area=None if hidden else area,
            status=person.verification_status,
            detail=person.verification_detail,
            doses=tuple(doses.get(person.id, ())),
        )
        for person, area, hidden in rows
    )
    return Page(people, ids[-1] if more and ids else None)


@dataclass(frozen=True)
class ExportRow:
    """One line of the export: a person and one of their doses (or none)."""

    person_id: int
    full_name: str
    birth_date: date
    gender: str
    identity_number: str | None
    phone: str | None
    address: str | None
    area: str | None
    status: str
    detail: Mapping[str, Any] | None
    dose_number: int | None
    vaccinated_on: date | None
    product: str | None
    lot: str | None
    facility: str | None


def export_rows(
    session: Session, scope: Scope, filters: StatsFilters, *, chunk: int = 1000
) -> Iterator[ExportRow]:
    """Every invalid person of the filters with their doses, streamed.

    One statement, read ``chunk`` rows at a time (a server-side cursor on PostgreSQL), so that
    memory stays flat whatever the number of people. Use a session of its own: the cursor
    stays open while the rows are consumed.
    """
    dose_join: ColumnElement[bool] = Dose.person_id == Person.id
    limit = _dose_scope(scope, filters)
    if limit is not None:
        dose_join = and_(dose_join, limit)
    product = aliased(VaccineProduct)
    facility = aliased(Facility)
    province = _province(scope, filters)
    people: Any = Person
    hidden: ColumnElement[bool] = _not_kept(scope)
    where = [
        Person.verification_status.in_(_statuses(filters)),
        *conditions(session, scope, filters),
    ]
    if province is not None:
        people = StatsPerson.__table__.join(Person.__table__, Person.id == StatsPerson.person_id)
        hidden = _summary_hidden(province)
        where = _summary_conditions(session, province, filters, _statuses(filters))
    statement = (
        with_dose_details(
            select(
                Person.id,
                Person.full_name,
                Person.birth_date,
                Person.gender,
                Person.identity_number,
                Person.phone,
                Person.address,
                Area.name,
                Person.verification_status,
                Person.verification_detail,
                Dose.dose_number,
                Dose.vaccinated_on,
                product.name,
                Dose.lot,
                facility.name,
                hidden,
            )
            .select_from(people)
            .outerjoin(Area, Area.id == Person.area_id)
            .outerjoin(Dose, dose_join),
            product=True,
            facility=True,
            outer=True,
            product_table=product,
            facility_table=facility,
        )
        .where(*where)
        .order_by(Person.id, Dose.dose_number)
        .execution_options(yield_per=chunk)
    )
    for row in session.execute(statement):
        yield ExportRow(
            person_id=row[0],
            full_name=row[1],
            birth_date=row[2],
            gender=str(getattr(row[3], "value", row[3])),
            identity_number=row[4],
            phone=None if row[15] else row[5],
            address=None if row[15] else row[6],
            area=None if row[15] else row[7],
            status=str(getattr(row[8], "value", row[8])),
            detail=row[9],
            dose_number=row[10],
            vaccinated_on=row[11],
            product=row[12],
            lot=row[13],
            facility=row[14],
        )


def count_people(counted: Mapping[Group, int], filters: StatsFilters) -> int:
    if filters.group is not None:
        return counted[filters.group]
    return sum(counted.values())


def selected_groups(filters: StatsFilters) -> Sequence[Group]:
    return (filters.group,) if filters.group else tuple(Group)
