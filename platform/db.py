"""Database plumbing: the declarative base, engines and sessions.

SQLite by default (a file in the instance folder), PostgreSQL through ``DATABASE_URL``
(``postgresql+psycopg://...``). Services take a ``Session`` and never commit on their own unless
they say so; views and CLI commands own the transaction.
"""

from __future__ import annotations

import enum
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

from sqlalchemy import MetaData, String, bindparam, create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

log = logging.getLogger(__name__)

T = TypeVar("T")

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
            # Vietnamese alphabetical order: ORDER BY vi_key(name) (see vietnamese()).
            connection.create_function(
                SQLITE_VIETNAMESE_KEY, 1, _vietnamese_key, deterministic=True
            )

        return engine
    if url.startswith("postgresql"):
        # JIT compilation pays off for long analytical queries, not for this platform's short
        # ones: on a central unit's preview its ~140 ms of compiling cost more than the query
        # (bench/README.md). Off for the platform's own connections, whatever the server says.
        connect_args = dict(options.pop("connect_args", {}))
        connect_args["options"] = f"{connect_args.get('options', '')} -c jit=off".strip()
        options["connect_args"] = connect_args
    return create_engine(url, pool_pre_ping=True, **options)


# Seconds to wait for the replica's connection: a replica that does not answer sends the reads
# to the primary quickly, instead of holding the page for the system's TCP timeout.
REPLICA_CONNECT_TIMEOUT = 3


def make_replica_engine(url: str) -> Engine:
    """The engine of a read-only replica (``DATABASE_REPLICA_URL``).

    Its sessions are read-only at the server (``default_transaction_read_only``): a write sent
    there by mistake fails at once, also on a copy of the database that is not a hot standby
    (which refuses writes by itself).
    """
    return make_engine(
        url,
        connect_args={
            "options": "-c default_transaction_read_only=on",
            "connect_timeout": REPLICA_CONNECT_TIMEOUT,
        },
    )


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


class Backend(enum.StrEnum):
    """The databases the platform runs on."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


def backend(bind: Session | Engine | Connection) -> Backend:
    """Which database ``bind`` talks to: the one place that asks SQLAlchemy's dialect."""
    target = bind.get_bind() if isinstance(bind, Session) else bind
    return Backend(target.dialect.name)


def is_postgresql(bind: Session | Engine | Connection) -> bool:
    return backend(bind) is Backend.POSTGRESQL


def is_sqlite(bind: Session | Engine | Connection) -> bool:
    return backend(bind) is Backend.SQLITE


SQLITE_VIETNAMESE_KEY = "vi_key"
# PostgreSQL's ICU collation for Vietnamese (Debian's and the official packages are built with
# ICU): d < đ, a < ă < â, tones second: the order of the platform's own sort key.
POSTGRESQL_VIETNAMESE = "vi-x-icu"


@functools.lru_cache(maxsize=65_536)
def _vietnamese_key(name: str | None) -> bytes | None:
    from kyso.platform.formatting import sort_bytes

    return None if name is None else sort_bytes(name)


def vietnamese(session: Session, column: Any) -> Any:
    """``column`` (or a value) in Vietnamese alphabetical order (Dương before Đặng), for ORDER
    BY and keyset comparisons.

    PostgreSQL: its ICU collation. SQLite: the bytes of ``formatting.sort_bytes``, which
    compare as the platform's sort key; a collation calling Python for every comparison cost
    450 ms to sort 20,000 names, this function (once per row) 20 ms.
    """
    if is_postgresql(session):
        return column.collate(POSTGRESQL_VIETNAMESE)
    return func.vi_key(column)


def serialize_on(session: Session, *keys: str) -> None:
    """Until the transaction ends, one transaction at a time per key (check-then-write rules:
    rate limits, one registration at a time).

    PostgreSQL: transaction-level advisory locks, taken in a fixed order (no deadlock between
    two callers with overlapping keys), in one statement: PostgreSQL evaluates a target list
    from left to right, so one round trip takes them in the sorted order (the throttle runs
    this on every login and passport lookup). SQLite has one writer: the caller's first write
    takes the database's write lock until commit, so writing before checking serialises there.
    """
    if is_postgresql(session):
        ordered = sorted(set(keys))
        session.execute(
            select(
                *(
                    func.pg_advisory_xact_lock(func.hashtext(bindparam(f"key{i}", key, String)))
                    for i, key in enumerate(ordered)
                )
            )
        )


# SQLSTATE classes of a failure that says nothing about the work: the connection was lost or
# refused (08), the transaction lost a serialization or deadlock contest (40), the server is
# short of resources (53), or it was shut down or the backend terminated (57P01-57P03).
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57P")
# EX_TEMPFAIL (sysexits.h): the documented "try again later" exit code of the platform's jobs.
EX_TEMPFAIL = 75


def is_transient(exc: BaseException) -> bool:
    """A database error that trying the same work again later may not meet."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate.startswith(_TRANSIENT_SQLSTATES)
    if isinstance(exc, OperationalError):
        # psycopg on a connection already closed (no SQLSTATE); SQLite's busy writer.
        text = str(exc.orig).lower()
        return "connection" in text or "database is locked" in text
    return False


def with_retries(
    work: Callable[[], T],
    *,
    retries: int = 3,
    pause: float = 0.5,
    what: str = "database work",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``work()``, run again up to ``retries`` times after a transient database error.

    ``work`` must be one whole transaction (it opens its own session and commits), so that a
    second run starts from what was committed. Any other error, or the last transient one, is
    raised as it is.
    """
    attempt = 0
    while True:
        try:
            return work()
        except DBAPIError as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            attempt += 1
            log.warning(
                "%s: transient database error, try %d of %d: %s",
                what,
                attempt,
                retries,
                str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
            )
            sleep(pause * attempt)


def exit_database_unavailable(job: str, exc: DBAPIError) -> NoReturn:
    """A command-line job's end on a transient database error: what happened and what to do
    (one line per language, no traceback), and exit code 75 (EX_TEMPFAIL)."""
    import click

    from kyso.platform.i18n import translate

    first = str(exc.orig or exc).strip().splitlines()
    detail = first[0][:200] if first else type(exc).__name__
    for language in ("vi", "en"):
        click.echo(
            translate("common.database_unavailable", language, job=job, detail=detail), err=True
        )
    sys.exit(EX_TEMPFAIL)
