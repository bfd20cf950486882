"""Platform fixtures: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from support.chromium import browser  # noqa: F401 - the browser tests' shared Chromium
from support.fast_passwords import fast_password_hashes  # noqa: F401 - autouse, whole session
from support.platform_db import Databases, databases
from support.platform_seed import Seed, seed

from kyso.platform.app import create_app


@pytest.fixture(scope="session")
def platform_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    yield from databases(tmp_path_factory.mktemp("platform-db"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, platform_databases: Databases, tmp_path: Path
) -> str:
    if request.param == "sqlite":
        return platform_databases.sqlite(tmp_path)
    return platform_databases.postgresql()


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret",
            "TESTING": True,
            "SESSION_COOKIE_SECURE": False,
            "REGISTRY_URL": "http://127.0.0.1:9",  # nothing listens: tests start their own
        }
    )
    application.instance_path = str(tmp_path / "instance")
    yield application
    application.extensions["kyso.engine"].dispose()


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.extensions["kyso.sessions"]() as db_session:
        yield db_session


@pytest.fixture
def org(session: Session) -> Seed:
    data = seed(session)
    session.commit()
    return data


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
