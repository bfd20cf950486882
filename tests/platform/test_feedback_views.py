"""Feedback pages with Flask's test client: the public form (CSRF, token, errors, limits),
the status page, the inbox and answers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import Seed, add_person

from kyso.platform.feedback.service import issue_form_token
from kyso.platform.models import Feedback, FeedbackStatus


def _fields(client: FlaskClient, app: Flask, **changes: str) -> dict[str, str]:
    page = client.get("/feedback/").get_data(as_text=True)
    token = re.search(r'name="form_token" value="([^"]+)"', page)
    assert token is not None
    # As if the citizen took a minute to fill the form in.
    old = issue_form_token(
        str(app.config["SECRET_KEY"]).encode(), datetime.now(UTC) - timedelta(minutes=1)
    )
    data = {
        "csrf_token": csrf_token(client, "/feedback/"),
        "form_token": old,
        "website": "",
        "full_name": "Nguyễn Văn Phản",
        "birth_date": "17/05/1990",
        "phone": "0901234567",
        "identity_number": "079090123456",
        "field": "dose_lot",
        "dose_number": "1",
        "correct_value": "FK1111",
        "message": "Số lô mũi 1 bị ghi sai.",
    }
    data.update(changes)
    return data


def test_public_form_needs_no_login(client: FlaskClient, org: Seed) -> None:
    page = client.get("/feedback/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Phản ánh thông tin tiêm chủng" in text
    assert 'name="form_token"' in text
    assert 'name="website"' in text


def test_submit_and_follow(client: FlaskClient, org: Seed, session: Session, app: Flask) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    answer = client.post("/feedback/", data=_fields(client, app))
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    code = re.search(r'id="tracking-code">(PA\w+)<', text)
    assert code is not None
    assert "Trạm Y tế Phường Bến Nghé" not in text  # the answer names no facility

    status = client.post(
        "/feedback/status",
        data={
            "csrf_token": csrf_token(client, "/feedback/status"),
            "code": code.group(1),
            "phone": "0901234567",
        },
    )
    assert "Mới" in status.get_data(as_text=True)
    wrong = client.post(
        "/feedback/status",
        data={
            "csrf_token": csrf_token(client, "/feedback/status"),
            "code": code.group(1),
            "phone": "0900000000",
        },
    )
    assert wrong.status_code == 404
    assert "Không tìm thấy phản ánh" in wrong.get_data(as_text=True)


def test_csrf_is_required(client: FlaskClient, org: Seed, app: Flask) -> None:
    data = _fields(client, app)
    del data["csrf_token"]
    assert client.post("/feedback/", data=data).status_code == 400


def test_errors_are_shown_per_field(client: FlaskClient, org: Seed, app: Flask) -> None:
    answer = client.post("/feedback/", data=_fields(client, app, phone="12", message="x"))
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert "Hãy nhập số điện thoại" in text
    assert "Hãy mô tả thông tin bị sai" in text
    assert 'value="Nguyễn Văn Phản"' in text  # what was typed is kept


def test_too_fast_and_rate_limited(
    client: FlaskClient, org: Seed, session: Session, app: Flask
) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    page = client.get("/feedback/").get_data(as_text=True)
    fresh = re.search(r'name="form_token" value="([^"]+)"', page)
    assert fresh is not None
    answer = client.post("/feedback/", data=_fields(client, app, form_token=fresh.group(1)))
    assert answer.status_code == 422
    assert "gửi quá nhanh" in answer.get_data(as_text=True)
    app.config["FEEDBACK_PER_SUBJECT_DAY"] = 1
    assert client.post("/feedback/", data=_fields(client, app)).status_code == 200
    limited = client.post("/feedback/", data=_fields(client, app))
    assert limited.status_code == 429
    assert "trong 24 giờ qua" in limited.get_data(as_text=True)


def test_inbox_answer_and_citizen_sees_it(
    client: FlaskClient, org: Seed, session: Session, app: Flask
) -> None:
    person = add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    client.post("/feedback/", data=_fields(client, app))
    feedback = session.scalars(select(Feedback)).one()
    # Overdue: the due date has passed.
    session.execute(update(Feedback).values(due_at=datetime.now(UTC) - timedelta(days=1)))
    session.commit()

    staff = app.test_client()
    login(staff, org.officer.username)
    assert staff.get("/feedback/inbox").status_code == 403
    staff = app.test_client()
    login(staff, org.staff.username)
    inbox = staff.get("/feedback/inbox").get_data(as_text=True)
    assert feedback.tracking_code in inbox
    assert "overdue" in inbox
    assert "Quá hạn" in inbox
    assert "1 phản ánh quá hạn" in inbox
    detail_path = f"/feedback/inbox/{feedback.id}"
    detail = staff.get(detail_path).get_data(as_text=True)
    assert f"/stats/people/{person.id}?feedback={feedback.id}" in detail
    answer = staff.post(
        f"{detail_path}/answer",
        data={
            "csrf_token": csrf_token(staff, detail_path),
            "body": "Đã sửa số lô mũi 1.",
            "status": "resolved",
        },
        follow_redirects=True,
    )
    assert "Đã gửi trả lời; trạng thái: Đã giải quyết." in answer.get_data(as_text=True)
    session.expire_all()
    assert session.get(Feedback, feedback.id).status is FeedbackStatus.RESOLVED  # type: ignore[union-attr]

    status = client.post(
        "/feedback/status",
        data={
            "csrf_token": csrf_token(client, "/feedback/status"),
            "code": feedback.tracking_code,
            "phone": "0901234567",
        },
    ).get_data(as_text=True)
    assert "Đã sửa số lô mũi 1." in status
    assert "Đã giải quyết" in status


def test_a_refused_reply_keeps_its_text(
    client: FlaskClient, org: Seed, session: Session, app: Flask
) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    client.post("/feedback/", data=_fields(client, app))
    feedback = session.scalars(select(Feedback)).one()
    staff = app.test_client()
    login(staff, org.staff.username)
    detail_path = f"/feedback/inbox/{feedback.id}"
    refused = staff.post(
        f"{detail_path}/answer",
        data={
            "csrf_token": csrf_token(staff, detail_path),
            "body": "Chúng tôi đã kiểm tra sổ tiêm của anh.",
            "status": "new",  # not a status a reply may give
        },
    )
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert "Chúng tôi đã kiểm tra sổ tiêm của anh.</textarea>" in text
    session.expire_all()
    assert session.get(Feedback, feedback.id).status is FeedbackStatus.NEW  # type: ignore[union-attr]
