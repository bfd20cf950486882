"""Login, throttling, CSRF, security headers, language switch."""

from __future__ import annotations

import io
from pathlib import Path

from argon2 import Type
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support import fast_passwords
from support.platform_client import csrf_token, login
from support.platform_seed import PASSWORD, Seed

from kyso.platform.models import AuditEvent, User


def test_login_and_logout(client: FlaskClient, org: Seed, session: Session) -> None:
    response = login(client, "kyduyet.bennghe")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/signing/")
    page = client.get("/signing/")
    assert page.status_code == 200
    assert "Lê Thị Hồng" in page.get_data(as_text=True)
    token = csrf_token(client, "/signing/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/signing/").status_code == 302
    actions = session.scalars(select(AuditEvent.action)).all()
    assert "auth.login" in actions
    assert "auth.logout" in actions


def test_wrong_password_and_unknown_user_look_the_same(client: FlaskClient, org: Seed) -> None:
    wrong = login(client, "kyduyet.bennghe", "not-the-password")
    unknown = login(client, "nobody", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Tên đăng nhập hoặc mật khẩu không đúng" in wrong.get_data(as_text=True)
    assert wrong.get_data(as_text=True).count("không đúng") == unknown.get_data(as_text=True).count(
        "không đúng"
    )


def test_login_is_throttled(client: FlaskClient, org: Seed) -> None:
    for _ in range(5):
        assert login(client, "kyduyet.bennghe", "wrong-password-x").status_code == 401
    blocked = login(client, "kyduyet.bennghe", PASSWORD)
    assert blocked.status_code == 401
    assert "quá nhiều lần" in blocked.get_data(as_text=True)


def test_csrf_is_required(client: FlaskClient, org: Seed) -> None:
    response = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 400


def test_passwords_are_argon2id(session: Session, org: Seed) -> None:
    hashes = session.scalars(select(User.password_hash)).all()
    assert hashes
    assert all(h.startswith("$argon2id$") for h in hashes)


def test_the_platform_hashes_at_argon2_defaults_cost() -> None:
    """The suite hashes at argon2id's lowest cost (support/fast_passwords.py); the platform's
    own hasher keeps argon2-cffi's defaults (RFC 9106's second recommended option)."""
    assert fast_passwords.PRODUCTION.type is Type.ID
    assert (
        fast_passwords.PRODUCTION.time_cost,
        fast_passwords.PRODUCTION.memory_cost,
        fast_passwords.PRODUCTION.parallelism,
    ) == (3, 65536, 4)
    assert fast_passwords.PRODUCTION is not fast_passwords.FAST


def test_security_headers_and_no_inline_script(client: FlaskClient, org: Seed) -> None:
    login(client, "kyduyet.bennghe")
    response = client.get("/signing/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "<script>" not in response.get_data(as_text=True)


def test_open_redirect_after_login_is_refused(client: FlaskClient, org: Seed) -> None:
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=//evil.example/x",
        data={"username": "admin", "password": PASSWORD, "csrf_token": token},
    )
    assert "evil.example" not in response.headers["Location"]


def test_language_switch(client: FlaskClient, org: Seed) -> None:
    assert "Đăng nhập" in client.get("/login").get_data(as_text=True)
    client.get("/lang/en")
    assert "Log in" in client.get("/login").get_data(as_text=True)


def test_error_pages_say_what_to_do_in_vietnamese(client: FlaskClient, org: Seed) -> None:
    missing_token = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert missing_token.status_code == 400
    assert "không có gì được lưu" in missing_token.get_data(as_text=True)
    assert client.get("/no-such-page").status_code == 404
    assert "Không tìm thấy" in client.get("/no-such-page").get_data(as_text=True)
    login(client, "nhanvien.bennghe")
    too_big = client.post(
        "/records/import",
        data={"file": (io.BytesIO(b"x" * (21 * 1024 * 1024)), "big.csv")},
        content_type="multipart/form-data",
    )
    assert too_big.status_code == 413
    assert "lớn hơn 20 MB" in too_big.get_data(as_text=True)


def test_client_address_behind_a_trusted_proxy(
    database_url: str, session: Session, org: Seed, tmp_path: Path
) -> None:
    """Throttling and the audit trail see the citizen's address, not the proxy's, when one
    reverse proxy is declared (KYSO_TRUSTED_PROXIES); without it X-Forwarded-For is ignored."""
    from kyso.platform.app import create_app
    from kyso.platform.models import ThrottleAttempt

    for proxies, expected in ((1, "203.0.113.7"), (0, "127.0.0.1")):
        app = create_app(
            {
                "DATABASE_URL": database_url,
                "SECRET_KEY": "proxy-test",
                "SESSION_COOKIE_SECURE": False,
                "TRUSTED_PROXIES": proxies,
            }
        )
        app.instance_path = str(tmp_path / "instance")
        client = app.test_client()
        token = csrf_token(client, "/login")
        client.post(
            "/login",
            data={"username": "nobody", "password": "x", "csrf_token": token},
            headers={"X-Forwarded-For": "203.0.113.7"},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        session.expire_all()
        last = session.scalars(
            select(ThrottleAttempt)
            .where(ThrottleAttempt.scope == "login")
            .order_by(ThrottleAttempt.id.desc())
        ).first()
        assert last is not None
        assert last.ip == expected
        app.extensions["kyso.engine"].dispose()
