"""Error answers (issues 17 and 19): pages get the site's own error page, inside the layout with
its menu, in Vietnamese (English with the switch), saying what happened and what to do; the
JSON API always gets its JSON (``error``, ``message``, ``retryable``), never Flask's HTML.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from support.platform_client import login
from support.platform_seed import Seed

from kyso.platform.app import create_app
from kyso.platform.i18n import translate

OFFICER_FORBIDDEN = ["/stats/invalid", "/feedback/inbox", "/passports/issuer", "/records/import"]


def _text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


def _api_token(client: FlaskClient) -> str:
    page = _text(client.get("/signing/batches"))
    found = re.search(r'name="csrf-token" content="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    assert found, "no CSRF token on the batches page"
    return found.group(1)


@pytest.mark.parametrize("path", OFFICER_FORBIDDEN)
def test_403_is_the_sites_page_in_vietnamese_then_english(
    client: FlaskClient, org: Seed, path: str
) -> None:
    login(client, "kyduyet.bennghe")  # a signing officer
    response = client.get(path)
    assert response.status_code == 403
    page = _text(response)
    assert 'class="topbar"' in page  # the layout, with the officer's menu
    assert translate("common.nav_signing", "vi") in page
    assert translate("common.error_title", "vi") in page
    assert translate("common.forbidden", "vi") in page
    assert "Forbidden" not in page  # not Werkzeug's page

    client.get("/lang/en")
    page = _text(client.get(path))
    assert translate("common.forbidden", "en") in page
    assert translate("common.nav_signing", "en") in page


def _down_url(database_url: str, tmp_path: Path) -> str:
    """The same kind of database, unreachable: the connection is lost."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'gone' / 'kyso.db'}"  # its folder does not exist
    return "postgresql+psycopg://postgres@127.0.0.1:1/kyso?connect_timeout=2"


def test_a_lost_database_is_the_apis_json_and_the_sites_page_without_a_traceback(
    app: Flask,
    client: FlaskClient,
    org: Seed,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    login(client, "kyduyet.bennghe")
    token = _api_token(client)
    # The same platform (same secret key) after its database went away.
    down = create_app(
        {
            "DATABASE_URL": _down_url(database_url, tmp_path),
            "SECRET_KEY": app.config["SECRET_KEY"],
            "SESSION_COOKIE_SECURE": False,
        }
    )
    browser = down.test_client()
    for name in ("session", "kyso_auth"):
        cookie = client.get_cookie(name)
        assert cookie is not None
        browser.set_cookie(name, cookie.value)
    caplog.set_level(logging.INFO)

    api = browser.post(
        "/signing/api/certificate", json={"der": "AA=="}, headers={"X-CSRFToken": token}
    )
    assert api.status_code == 503
    assert api.is_json
    body = api.get_json()
    assert body["error"] == "common.database_lost"
    assert body["message"] == translate("common.database_lost", "vi")
    assert body["retryable"] is True

    page = browser.get("/signing/")
    assert page.status_code == 503
    assert 'class="topbar"' in _text(page)
    assert translate("common.database_lost", "vi") in _text(page)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert any("database unavailable" in r.getMessage() for r in caplog.records)
    down.extensions["kyso.engine"].dispose()


def test_an_unexpected_error_is_json_on_the_api_and_the_sites_page_elsewhere(
    app: Flask, client: FlaskClient, org: Seed, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate\n")  # a misconfigured deployment
    app.config.update(TESTING=False, TRUST_ANCHORS=str(broken), MANIFEST_KEY=str(broken))
    login(client, "kyduyet.bennghe")
    token = _api_token(client)
    api = client.post(
        "/signing/api/certificate", json={"der": "AA=="}, headers={"X-CSRFToken": token}
    )
    assert api.status_code == 500
    assert api.is_json
    assert api.get_json() == {
        "error": "common.server_error",
        "message": translate("common.server_error", "vi"),
        "retryable": False,
    }
    client.get("/lang/en")
    page = client.get("/.well-known/kyso/manifest-key.pem")
    assert page.status_code == 500
    assert 'class="topbar"' in _text(page)
    assert translate("common.server_error", "en") in _text(page)


def test_an_ended_session_on_the_api_is_a_json_401(
    app: Flask, client: FlaskClient, org: Seed
) -> None:
    now = datetime.now(UTC)
    app.config["CLOCK"] = lambda: now
    login(client, "kyduyet.bennghe")
    token = _api_token(client)
    now += timedelta(minutes=31)  # past the idle limit
    response = client.post(
        "/signing/api/certificate", json={"der": "AA=="}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 401
    assert response.is_json
    body = response.get_json()
    assert body["error"] == "auth.session_ended"
    assert body["message"] == translate("auth.session_ended", "vi", idle="30", hours="12")
    assert body["retryable"] is False
    assert client.get_cookie("kyso_auth") is None  # the dead cookie is removed
