"""Bulk inserts of people that need the new ids back (to insert their doses next).

``INSERT ... RETURNING`` with ids matched to the input rows is row-at-a-time on SQLite, which
makes 100,000 people take minutes. Instead the ids are reserved first and the rows inserted with
them in one ``executemany``: on PostgreSQL from the table's sequence (safe with any number of
concurrent writers); on SQLite after taking the database's single write lock, above the
highest id (nobody else can insert until this transaction ends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from kyso.platform.models import Dose, Person

PEOPLE: Table = Person.__table__  # type: ignore[assignment]
DOSES: Table = Dose.__table__  # type: ignore[assignment]


def reserve_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` new primary-key values for ``table`` (column ``id``), in this transaction."""
    if count == 0:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        rows = session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        )
        return [int(value) for (value,) in rows]
    if dialect == "sqlite":
        # A write that changes nothing still takes the write lock, so max(id) cannot move.
        session.execute(table.delete().where(text("0")))
        highest = session.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0
        return list(range(highest + 1, highest + 1 + count))
    raise NotImplementedError(f"no id reservation for {dialect}")


def insert_with_ids(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` and return their new ids, in the order of ``rows``."""
    ids = reserve_ids(session, table, len(rows))
    if rows:
        session.execute(
            insert(table), [{**row, "id": id_} for row, id_ in zip(rows, ids, strict=True)]
        )
    return ids


def insert_doses(session: Session, rows: Sequence[dict[str, Any]], batch: int = 5000) -> None:
    """Plain ``executemany`` inserts, ``batch`` rows per statement group."""
    for start in range(0, len(rows), batch):
        session.execute(insert(DOSES), rows[start : start + batch])
