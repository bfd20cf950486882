"""The import page for facility staff, through Flask's test client with CSRF protection on."""

from __future__ import annotations

import codecs
import io
import re

import openpyxl
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import Seed

from kyso.platform.models import AuditEvent, Dose, Person
from kyso.platform.records.reference_data import load_reference_data

PAGE = "/records/import"
HEADER = (
    "Họ và tên,Ngày sinh,Giới tính,Số CCCD/Định danh,Số điện thoại,Mũi số,Ngày tiêm,"
    "Mã vắc xin/Tên vắc xin,Số lô,Mã cơ sở tiêm"
)


def _csv(*lines: str) -> bytes:
    return codecs.BOM_UTF8 + "\r\n".join([HEADER, *lines, ""]).encode("utf-8")


GOOD = _csv(
    "Nguyễn Thị Lan,17/05/1990,Nữ,079190123456,0912345678,1,15/09/2021,Pfizer,FK5618,",
    "Nguyễn Thị Lan,17/05/1990,Nữ,079190123456,0912345678,2,10/10/2021,Pfizer,FK5619,",
)
BAD = _csv(
    "Nguyễn Thị Lan,17/05/1990,Nữ,079190123456,0912345678,1,15/09/2021,Pfizer,FK5618,",
    "Trần Văn Bình,31/02/1985,Nam,,,4,15/09/2021,Covaxin,,",
)


@pytest.fixture
def staff(client: FlaskClient, session: Session, org: Seed) -> FlaskClient:
    load_reference_data(session)
    session.commit()
    login(client, "nhanvien.bennghe")
    return client


def _upload(client: FlaskClient, data: bytes, name: str = "tiem.csv", **form: str) -> str:
    token = csrf_token(client, PAGE)
    response = client.post(
        PAGE,
        data={"csrf_token": token, "file": (io.BytesIO(data), name), **form},
        content_type="multipart/form-data",
    )
    return f"{response.status_code} {response.get_data(as_text=True)}"


def _count(session: Session, model: type[object]) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_page_offers_the_form_and_the_templates(staff: FlaskClient) -> None:
    page = staff.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html
    assert 'name="csrf_token"' in html
    assert "Trạm Y tế Phường Bến Nghé" in html
    assert "/records/import/template.xlsx" in html
    assert "/records/import/template.csv" in html
    assert "<script>" not in html
    assert " style=" not in html


def test_upload_imports_and_reports(staff: FlaskClient, session: Session) -> None:
    result = _upload(staff, GOOD)
    assert result.startswith("200 ")
    assert "Đã nhập 2 mũi tiêm: 1 người mới" in result
    assert _count(session, Person) == 1
    assert _count(session, Dose) == 2
    assert session.scalar(select(AuditEvent.ip).where(AuditEvent.action == "records.import"))


def test_a_file_with_problems_shows_every_problem_and_writes_nothing(
    staff: FlaskClient, session: Session
) -> None:
    result = _upload(staff, BAD)
    assert result.startswith("422 ")
    assert "Không nhập dòng nào: tệp có 4 lỗi" in result
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", result)
    assert rows == [
        ("3", "Ngày sinh", "31/02/1985"),
        ("3", "Mũi số", "4"),
        ("3", "Mã vắc xin/Tên vắc xin", "Covaxin"),
        ("3", "Số lô", ""),
    ]
    assert "Hãy ghi dạng ngày/tháng/năm" in result
    assert _count(session, Person) == 0
    assert _count(session, AuditEvent) >= 1  # the rejected import is audited


def test_the_report_in_english(staff: FlaskClient) -> None:
    staff.get("/lang/en")
    result = _upload(staff, BAD)
    assert "Nothing was imported: the file has 4 problems" in result
    assert "This date cannot be read" in result


def test_dry_run(staff: FlaskClient, session: Session) -> None:
    result = _upload(staff, GOOD, dry_run="1")
    assert result.startswith("200 ")
    assert "Tệp hợp lệ (chưa nhập)" in result
    assert _count(session, Person) == 0


def test_an_upload_without_csrf_token_is_refused(staff: FlaskClient, session: Session) -> None:
    response = staff.post(
        PAGE, data={"file": (io.BytesIO(GOOD), "tiem.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert _count(session, Person) == 0


def test_an_upload_without_a_file(staff: FlaskClient) -> None:
    token = csrf_token(staff, PAGE)
    response = staff.post(PAGE, data={"csrf_token": token}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Chưa chọn tệp" in response.get_data(as_text=True)


def test_template_downloads(staff: FlaskClient) -> None:
    xlsx = staff.get("/records/import/template.xlsx")
    assert xlsx.status_code == 200
    assert xlsx.mimetype.endswith("spreadsheetml.sheet")
    assert "attachment" in xlsx.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.data)).worksheets[0]
    assert [c.value for c in sheet[1]][:3] == ["Họ và tên", "Ngày sinh", "Giới tính"]
    csv = staff.get("/records/import/template.csv")
    assert csv.status_code == 200
    assert csv.data.startswith(codecs.BOM_UTF8)
    assert csv.data.decode("utf-8-sig").startswith("Họ và tên,Ngày sinh,")
    staff.get("/lang/en")
    english = staff.get("/records/import/template.csv")
    assert english.data.decode("utf-8-sig").startswith("Full name,Date of birth,")
    assert staff.get("/records/import/template.pdf").status_code == 404


def test_administrators_choose_the_facility(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    load_reference_data(session)
    session.commit()
    login(client, "admin")
    page = client.get(PAGE).get_data(as_text=True)
    assert '<select name="facility_id"' in page
    assert "79760-BT" in page
    result = _upload(client, GOOD, facility_id=str(org.station_ben_thanh.id))
    assert result.startswith("200 "), result[:2000]
    dose = session.scalar(select(Dose))
    assert dose is not None
    assert dose.created_by_facility_id == org.station_ben_thanh.id
    assert dose.facility_id == org.station_ben_thanh.id
    assert _upload(client, GOOD, facility_id="999999").startswith("400 ")


def test_staff_cannot_pick_another_facility(
    staff: FlaskClient, session: Session, org: Seed
) -> None:
    result = _upload(staff, GOOD, facility_id=str(org.station_ben_thanh.id))
    assert result.startswith("400 ")
    assert _count(session, Person) == 0


def test_who_may_open_the_page(client: FlaskClient, org: Seed) -> None:
    assert client.get(PAGE).status_code == 302  # to the login page
    login(client, "kyduyet.bennghe")
    assert client.get(PAGE).status_code == 403
    assert client.get("/records/import/template.xlsx").status_code == 403
