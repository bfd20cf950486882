"""The migrations build exactly the models' schema, up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect
from support.platform_db import PG_ADMIN, PG_URL, postgres_available

import kyso.platform.models  # noqa: F401 - registers every table
from kyso.platform.db import Base, make_engine
from kyso.platform.migrations import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own (the shared test databases must stay at head)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL must be reachable on 127.0.0.1:5432 in CI")
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 here")
    name = f"kyso_migrations_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# SQLAlchemy cannot reflect SQLite's expression indexes, so alembic skips comparing this one
# there (and says so); test_migrated_schema_equals_the_models checks its definition instead.
SQLITE_UNCOMPARED = "ix_people_phone_name"


def differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection, warnings.catch_warnings():
            for message in ("autogenerate skipping", "Skipped unsupported reflection"):
                warnings.filterwarnings("ignore", f"{message}.*'?{SQLITE_UNCOMPARED}'?")
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def index_definitions(url: str, table: str) -> dict[str, str]:
    """Each index of ``table`` (expression indexes too) and its CREATE INDEX statement."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            else:
                query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s"
            rows = connection.exec_driver_sql(query, (table,))
            return {str(name): str(sql) for name, sql in rows}
    finally:
        engine.dispose()


def indexes(url: str, table: str) -> set[str]:
    return set(index_definitions(url, table))


def test_migrated_schema_equals_the_models(empty_database: str) -> None:
    upgrade(empty_database)
    assert differences(empty_database) == []
    people = index_definitions(empty_database, "people")
    assert {"ix_people_phone_name", "ix_people_name_key"} <= set(people)
    assert "ix_people_phone_prefix" not in people  # ix_people_phone_name serves a phone prefix
    # Its columns (SQLite's definition is not compared above: SQLITE_UNCOMPARED).
    columns = (
        "(phone, (name_key || ''))"
        if empty_database.startswith("sqlite")
        else "(phone varchar_pattern_ops, (((name_key)::text || ''::text)) text_pattern_ops)"
        " INCLUDE (id, full_name, name_key)"
    )
    assert people["ix_people_phone_name"].endswith(columns), people["ix_people_phone_name"]
    assert "ix_doses_signing_search" in indexes(empty_database, "doses")
    assert "ix_dose_signatures_current" in indexes(empty_database, "dose_signatures")


def test_the_test_databases_are_at_head(database_url: str) -> None:
    assert differences(database_url) == []


def test_signing_migration_goes_down_and_up_again(empty_database: str) -> None:
    upgrade(empty_database)
    from alembic import command

    from kyso.platform.migrations import config

    command.downgrade(config(empty_database), "0001")
    assert "signing_selections" not in tables(empty_database)
    assert "ix_doses_signing_search" not in indexes(empty_database, "doses")
    assert "people" in tables(empty_database)
    upgrade(empty_database)
    assert "signing_selections" in tables(empty_database)
    assert differences(empty_database) == []


def test_the_db_upgrade_command(empty_database: str, tmp_path: Path) -> None:
    from kyso.platform.cli import main

    result = CliRunner().invoke(
        main,
        ["db", "upgrade"],
        env={"DATABASE_URL": empty_database, "KYSO_INSTANCE_PATH": str(tmp_path / "instance")},
    )
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert differences(empty_database) == []
    # Running it again is harmless.
    again = CliRunner().invoke(
        main,
        ["db", "upgrade"],
        env={"DATABASE_URL": empty_database, "KYSO_INSTANCE_PATH": str(tmp_path / "instance")},
    )
    assert again.exit_code == 0, again.output
