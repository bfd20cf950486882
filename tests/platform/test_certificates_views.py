"""The "Đăng ký chứng thư số" procedure through the pages: user list → the officer's row →
"Đăng ký chứng thư số" → serial → Lưu; deactivation by an administrator or the officer."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import ProvinceSeed, Seed, add_province

from kyso.platform.models import AuditEvent, SigningCertificate
from kyso.platform.users.service import active_certificate, register_certificate


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


def active(session: Session, user_id: int) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            select(SigningCertificate.serial_hex).where(
                SigningCertificate.user_id == user_id,
                SigningCertificate.deactivated_at.is_(None),
            )
        )
    )


def test_the_procedure(client: FlaskClient, session: Session, org: Seed) -> None:
    login(client, "admin")
    # User management → user list → "Đăng ký chứng thư số" on the officer's row.
    listing = text(client.get("/users/"))
    link = f"/users/{org.officer.id}/certificate"
    row = re.search(rf'<tr>(?:(?!</tr>).)*href="{link}"(?:(?!</tr>).)*</tr>', listing, re.S)
    assert row
    assert "Lê Thị Hồng" in row.group(0)
    assert "Đăng ký chứng thư số" in row.group(0)
    form = client.get(link)
    page = text(form)
    assert form.status_code == 200
    assert "Chưa có chứng thư số đang dùng" in page
    assert 'name="serial"' in page
    assert 'name="csrf_token"' in page
    assert "<script>" not in page
    assert " style=" not in page
    # Enter the serial → Save.
    token = csrf_token(client, link)
    response = client.post(link, data={"serial": "54:01:0a:3f", "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(link)
    page = text(client.get(link))
    assert "Đã đăng ký chứng thư số 54 01 0A 3F cho Lê Thị Hồng" in page
    assert "Chứng thư số đang dùng:" in page
    assert "Quản trị viên" in page  # registered by
    assert active(session, org.officer.id) == ["54010A3F"]
    # The list shows the active serial now.
    assert "54 01 0A 3F" in text(client.get("/users/"))


def test_same_serial_again_and_replacement(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    login(client, "admin")
    link = f"/users/{org.officer.id}/certificate"
    token = csrf_token(client, link)
    client.post(link, data={"serial": "AA BB", "csrf_token": token})
    client.post(link, data={"serial": "aabb", "csrf_token": token})
    assert "không có gì thay đổi" in text(client.get(link))
    assert session.scalar(select(func.count()).select_from(SigningCertificate)) == 1
    client.post(link, data={"serial": "CC DD", "csrf_token": token})
    page = text(client.get(link))
    assert "chứng thư số cũ AA BB đã được hủy" in page
    assert "Đã thay bằng chứng thư số mới" in page  # the history's reason
    assert active(session, org.officer.id) == ["CCDD"]


def test_invalid_serial_and_missing_csrf(client: FlaskClient, session: Session, org: Seed) -> None:
    login(client, "admin")
    link = f"/users/{org.officer.id}/certificate"
    token = csrf_token(client, link)
    response = client.post(link, data={"serial": "54-01-zz", "csrf_token": token})
    assert response.status_code == 400
    page = text(response)
    assert "Số sê-ri chỉ gồm chữ số 0–9 và chữ A–F" in page
    assert 'value="54-01-zz"' in page  # kept for correction
    response = client.post(link, data={"serial": "54 01 0A 3F"})  # no CSRF token
    assert response.status_code == 400
    assert active(session, org.officer.id) == []


def test_serial_of_another_officer(client: FlaskClient, session: Session, org: Seed) -> None:
    register_certificate(session, org.admin, org.officer, "12 34 56")
    session.commit()
    login(client, "admin")
    link = f"/users/{org.district_officer.id}/certificate"
    response = client.post(
        link, data={"serial": "12:34:56", "csrf_token": csrf_token(client, link)}
    )
    assert response.status_code == 400
    page = text(response)
    assert "đang được đăng ký cho một người dùng khác" in page
    error = re.search(r'<p class="error" role="alert">([^<]*)</p>', page)
    assert error
    assert "Lê Thị Hồng" not in error.group(1)
    assert "kyduyet.bennghe" not in error.group(1)
    assert active(session, org.district_officer.id) == []
    refused = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "certificate.register_refused")
    ).all()
    assert len(refused) == 1  # kept although the registration was refused


def test_only_officers_have_the_page(client: FlaskClient, org: Seed) -> None:
    login(client, "admin")
    response = client.get(f"/users/{org.staff.id}/certificate")
    assert response.status_code == 302
    assert "Chỉ người ký duyệt mới đăng ký chứng thư số" in text(
        client.get(response.headers["Location"])
    )


def test_administrator_deactivates(client: FlaskClient, session: Session, org: Seed) -> None:
    certificate = register_certificate(session, org.admin, org.officer, "AA")
    session.commit()
    login(client, "admin")
    link = f"/users/{org.officer.id}/certificate"
    page = text(client.get(link))
    action = f"/users/{org.officer.id}/certificates/{certificate.id}/deactivate"
    assert f'action="{action}"' in page
    token = csrf_token(client, link)
    # A reason is required.
    response = client.post(action, data={"reason": "", "csrf_token": token})
    assert response.status_code == 302
    assert "Hãy chọn lý do hủy" in text(client.get(link))
    response = client.post(action, data={"reason": "other", "note": " ", "csrf_token": token})
    assert "Hãy chọn lý do hủy" in text(client.get(link))
    assert active(session, org.officer.id) == ["AA"]
    # Without the CSRF token nothing happens.
    assert client.post(action, data={"reason": "token_lost"}).status_code == 400
    assert active(session, org.officer.id) == ["AA"]
    response = client.post(
        action, data={"reason": "token_lost", "note": "báo ngày 3/5", "csrf_token": token}
    )
    assert response.headers["Location"].endswith(link)
    page = text(client.get(link))
    assert "Đã hủy đăng ký chứng thư số AA của Lê Thị Hồng" in page
    assert "Mất hoặc hỏng token: báo ngày 3/5" in page
    assert active(session, org.officer.id) == []


def test_officer_sees_history_and_switches_off_a_lost_token(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    register_certificate(session, org.admin, org.officer, "AA")
    certificate = register_certificate(session, org.admin, org.officer, "BB")
    session.commit()
    login(client, "kyduyet.bennghe")
    page = text(client.get("/users/me"))
    assert "Lịch sử đăng ký chứng thư số" in page
    assert "AA" in page
    assert "BB" in page
    assert "Đã thay bằng chứng thư số mới" in page
    # The officer cannot register (the procedure is the administrator's) ...
    assert client.get(f"/users/{org.officer.id}/certificate").status_code == 403
    # ... but may switch off their own active certificate.
    token = csrf_token(client, "/users/me")
    response = client.post(
        f"/users/{org.officer.id}/certificates/{certificate.id}/deactivate",
        data={"reason": "token_lost", "csrf_token": token},
    )
    assert response.headers["Location"].endswith("/users/me")
    assert "Đã hủy đăng ký chứng thư số BB" in text(client.get("/users/me"))
    session.expire_all()
    assert active_certificate(session, org.officer) is None


def test_other_officers_cannot_deactivate(client: FlaskClient, session: Session, org: Seed) -> None:
    certificate = register_certificate(session, org.admin, org.officer, "AA")
    session.commit()
    login(client, "kyduyet.quan1")
    token = csrf_token(client, "/users/me")
    path = f"/users/{org.officer.id}/certificates/{certificate.id}/deactivate"
    assert client.post(path, data={"reason": "token_lost", "csrf_token": token}).status_code == 403
    # Nor by pointing at their own user id with someone else's certificate.
    path = f"/users/{org.district_officer.id}/certificates/{certificate.id}/deactivate"
    response = client.post(path, data={"reason": "token_lost", "csrf_token": token})
    assert response.status_code == 302
    assert "Không tìm thấy chứng thư số này" in text(client.get("/users/me"))
    assert active(session, org.officer.id) == ["AA"]


@pytest.fixture
def hanoi(session: Session, org: Seed) -> ProvinceSeed:
    data = add_province(session)
    session.commit()
    return data


def test_provincial_administrator_registers_in_their_province(
    client: FlaskClient, session: Session, org: Seed, hanoi: ProvinceSeed
) -> None:
    login(client, "admin.hn")
    link = f"/users/{hanoi.officer.id}/certificate"
    response = client.post(link, data={"serial": "0F 0E", "csrf_token": csrf_token(client, link)})
    assert response.status_code == 302
    assert active(session, hanoi.officer.id) == ["F0E"]
    certificate = register_certificate(session, org.admin, org.officer, "AA")
    session.commit()
    path = f"/users/{org.officer.id}/certificates/{certificate.id}/deactivate"
    token = csrf_token(client, link)
    assert client.post(path, data={"reason": "token_lost", "csrf_token": token}).status_code == 404
    assert active(session, org.officer.id) == ["AA"]


def test_english_certificate_page(client: FlaskClient, org: Seed) -> None:
    login(client, "admin")
    client.get("/lang/en")
    page = text(client.get(f"/users/{org.officer.id}/certificate"))
    assert "Register digital certificate" in page
    assert "Certificate serial number" in page
