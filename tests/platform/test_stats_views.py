"""The statistics pages with Flask's test client: access, counts, the list, the export, the
correction form and re-verification."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.feedback_data import citizen, invalid_people, registry
from support.platform_client import csrf_token, login
from support.platform_seed import Seed

from kyso.platform.formatting import vietnam_time
from kyso.platform.models import AuditEvent, Person, RecordVersion, VerificationStatus


def test_only_staff_and_administrators(client: FlaskClient, org: Seed) -> None:
    assert client.get("/stats/invalid").status_code == 302  # to the login page
    login(client, org.officer.username)
    assert client.get("/stats/invalid").status_code == 403
    assert client.get("/stats/invalid/export.xlsx").status_code == 403


def test_counts_list_and_pages(
    client: FlaskClient, org: Seed, session: Session, app: Flask
) -> None:
    people = invalid_people(session, org)
    session.commit()
    app.config["PAGE_SIZE"] = 2
    login(client, org.staff.username)
    page = client.get("/stats/invalid").get_data(as_text=True)
    assert "Thống kê xác minh đối tượng" in page
    counts = dict(re.findall(r'id="count-(\w+)".*?class="count">(\d+)<', page, re.S))
    assert counts == {"no_identity": "2", "wrong_format": "1", "mismatch": "1"}
    assert "Tổng số: 4 người" in page
    assert page.count('<tr id="person-') == 2
    after = re.search(r'id="next-page" href="([^"]+)"', page)
    assert after is not None
    second = client.get(after.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert page.count('<tr id="person-') == 2
    assert f'id="person-{people["mismatch"].id}"' in second
    assert 'id="next-page"' not in second
    only = client.get("/stats/invalid?group=wrong_format").get_data(as_text=True)
    assert "Phạm Thị Sai" in only
    assert "Hoàng Văn Lệch" not in only
    assert "mã tỉnh" in only or "099" in only  # what is wrong with the number
    bad = client.get("/stats/invalid?group=nope").get_data(as_text=True)
    assert "Nhóm đã chọn không có trong danh sách" in bad


def test_export_downloads_a_workbook(client: FlaskClient, org: Seed, session: Session) -> None:
    invalid_people(session, org)
    session.commit()
    login(client, org.staff.username)
    before = vietnam_time(datetime.now(UTC))
    response = client.get("/stats/invalid/export.xlsx?group=mismatch")
    after = vietnam_time(datetime.now(UTC))
    assert response.status_code == 200
    assert response.mimetype.endswith("spreadsheetml.sheet")
    assert "attachment" in response.headers["Content-Disposition"]
    # the file is named with the time on a clock in Vietnam (it was UTC, 7 hours behind)
    named = re.search(r"-(\d{8}-\d{4})\.xlsx", response.headers["Content-Disposition"])
    assert named is not None
    assert named.group(1) in {f"{t:%Y%m%d-%H%M}" for t in (before, after)}
    body = response.get_data()
    assert int(response.headers["Content-Length"]) == len(body)
    rows = list(
        load_workbook(io.BytesIO(body), read_only=True).worksheets[0].iter_rows(values_only=True)
    )
    assert rows[0][2] == "Họ và tên"
    assert [r[2] for r in rows[1:]] == ["Hoàng Văn Lệch", "Hoàng Văn Lệch"]
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "stats.export_invalid")
    ).one()
    assert event.user_id == org.staff.id
    assert event.detail == {"rows": 2, "group": "mismatch"}


def _form(client: FlaskClient, path: str, person: Person) -> dict[str, str]:
    return {
        "csrf_token": csrf_token(client, path),
        "version": str(person.version),
        "full_name": person.full_name,
        "birth_date": person.birth_date.isoformat(),
        "gender": person.gender.value,
        "identity_number": person.identity_number or "",
        "phone": person.phone or "",
        "address": "",
        "area_id": str(person.area_id or ""),
    }


def test_correct_and_reverify(
    client: FlaskClient, org: Seed, session: Session, app: Flask, tmp_path: Path
) -> None:
    people = invalid_people(session, org)
    session.commit()
    person = people["none"]
    path = f"/stats/people/{person.id}"
    login(client, org.staff.username)
    page = client.get(path).get_data(as_text=True)
    assert "Chưa có số định danh" in page
    assert "Lịch sử sửa hồ sơ" in page

    # Without a reason nothing is saved, and the page says why.
    data = _form(client, path, person) | {"identity_number": "079090123457", "reason": ""}
    answer = client.post(f"{path}/person", data=data, follow_redirects=True)
    assert "Hãy ghi lý do sửa hồ sơ" in answer.get_data(as_text=True)

    # The registry knows her: the correction is verified at once.
    session.refresh(person)
    known = citizen(person, identity_number="079090123457")
    with registry(tmp_path, [known]) as server:
        app.config["REGISTRY_URL"] = server.url
        data = _form(client, path, person) | {
            "identity_number": "079090123457",
            "reason": "Bổ sung số CCCD",
        }
        answer = client.post(f"{path}/person", data=data, follow_redirects=True)
    text = answer.get_data(as_text=True)
    assert "phiên bản 2" in text
    assert "thông tin khớp, hồ sơ đã được xác minh" in text
    session.expire_all()
    person = session.get(Person, person.id)
    assert person is not None
    assert person.verification_status is VerificationStatus.VERIFIED
    assert person.identity_number == "079090123457"
    assert session.scalars(select(RecordVersion)).one().reason == "Bổ sung số CCCD"
    assert "Bổ sung số CCCD" in client.get(path).get_data(as_text=True)


def test_registry_down_leaves_the_person_pending(
    client: FlaskClient, org: Seed, session: Session, app: Flask
) -> None:
    people = invalid_people(session, org)
    session.commit()
    person = people["mismatch"]
    path = f"/stats/people/{person.id}"
    login(client, org.staff.username)
    app.config["REGISTRY_URL"] = "http://127.0.0.1:9"
    answer = client.post(
        f"{path}/verify", data={"csrf_token": csrf_token(client, path)}, follow_redirects=True
    )
    assert "Không kết nối được CSDL quốc gia về dân cư" in answer.get_data(as_text=True)
    session.expire_all()
    assert session.get(Person, person.id).verification_status is VerificationStatus.PENDING  # type: ignore[union-attr]


def test_dose_form(client: FlaskClient, org: Seed, session: Session) -> None:
    people = invalid_people(session, org)
    session.commit()
    person = people["mismatch"]
    dose = person.doses[0]
    path = f"/stats/people/{person.id}"
    login(client, org.staff.username)
    data = {
        "csrf_token": csrf_token(client, path),
        "version": str(dose.version),
        "dose_number": "1",
        "vaccinated_on": dose.vaccinated_on.isoformat(),
        "product_id": str(org.astrazeneca.id),
        "lot": "AZ1234",
        "facility_id": str(dose.facility_id),
        "reason": "Sai loại vắc xin",
    }
    answer = client.post(f"/stats/doses/{dose.id}", data=data, follow_redirects=True)
    assert "Đã lưu mũi 1 (phiên bản 2)" in answer.get_data(as_text=True)
    # The same form again is stale now.
    answer = client.post(f"/stats/doses/{dose.id}", data=data, follow_redirects=True)
    assert answer.status_code == 200
    assert "Hồ sơ vừa được người khác sửa" in answer.get_data(as_text=True)


def test_other_facilities_cannot_open_a_record(
    client: FlaskClient, org: Seed, session: Session
) -> None:
    from support.platform_seed import add_province

    people = invalid_people(session, org)
    other = add_province(session)
    session.commit()
    login(client, other.staff.username)
    assert client.get(f"/stats/people/{people['none'].id}").status_code == 403
    assert client.get("/stats/people/999999").status_code == 404


def test_a_refused_correction_keeps_what_was_typed(
    client: FlaskClient, org: Seed, session: Session
) -> None:
    """The reason is missing: the page says so and shows the edited fields as they were typed,
    not the saved record (nothing the officer typed is lost)."""
    people = invalid_people(session, org)
    session.commit()
    person = people["mismatch"]
    path = f"/stats/people/{person.id}"
    login(client, org.staff.username)
    answer = client.post(
        f"{path}/person",
        data={
            "csrf_token": csrf_token(client, path),
            "version": str(person.version),
            "full_name": "Nguyễn Văn Đã Sửa",
            "birth_date": person.birth_date.isoformat(),
            "gender": person.gender.value,
            "identity_number": "079090999999",
            "phone": "",
            "address": "",
            "reason": "",
        },
    )
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert 'value="Nguyễn Văn Đã Sửa"' in text
    assert 'value="079090999999"' in text
    session.expire_all()
    assert session.get(Person, person.id).full_name == person.full_name  # type: ignore[union-attr]


def test_the_correction_page_has_one_area_field_and_the_export_names_it(
    client: FlaskClient, org: Seed, session: Session
) -> None:
    # Issue 17: the page had both "Mã xã" (a list of names) and "Mã địa bàn"; the export's
    # "Mã xã" column held names.
    people = invalid_people(session, org)
    session.commit()
    person = people["none"]
    login(client, org.staff.username)
    page = client.get(f"/stats/people/{person.id}").get_data(as_text=True)
    assert page.count('name="area_id"') + page.count('name="area_code"') == 1
    assert "Mã địa bàn" not in page
    assert f"{org.ben_nghe.code} — {org.ben_nghe.name}" in page
    body = client.get("/stats/invalid/export.xlsx").get_data()
    header = next(load_workbook(io.BytesIO(body), read_only=True).worksheets[0].iter_rows())
    names = [cell.value for cell in header]
    assert "Mã xã" not in names
    assert "Xã/phường nơi ở" in names
