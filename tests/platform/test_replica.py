"""The read replica (``DATABASE_REPLICA_URL``) on real PostgreSQL: the statistics page and its
export read the replica, every write goes to the primary, and a replica that does not answer
sends the reads to the primary and shows as ``degraded`` in ``/readyz``.

The "replica" is a second database migrated and seeded the same way as the primary (the same
rows, the same ids) and then changed, so that the two hold different rows and a page says which
one it read. (A ``CREATE DATABASE ... TEMPLATE`` copy needs the primary without connections,
which other tests' pools of the same session may still hold.)
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from openpyxl import load_workbook
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from support.feedback_data import invalid_people
from support.platform_client import logged_in
from support.platform_db import PG_ADMIN, PG_URL, Databases
from support.platform_seed import Seed, seed

from kyso.platform import settings, web
from kyso.platform.app import create_app
from kyso.platform.db import make_engine
from kyso.platform.migrations import upgrade
from kyso.platform.models import AuditEvent, AuthSession
from kyso.platform.ops import metrics
from kyso.platform.registry.reference_server import ReferenceServer, make_app, write_dataset

PRIMARY_NAME = "Hoàng Văn Lệch"  # the mismatch person of invalid_people, as the primary has it
REPLICA_NAME = "Hoàng Văn Bảnsao"  # the same person, renamed in the replica only


@dataclass
class Pair:
    primary: str
    replica: str
    org: Seed


@pytest.fixture
def pair(platform_databases: Databases) -> Iterator[Pair]:
    primary = platform_databases.postgresql()
    engine = make_engine(primary)
    with Session(engine, expire_on_commit=False) as session:
        org = seed(session)
        invalid_people(session, org)
        session.commit()
    engine.dispose()
    name = f"{primary.rsplit('/', 1)[1]}_replica"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    replica = PG_URL.format(name=name)
    upgrade(replica)
    copy = make_engine(replica)
    with Session(copy) as session:
        copied = seed(session)
        invalid_people(session, copied)
        session.commit()
        assert copied.station_ben_nghe.id == org.station_ben_nghe.id  # the same ids both sides
    with copy.begin() as connection:
        changed = connection.execute(
            text(
                "UPDATE people SET full_name = :new, name_key = 'hoang van bansao' "
                "WHERE full_name = :old"
            ),
            {"new": REPLICA_NAME, "old": PRIMARY_NAME},
        ).rowcount
    copy.dispose()
    assert changed == 1
    try:
        yield Pair(primary, replica, org)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ReferenceServer]:
    """A registry that answers, so that /readyz's answer depends on the databases only."""
    dataset = tmp_path / "registry.db"
    write_dataset(dataset, [])
    with ReferenceServer(make_app(dataset)) as running:
        yield running


def _app(primary: str, replica: str | None, registry_url: str = "http://127.0.0.1:9") -> Flask:
    config = {
        "DATABASE_URL": primary,
        "SECRET_KEY": "test-secret",
        "TESTING": True,
        "SESSION_COOKIE_SECURE": False,
        "REGISTRY_URL": registry_url,
    }
    if replica is not None:
        config["DATABASE_REPLICA_URL"] = replica
    return create_app(config)


def _dispose(app: Flask) -> None:
    for name in ("kyso.engine", "kyso.replica_engine"):
        engine = app.extensions.get(name)
        if engine is not None:
            engine.dispose()


def _count(url: str, statement: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(statement)).scalar_one())
    finally:
        engine.dispose()


def _exported_names(body: bytes) -> list[str]:
    sheet = load_workbook(io.BytesIO(body), read_only=True).worksheets[0]
    return [str(row[2]) for row in list(sheet.iter_rows(values_only=True))[1:]]


def test_statistics_and_export_read_the_replica_and_writes_stay_on_the_primary(
    pair: Pair,
) -> None:
    app = _app(pair.primary, pair.replica)
    try:
        client = logged_in(app, pair.org.staff.username)  # the session row: a write

        page = client.get("/stats/invalid").get_data(as_text=True)
        assert REPLICA_NAME in page
        assert PRIMARY_NAME not in page

        response = client.get("/stats/invalid/export.xlsx?group=mismatch")
        assert response.status_code == 200
        assert _exported_names(response.get_data()) == [REPLICA_NAME, REPLICA_NAME]

        ready = client.get("/readyz").json
        assert ready["checks"]["database_replica"]["status"] == "ok"
        assert "not a standby" in ready["checks"]["database_replica"]["detail"]
    finally:
        _dispose(app)

    # The login's session and the export's audit event are on the primary, none on the replica.
    for table in (AuthSession, AuditEvent):
        name = table.__tablename__
        assert _count(pair.primary, f"SELECT count(*) FROM {name}") >= 1, name
        assert _count(pair.replica, f"SELECT count(*) FROM {name}") == 0, name
    exports = "SELECT count(*) FROM audit_events WHERE action = 'stats.export_invalid'"
    assert _count(pair.primary, exports) == 1
    # The primary still has its own name: nothing of the replica flowed back.
    own = f"SELECT count(*) FROM people WHERE full_name = '{PRIMARY_NAME}'"
    assert _count(pair.primary, own) == 1


def test_the_replica_connections_refuse_writes(pair: Pair) -> None:
    app = _app(pair.primary, pair.replica)
    try:
        with app.test_request_context(), web.read_session() as reader:
            assert reader.get_bind() is app.extensions["kyso.replica_engine"]
            assert reader.scalar(select(func.count()).select_from(AuditEvent)) == 0
            with pytest.raises(DBAPIError, match="read-only transaction"):
                reader.execute(text("DELETE FROM people"))
    finally:
        _dispose(app)
    assert _count(pair.replica, "SELECT count(*) FROM people") > 0


def test_a_replica_that_does_not_answer_sends_the_reads_to_the_primary(
    pair: Pair, registry: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    down = pair.replica.rsplit("/", 1)[0] + "/kyso_no_such_replica"
    app = _app(pair.primary, down, registry.url)
    try:
        client = logged_in(app, pair.org.staff.username)
        before = metrics.REPLICA_FALLBACKS._value.get()
        with caplog.at_level(logging.WARNING):
            page = client.get("/stats/invalid")
        assert page.status_code == 200
        assert PRIMARY_NAME in page.get_data(as_text=True)
        assert metrics.REPLICA_FALLBACKS._value.get() == before + 1
        assert any("database replica unavailable" in r.getMessage() for r in caplog.records)

        # Within the retry period the next reads go straight to the primary, untried.
        response = client.get("/stats/invalid/export.xlsx?group=mismatch")
        assert _exported_names(response.get_data()) == [PRIMARY_NAME, PRIMARY_NAME]
        assert metrics.REPLICA_FALLBACKS._value.get() == before + 1

        # Still ready (a replica that is down must not take every server out), but it says so.
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.json
        assert ready.json["status"] == "degraded"
        assert ready.json["checks"]["database_replica"]["status"] == "degraded"
        assert "kyso_no_such_replica" in ready.json["checks"]["database_replica"]["detail"]
        assert ready.json["checks"]["database"]["status"] == "ok"
    finally:
        _dispose(app)


def test_without_a_replica_the_reads_use_the_primary(pair: Pair) -> None:
    app = _app(pair.primary, None)
    try:
        client = logged_in(app, pair.org.staff.username)
        assert PRIMARY_NAME in client.get("/stats/invalid").get_data(as_text=True)
        assert client.get("/readyz").json["checks"]["database_replica"]["status"] == "skipped"
    finally:
        _dispose(app)


def test_the_replica_setting() -> None:
    url = "postgresql+psycopg://kyso_read@replica/kyso"
    assert settings.from_environ({"DATABASE_REPLICA_URL": url}).database_replica_url == url
    assert settings.from_environ({}).database_replica_url is None
    with pytest.raises(settings.SettingsError, match="DATABASE_REPLICA_URL"):
        settings.from_environ({"DATABASE_REPLICA_URL": "sqlite:///copy.db"})
