"""Database plumbing: the declarative base, engines and sessions.

SQLite by default (a file in the instance folder), PostgreSQL through ``DATABASE_URL``
(``postgresql+psycopg://...``). Services take a ``Session`` and never commit on their own unless
they say so; views and CLI commands own the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import MetaData, create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Stable constraint names, so that Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def make_engine(url: str, **options: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()
            # Vietnamese alphabetical order for ORDER BY name COLLATE vi (see vietnamese()).
            connection.create_collation(SQLITE_VIETNAMESE, _compare_vietnamese)

        return engine
    if url.startswith("postgresql"):
        # JIT compilation pays off for long analytical queries, not for this platform's short
        # ones: on a central unit's preview its ~140 ms of compiling cost more than the query
        # (bench/README.md). Off for the platform's own connections, whatever the server says.
        connect_args = dict(options.pop("connect_args", {}))
        connect_args["options"] = f"{connect_args.get('options', '')} -c jit=off".strip()
        options["connect_args"] = connect_args
    return create_engine(url, pool_pre_ping=True, **options)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SQLITE_VIETNAMESE = "vi"
# PostgreSQL's ICU collation for Vietnamese (Debian's and the official packages are built with
# ICU): d < đ, a < ă < â, tones second: the order of the platform's own sort key.
POSTGRESQL_VIETNAMESE = "vi-x-icu"


def _compare_vietnamese(left: str, right: str) -> int:
    from kyso.platform.formatting import sort_key

    a, b = sort_key(left), sort_key(right)
    return (a > b) - (a < b)


def vietnamese(session: Session, column: Any) -> Any:
    """``column`` in Vietnamese alphabetical order (Dương before Đặng), for ORDER BY."""
    return column.collate(POSTGRESQL_VIETNAMESE if is_postgresql(session) else SQLITE_VIETNAMESE)


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def serialize_on(session: Session, *keys: str) -> None:
    """Until the transaction ends, one transaction at a time per key (check-then-write rules:
    rate limits, one registration at a time).

    PostgreSQL: transaction-level advisory locks, taken in a fixed order (no deadlock between
    two callers with overlapping keys). SQLite has one writer: the caller's first write takes
    the database's write lock until commit, so writing before checking serialises there.
    """
    if is_postgresql(session):
        for key in sorted(set(keys)):
            session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
