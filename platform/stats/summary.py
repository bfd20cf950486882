"""The statistics' summary ``stats_people``, kept with the records it is derived from.

A province's administrator sees the people with a dose in the province. Reading that from the
doses costs work in proportion to the province's doses (seconds at millions of doses), so the
membership is kept: one row per (province, person) for every province where the person has a
dose, with the person's verification status, area of residence, the province of their first
recorded dose (who keeps their phone, address and area) and their latest dose date
(``models.stats.StatsPerson``).

How it stays right, in the transaction that changes the truth:

- ``refresh(session, person_ids)`` recomputes those people's rows from the doses and people
  tables (DELETE + INSERT … SELECT, set-based). On PostgreSQL it first locks the people's rows
  (``FOR NO KEY UPDATE``, in id order), so that two transactions refreshing one person run one
  after the other and the second sees the first's doses (no unique violation, no lost row),
  without waiting for a transaction that only added a dose (its foreign key's KEY SHARE lock).
- ORM writers (records service, corrections, the verification job, ``seed.person``) need not
  call it: a flush listener (registered when this module is imported; every writer module
  imports it) refreshes the people whose doses were added, changed or deleted, and the people
  whose verification status or area changed.
- Bulk writers (Core inserts: the importer, ``seed.people``) call ``refresh`` with the ids
  they wrote; a bulk load (the benchmark's generator) calls ``rebuild`` at the end.
- ``rebuild(session)`` recomputes every row in one INSERT … SELECT (the migration's backfill
  runs the same statement); ``drift(session)`` compares the table with a full recompute
  (``kyso-platform stats check``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    bindparam,
    delete,
    event,
    except_,
    func,
    insert,
    inspect,
    literal_column,
    over,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.sql.elements import BindParameter

from kyso.platform.db import is_postgresql
from kyso.platform.models import Area, Dose, Facility, Person, StatsPerson

SUMMARY: Table = StatsPerson.__table__  # type: ignore[assignment]
PEOPLE: Table = Person.__table__  # type: ignore[assignment]
DOSES: Table = Dose.__table__  # type: ignore[assignment]
FACILITIES: Table = Facility.__table__  # type: ignore[assignment]
AREAS: Table = Area.__table__  # type: ignore[assignment]

COLUMNS = (
    "province_id",
    "person_id",
    "verification_status",
    "area_id",
    "first_province_id",
    "latest_dose_on",
)
# The "province" of doses given at a facility whose area lies in no province (none in the
# shipped organisation): no administrator's province, but it keeps one row per person with a
# dose where ``province_id = first_province_id`` (the national per-month chart reads those).
NO_PROVINCE = 0
CHUNK = 5000  # people per refresh statement (SQLite's bound-parameter limit is 32,766)


def summary_rows(person_ids: ColumnElement[bool] | None = None) -> Select[Any]:
    """The summary's rows computed from the truth, for the doses matching ``person_ids`` (a
    condition on ``doses.person_id``) or everyone: one pass over the doses.

    Per (person, province) the first dose id and latest date; then, per person (window over
    those few rows), the province of the lowest first dose id and the latest date of all.
    Doses at a facility in no province count under ``NO_PROVINCE``.
    """
    province = func.coalesce(AREAS.c.province_id, literal_column(str(NO_PROVINCE)))
    per_province = (
        select(
            DOSES.c.person_id.label("person_id"),
            province.label("province_id"),
            func.min(DOSES.c.id).label("first_id"),
            func.max(DOSES.c.vaccinated_on).label("latest"),
        )
        .select_from(
            DOSES.join(FACILITIES, FACILITIES.c.id == DOSES.c.facility_id).outerjoin(
                AREAS, AREAS.c.id == FACILITIES.c.area_id
            )
        )
        .group_by(DOSES.c.person_id, province)
    )
    if person_ids is not None:
        per_province = per_province.where(person_ids)
    grouped = per_province.subquery("per_province")
    ranked = select(
        grouped.c.person_id,
        grouped.c.province_id,
        over(
            func.first_value(grouped.c.province_id),
            partition_by=grouped.c.person_id,
            order_by=grouped.c.first_id,
        ).label("first_province_id"),
        over(func.max(grouped.c.latest), partition_by=grouped.c.person_id).label("latest"),
    ).subquery("ranked")
    return select(
        ranked.c.province_id,
        ranked.c.person_id,
        PEOPLE.c.verification_status,
        PEOPLE.c.area_id,
        ranked.c.first_province_id,
        ranked.c.latest,
    ).select_from(ranked.join(PEOPLE, PEOPLE.c.id == ranked.c.person_id))


def _insert(rows: Select[Any]) -> Any:
    return insert(SUMMARY).from_select(list(COLUMNS), rows)


def refresh(session: Session, person_ids: Iterable[int]) -> None:
    """Recompute the summary rows of these people (in this transaction)."""
    _refresh(session.connection(), sorted(set(person_ids)))


def _refresh(connection: Connection, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        wanted: BindParameter[int] = bindparam("ids", chunk, expanding=True)
        if is_postgresql(connection):
            # Two transactions refreshing one person: the second waits here for the first to
            # end, then reads its doses (READ COMMITTED: each statement sees what is committed).
            connection.execute(
                select(PEOPLE.c.id)
                .where(PEOPLE.c.id.in_(wanted))
                .order_by(PEOPLE.c.id)
                # NO KEY UPDATE: conflicts with itself (refreshes of one person take turns) but
                # not with the KEY SHARE a new dose's foreign key takes on its person, so a
                # writer that edits the person and one that adds a dose never deadlock.
                .with_for_update(key_share=True)  # FOR NO KEY UPDATE
            )
        connection.execute(delete(SUMMARY).where(SUMMARY.c.person_id.in_(wanted)))
        connection.execute(_insert(summary_rows(DOSES.c.person_id.in_(wanted))))


def rebuild(session: Session) -> int:
    """Recompute the whole summary (set-based); returns its number of rows."""
    connection = session.connection()
    if is_postgresql(connection):
        # Nobody may write doses or people's status meanwhile (their refresh would interleave).
        connection.exec_driver_sql("LOCK TABLE stats_people IN EXCLUSIVE MODE")
    connection.execute(delete(SUMMARY))
    connection.execute(_insert(summary_rows()))
    return int(connection.scalar(select(func.count()).select_from(SUMMARY)) or 0)


@dataclass(frozen=True)
class Drift:
    """How the summary differs from the truth: row counts only, no personal data."""

    missing: int  # rows the truth has and the summary lacks (or holds with other values)
    extra: int  # rows the summary has and the truth does not (or with other values)
    people: int  # distinct people concerned
    provinces: tuple[tuple[int, int], ...] = ()  # (province id, rows differing), largest first

    @property
    def none(self) -> bool:
        return self.missing == 0 and self.extra == 0


def _kept() -> Select[Any]:
    return select(*(SUMMARY.c[name] for name in COLUMNS))


def _differences(session: Session) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(province id, person id) of the rows the truth has and the summary lacks (or holds
    otherwise), and of the rows the summary has and the truth does not."""
    connection = session.connection()
    truth = summary_rows()
    found: list[list[tuple[int, int]]] = []
    for first, second in ((truth, _kept()), (_kept(), truth)):
        different = except_(first, second).subquery()
        found.append(
            [
                (int(p), int(q))
                for p, q in connection.execute(
                    select(different.c.province_id, different.c.person_id)
                )
            ]
        )
    return found[0], found[1]


def drifted_people(session: Session) -> set[int]:
    """The ids of the people whose summary rows differ from a full recompute."""
    missing, extra = _differences(session)
    return {person for _, person in missing + extra}


def drift(session: Session) -> Drift:
    """Compare the summary with a full recompute (reads every dose: a job, not a page)."""
    missing, extra = _differences(session)
    per_province: dict[int, int] = {}
    for province, _ in missing + extra:
        per_province[province] = per_province.get(province, 0) + 1
    ranked = tuple(sorted(per_province.items(), key=lambda item: (-item[1], item[0])))
    people = {person for _, person in missing + extra}
    return Drift(len(missing), len(extra), len(people), ranked)


# -- the ORM writers: a flush refreshes the people it touched ---------------------------------

_DOSE_FIELDS = ("person_id", "facility_id", "vaccinated_on")
_PERSON_FIELDS = ("verification_status", "area_id")


def _changed(obj: Any, names: Sequence[str]) -> list[Any]:
    """Old and new values of those attributes that changed in this flush ([] if none)."""
    state = inspect(obj)
    values: list[Any] = []
    for name in names:
        history = state.attrs[name].history
        if history.has_changes():
            values += [*history.deleted, *history.added]
    return values


def _touched(session: Session) -> set[int]:
    ids: set[int] = set()
    for obj in session.new:
        if isinstance(obj, Dose):
            ids.add(obj.person_id if obj.person_id is not None else obj.person.id)
    for obj in session.deleted:
        if isinstance(obj, Dose | Person):
            ids.add(obj.person_id if isinstance(obj, Dose) else obj.id)
    for obj in session.dirty:
        if isinstance(obj, Dose):
            moved = _changed(obj, _DOSE_FIELDS)
            if moved:
                ids.add(obj.person_id)
                # A dose moved to another person: the old one's rows change too.
                ids.update(v for v in _changed(obj, ("person_id",)) if isinstance(v, int))
        elif isinstance(obj, Person) and _changed(obj, _PERSON_FIELDS):
            ids.add(obj.id)
    return {i for i in ids if i is not None}


@event.listens_for(Session, "after_flush")
def _refresh_after_flush(session: Session, _context: UOWTransaction) -> None:
    # After the flush the ids are assigned and the attribute histories still hold the change.
    ids = _touched(session)
    if ids:
        # The flush's own connection: a Core statement here does not flush again.
        _refresh(session.connection(), sorted(ids))


def same_rows(session: Session, person_ids: Iterable[int]) -> bool:
    """Whether these people's summary rows equal their recompute (for tests and checks)."""
    ids = sorted(set(person_ids))
    if not ids:
        return True
    wanted: BindParameter[int] = bindparam("ids", ids, expanding=True)
    kept = set(session.connection().execute(_kept().where(SUMMARY.c.person_id.in_(wanted))))
    truth = set(session.connection().execute(summary_rows(DOSES.c.person_id.in_(wanted))))
    return kept == truth


__all__ = ["COLUMNS", "Drift", "drift", "drifted_people", "rebuild", "refresh", "summary_rows"]
