"""Bulk inserts of people and doses: the import of big files and the demo-data generator.

Two things make the ORM's way slow at 100,000 rows: ``INSERT ... RETURNING`` with the ids
matched to the input rows runs row by row on SQLite, and psycopg's ``executemany`` is a round
trip per row. So the ids are reserved first — on PostgreSQL from the table's sequence (safe with
any number of concurrent writers), on SQLite above the highest id after taking the database's
single write lock (nobody else can insert until this transaction ends) — and the rows are then
written with ``COPY`` on PostgreSQL and one ``executemany`` on SQLite. Values go through the
columns' own SQLAlchemy type processors, so they are stored exactly as the ORM stores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from kyso.platform.db import is_postgresql
from kyso.platform.models import Dose, Person, VerificationStatus
from kyso.platform.models.columns import utcnow
from kyso.platform.records.names import name_key

PEOPLE: Table = Person.__table__  # type: ignore[assignment]
DOSES: Table = Dose.__table__  # type: ignore[assignment]


def reserve_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` new primary-key values for ``table`` (column ``id``), in this transaction."""
    if count == 0:
        return []
    if is_postgresql(session):
        rows = session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        )
        return [int(value) for (value,) in rows]
    # SQLite: a write that changes nothing still takes the write lock, so max(id) cannot move.
    session.execute(table.delete().where(text("0")))
    highest = session.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0
    return list(range(highest + 1, highest + 1 + count))


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, values as the ORM takes them)."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    names = list(rows[0])
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]

    def values(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            process(row[name]) if process else row[name]
            for name, process in zip(names, processors, strict=True)
        )

    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    if is_postgresql(connection):
        driver = connection.connection.driver_connection
        statement = f"COPY {quote(table.name)} ({columns}) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(values(row))
        return
    placeholders = ", ".join("?" for _ in names)
    connection.exec_driver_sql(
        f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({placeholders})",  # noqa: S608 - column names from the table, values bound
        [values(row) for row in rows],
    )


def insert_with_ids(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` and return their new ids, in the order of ``rows``."""
    ids = reserve_ids(session, table, len(rows))
    insert_rows(session, table, [{"id": id_, **row} for row, id_ in zip(rows, ids, strict=True)])
    return ids


def insert_people(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """New people (their data columns only): pending verification, version 1. Returns the ids."""
    now = utcnow()
    return insert_with_ids(
        session,
        PEOPLE,
        [
            {
                **row,
                "name_key": name_key(row["full_name"]),
                "verification_status": VerificationStatus.PENDING,
                "verification_attempts": 0,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            for row in rows
        ],
    )


def insert_doses(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """New doses (their data columns only), version 1.

    Written in the order of their people's ids: on PostgreSQL each new dose locks its person
    (migration 0016's trigger, for the name it copies), and writers that lock people in one
    order cannot deadlock one another (the statistics' refresh locks them in that order too).
    """
    now = utcnow()
    insert_rows(
        session,
        DOSES,
        [
            {**row, "version": 1, "created_at": now, "updated_at": now}
            for row in sorted(rows, key=lambda row: row["person_id"])
        ],
    )
