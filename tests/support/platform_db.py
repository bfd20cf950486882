"""Databases for the platform's tests: SQLite always, PostgreSQL where it runs.

In CI a PostgreSQL server listens on 127.0.0.1:5432 (user postgres, trust): there the suite must
run against it, so an unreachable server fails the run when CI is set. On a developer machine
without PostgreSQL the PostgreSQL half is skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, event, text

from kyso.platform.db import Base, make_engine
from kyso.platform.migrations import upgrade

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


# A test that only means something on PostgreSQL (several writers at once, a backend terminated):
# the platform's ``database_url`` fixture, parametrised over both backends, takes only
# PostgreSQL's value, so no SQLite case is collected (and skipped) for it. CI runs it.
postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN):
            return True
    except psycopg.OperationalError:
        return False


class Databases:
    """One migrated template per backend and session; a clean database for every test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sqlite_template: Path | None = None
        self._pg_name: str | None = None

    def sqlite(self, directory: Path) -> str:
        if self._sqlite_template is None:
            template = self.root / "template.db"
            upgrade(f"sqlite:///{template}")
            self._sqlite_template = template
        target = directory / "kyso.db"
        shutil.copy(self._sqlite_template, target)
        return f"sqlite:///{target}"

    def postgresql(self) -> str:
        if self._pg_name is None:
            if not postgres_available():
                if os.environ.get("CI"):
                    pytest.fail("PostgreSQL must be reachable on 127.0.0.1:5432 in CI")
                pytest.skip("no PostgreSQL on 127.0.0.1:5432 here")
            name = f"kyso_test_{os.getpid()}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
            upgrade(PG_URL.format(name=name))
            self._pg_name = name
        url = PG_URL.format(name=self._pg_name)
        engine = make_engine(url)
        # DELETE, children first, then every sequence back to 1 (as TRUNCATE ... RESTART
        # IDENTITY would): a test leaves a few rows, and TRUNCATE's fixed cost per table (a new
        # file for the table and each index, under an exclusive lock) made this reset ~1 s
        # on a loaded machine against ~0.1 s.
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
            conn.execute(
                text("SELECT setval(c.oid, 1, false) FROM pg_class c WHERE c.relkind = 'S'")
            )
        engine.dispose()
        return url

    def close(self) -> None:
        if self._pg_name is not None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')


def databases(root: Path) -> Iterator[Databases]:
    dbs = Databases(root)
    try:
        yield dbs
    finally:
        dbs.close()


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a PostgreSQL ``EXPLAIN (FORMAT JSON)`` plan (``[0]["Plan"]``), parents
    first."""
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)


@contextmanager
def recorded_statements(bind: Engine | Connection) -> Iterator[list[tuple[str, Any, bool]]]:
    """Every statement sent through ``bind`` meanwhile, as it goes to the driver: (SQL, its
    parameters, whether it is an executemany)."""
    seen: list[tuple[str, Any, bool]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        seen.append((sql, params, many))

    event.listen(bind, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(bind, "before_cursor_execute", record)
