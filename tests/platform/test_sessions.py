"""Logged-in sessions held server-side: ended by logout, password, role and scope changes and
disabling; idle and absolute limits; shared by several app servers; and the security headers.

A "stolen" cookie is a copy of every cookie the victim's browser holds, replayed by another
client: what an attacker who read them (a shared PC, a proxy log, malware) would do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import PASSWORD, Seed

from kyso.platform.app import create_app
from kyso.platform.models import AuthSession, User

COOKIES = ("session", "kyso_auth")  # Flask's (CSRF, language) and the session token's
HTTPS = "https://localhost"


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(app: Flask) -> Clock:
    ticking = Clock()
    app.config["CLOCK"] = ticking
    return ticking


def capture(client: FlaskClient) -> dict[str, str]:
    found = {name: client.get_cookie(name) for name in COOKIES}
    return {name: cookie.value for name, cookie in found.items() if cookie is not None}


def replay(app: Flask, cookies: dict[str, str]) -> FlaskClient:
    thief = app.test_client()
    for name, value in cookies.items():
        thief.set_cookie(name, value)
    return thief


def logged_in(client: FlaskClient) -> bool:
    response = client.get("/users/me")
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert "/login" in response.headers["Location"]
    return response.status_code == 200


def post(client: FlaskClient, path: str, data: dict[str, str]) -> Any:
    token = csrf_token(client, "/users/me")
    return client.post(path, data={**data, "csrf_token": token})


def logout(client: FlaskClient) -> None:
    assert post(client, "/logout", {}).status_code == 302


# --- revocation ---------------------------------------------------------------------------------


def test_a_cookie_captured_before_logout_is_refused_after_it(
    app: Flask, client: FlaskClient, org: Seed
) -> None:
    login(client, "kyduyet.bennghe")
    stolen = capture(client)
    assert logged_in(replay(app, stolen))  # while the session lives, a copy works
    logout(client)
    assert not logged_in(client)
    assert not logged_in(replay(app, stolen))


def test_a_password_change_ends_every_other_session(
    app: Flask, client: FlaskClient, org: Seed
) -> None:
    login(client, "nhanvien.bennghe")
    second_pc = app.test_client()
    login(second_pc, "nhanvien.bennghe")
    stolen = capture(client)
    new = "mat-khau-moi-2024"
    response = post(
        client,
        "/users/me/password",
        {"current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert response.status_code == 302
    # Every other copy is dead; the browser that changed it goes on, with a new token.
    assert not logged_in(replay(app, stolen))
    assert not logged_in(second_pc)
    assert logged_in(client)
    assert capture(client)["kyso_auth"] != stolen["kyso_auth"]


def test_a_password_reset_ends_the_users_sessions(
    app: Flask, client: FlaskClient, org: Seed
) -> None:
    staff = app.test_client()
    login(staff, "nhanvien.bennghe")
    login(client, "admin")
    assert post(client, f"/users/{org.staff.id}/password", {}).status_code == 200
    assert not logged_in(staff)
    assert logged_in(client)  # the administrator's own session is not touched


def _officer_form(org: Seed, **changes: str) -> dict[str, str]:
    form = {
        "full_name": "Lê Thị Hồng",
        "role": "signing_officer",
        "facility_id": str(org.station_ben_nghe.id),
        "signing_unit_id": str(org.unit_ben_nghe.id),
        "language": "vi",
        "active": "1",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v != ""}


@pytest.mark.parametrize(
    "change",
    ["role", "signing_unit", "facility", "disabled_and_enabled_again"],
)
def test_a_role_or_scope_change_or_disabling_ends_the_users_sessions(
    app: Flask, client: FlaskClient, session: Session, org: Seed, change: str
) -> None:
    officer = app.test_client()
    login(officer, "kyduyet.bennghe")
    stolen = capture(officer)
    login(client, "admin")
    edit = f"/users/{org.officer.id}/edit"
    # An edit that changes nothing of what they may do (name, language) leaves them logged in.
    renamed = _officer_form(org, full_name="Lê Thị Hồng Nhung", language="en")
    assert post(client, edit, renamed).status_code == 302
    assert logged_in(officer)
    if change == "role":
        form = _officer_form(org, role="facility_staff", signing_unit_id="")
    elif change == "signing_unit":
        # A district centre's officer: no facility of their own, the unit's facilities to sign.
        form = _officer_form(org, signing_unit_id=str(org.unit_district.id), facility_id="")
    elif change == "facility":
        # An officer's unit must sign for their facility: moving facility moves the unit too.
        form = _officer_form(
            org,
            facility_id=str(org.station_ben_thanh.id),
            signing_unit_id=str(org.unit_district.id),
        )
    else:
        assert post(client, edit, _officer_form(org, active="")).status_code == 302
        form = _officer_form(org)  # enabled again: the old sessions stay ended
    assert post(client, edit, form).status_code == 302
    session.expire_all()
    user = session.get(User, org.officer.id)
    assert user is not None
    assert user.active
    assert not logged_in(officer)
    assert not logged_in(replay(app, stolen))


# --- limits -------------------------------------------------------------------------------------


def test_an_idle_session_ends_after_30_minutes(
    app: Flask, client: FlaskClient, org: Seed, clock: Clock
) -> None:
    login(client, "admin")
    stolen = capture(client)
    clock.advance(minutes=29)
    assert logged_in(client)  # each request restarts the idle time
    clock.advance(minutes=29)
    assert logged_in(client)
    clock.advance(minutes=30)
    assert not logged_in(client)
    assert client.get_cookie("kyso_auth") is None  # the dead cookie is removed
    page = client.get("/login").get_data(as_text=True)  # and the login page says why
    assert "Phiên làm việc đã kết thúc: quá 30 phút không thao tác" in page
    assert "Hãy đăng nhập lại" in page
    stranger = app.test_client()  # someone who was never logged in is not told that
    assert not logged_in(stranger)
    assert "Phiên làm việc" not in stranger.get("/login").get_data(as_text=True)
    assert not logged_in(replay(app, stolen))


def test_a_session_ends_12_hours_after_login_however_busy(
    client: FlaskClient, org: Seed, clock: Clock
) -> None:
    login(client, "admin")
    for _ in range(24):
        clock.advance(minutes=29)
        assert logged_in(client)
    clock.advance(minutes=24)  # 12 hours since the login, 24 minutes since the last request
    assert not logged_in(client)
    assert login(client, "admin").status_code == 302  # logging in again starts a new one
    assert logged_in(client)


def test_the_limits_are_configurable(
    app: Flask, client: FlaskClient, org: Seed, clock: Clock
) -> None:
    app.config.update(SESSION_IDLE_MINUTES=5, SESSION_LIFETIME_HOURS=1)
    login(client, "admin")
    clock.advance(minutes=4)
    assert logged_in(client)
    clock.advance(minutes=6)
    assert not logged_in(client)
    login(client, "admin")
    for _ in range(14):
        clock.advance(minutes=4)
        assert logged_in(client)
    clock.advance(minutes=4)  # 60 minutes
    assert not logged_in(client)


def test_limits_that_make_no_sense_are_refused(tmp_path: Path) -> None:
    config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "SECRET_KEY": "k"}
    with pytest.raises(ValueError, match="KYSO_SESSION_IDLE_MINUTES"):
        create_app({**config, "SESSION_IDLE_MINUTES": 0})
    with pytest.raises(ValueError, match="KYSO_SESSION_LIFETIME_HOURS"):
        create_app({**config, "SESSION_IDLE_MINUTES": 90, "SESSION_LIFETIME_HOURS": 1})


def test_last_seen_is_written_at_most_once_a_minute(
    client: FlaskClient, session: Session, org: Seed, clock: Clock
) -> None:
    login(client, "admin")
    started = clock.now

    def last_seen() -> datetime:
        session.expire_all()
        seen = session.scalars(select(AuthSession.last_seen_at)).one()
        return seen if seen.tzinfo else seen.replace(tzinfo=UTC)

    assert last_seen() == started
    for _ in range(5):
        clock.advance(seconds=10)
        assert logged_in(client)
    assert last_seen() == started  # 50 seconds of requests: no write
    clock.advance(seconds=15)
    assert logged_in(client)
    assert last_seen() == clock.now


# --- the cookie ---------------------------------------------------------------------------------


def test_the_token_is_new_at_every_login_and_stored_only_hashed(
    app: Flask, client: FlaskClient, session: Session, org: Seed
) -> None:
    client.set_cookie("kyso_auth", "planted-by-an-attacker")  # session fixation
    response = login(client, "admin")
    set_cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("kyso_auth=")]
    assert len(set_cookie) == 1
    assert "HttpOnly" in set_cookie[0]
    assert "SameSite=Lax" in set_cookie[0]
    assert "Secure" not in set_cookie[0]  # plain http configured in the tests
    assert "Expires" not in set_cookie[0]  # gone when the browser closes
    first = capture(client)["kyso_auth"]
    assert first != "planted-by-an-attacker"
    assert len(first) >= 43  # 256 bits
    stored = session.scalars(select(AuthSession)).one()
    assert stored.token_hash == hashlib.sha256(first.encode()).hexdigest()
    assert first not in repr([getattr(stored, c.key) for c in AuthSession.__table__.columns])

    login(client, "admin")  # logging in again in the same browser: a new token, the old one ends
    assert capture(client)["kyso_auth"] != first
    assert not logged_in(replay(app, {"kyso_auth": first}))
    # Flask's own cookie alone (CSRF token, language) logs nobody in.
    assert not logged_in(replay(app, {"session": capture(client)["session"]}))


def _https_login(client: FlaskClient, username: str) -> Any:
    page = client.get("/login", base_url=HTTPS).get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return client.post(
        "/login",
        base_url=HTTPS,
        headers={"Referer": f"{HTTPS}/login"},  # flask-wtf checks it over https
        data={"username": username, "password": PASSWORD, "csrf_token": token},
    )


def test_secure_cookies_and_hsts_when_configured(app: Flask, org: Seed) -> None:
    app.config["SESSION_COOKIE_SECURE"] = True
    client = app.test_client()
    response = _https_login(client, "admin")
    assert response.status_code == 302
    set_cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("kyso_auth=")]
    assert "Secure" in set_cookie[0]
    page = client.get("/users/me", base_url=HTTPS)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert client.get("/login", base_url=HTTPS).headers["Strict-Transport-Security"]


# --- several app servers ------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_app_servers_on_one_database_share_sessions_and_their_end(
    app: Flask, database_url: str, client: FlaskClient, org: Seed
) -> None:
    other = create_app(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": app.config["SECRET_KEY"],  # the servers share their configuration
            "TESTING": True,
            "SESSION_COOKIE_SECURE": False,
        }
    )
    try:
        login(client, "kyduyet.bennghe")
        stolen = capture(client)
        on_other = replay(other, stolen)  # the load balancer sends the next request there
        assert logged_in(on_other)
        logout(on_other)  # logging out on one server ...
        assert not logged_in(client)  # ... ends the session on the other
        assert not logged_in(replay(app, stolen))

        # An administrator on one server disables an officer logged in on the other.
        login(client, "kyduyet.bennghe")
        admin = other.test_client()
        login(admin, "admin")
        form = _officer_form(org, active="")
        assert post(admin, f"/users/{org.officer.id}/edit", form).status_code == 302
        assert not logged_in(client)
    finally:
        other.extensions["kyso.engine"].dispose()


# --- headers ------------------------------------------------------------------------------------


def _assert_private(response: Any) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in response.headers  # plain http configured


def test_headers_on_pages_downloads_and_the_json_api(
    app: Flask, client: FlaskClient, org: Seed
) -> None:
    _assert_private(client.get("/login"))
    login(client, "admin")
    _assert_private(client.get("/users/me"))
    _assert_private(client.get(f"/users/{org.officer.id}"))
    download = client.get("/records/import/template.csv")
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    _assert_private(download)

    officer = app.test_client()
    login(officer, "kyduyet.bennghe")
    _assert_private(officer.get("/signing/"))
    api = officer.post("/signing/api/certificate", json={"der": ""})  # no CSRF token: refused
    assert api.status_code == 400
    assert api.is_json
    _assert_private(api)

    static = client.get("/static/style.css")
    assert static.status_code == 200
    assert "no-store" not in static.headers.get("Cache-Control", "")
    assert static.headers["X-Content-Type-Options"] == "nosniff"
