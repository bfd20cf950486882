"""Issue 7 in Chromium: the invalid-people export, and feedback → inbox → correction → re-sign.

The real platform is served by werkzeug on an ephemeral port (SQLite and PostgreSQL), the
reference population registry on another; Debian's Chromium drives the pages. (a) A facility
user clicks "Xuất danh sách": the downloaded workbook is opened with openpyxl and checked.
(b) A citizen reports a wrong lot number without logging in and gets a tracking code; the
facility opens it in its inbox, corrects the dose from there and answers; the citizen reads
the answer; the signing officer finds the dose on the signing page again as "cần ký lại".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openpyxl import load_workbook
from sqlalchemy import select
from support.chromium import login, platform_app, serve, watch
from support.feedback_data import citizen, invalid_people, registry
from support.platform_seed import add_person, seed
from support.signing_data import sign

from kyso.platform.models import DoseSignature, Person

playwright_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Site:
    url: str
    app: Flask
    person_id: int  # the citizen who reports
    dose_id: int  # their dose 1, signed before the correction


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    app = platform_app(database_url, tmp_path, FEEDBACK_MIN_SECONDS=1)
    with app.extensions["kyso.sessions"]() as session:
        org = seed(session)
        invalid_people(session, org)
        person = add_person(
            session,
            org,
            "Đoàn Văn Phản",
            identity_number="079090777777",
            phone="0907777777",
            first_dose=date(2022, 3, 1),
        )
        for dose in person.doses:
            sign(session, dose)
        session.commit()
        known = [citizen(person)]
        ids = (person.id, person.doses[0].id)
    with registry(tmp_path, known) as population:
        app.config["REGISTRY_URL"] = population.url
        with serve(app) as url:
            yield Site(url, app, *ids)


@pytest.mark.timeout(120)
def test_export_in_chromium(site: Site, browser: Any, tmp_path: Path) -> None:
    problems: list[str] = []
    expect = playwright_api.expect
    expect.set_options(timeout=10_000)
    page = browser.new_page(locale="vi-VN", accept_downloads=True)
    watch(page, problems)
    login(page, site.url, "nhanvien.bennghe")
    page.get_by_role("link", name="Thống kê xác minh").click()
    expect(page.get_by_role("heading", name="Thống kê xác minh đối tượng")).to_be_visible()
    expect(page.locator("#count-no_identity .count")).to_have_text("2")
    expect(page.locator("#count-wrong_format .count")).to_have_text("1")
    expect(page.locator("#count-mismatch .count")).to_have_text("1")
    expect(page.locator("#stats-total")).to_have_text("Tổng số: 4 người")
    page.screenshot(path=str(tmp_path / "stats.png"))
    with page.expect_download() as info:
        page.get_by_role("link", name="Xuất danh sách").click()
    download = info.value
    assert download.suggested_filename.startswith("danh-sach-doi-tuong-khong-hop-le-")
    assert download.suggested_filename.endswith(".xlsx")
    target = tmp_path / download.suggested_filename
    download.save_as(target)

    rows = list(load_workbook(target, read_only=True).worksheets[0].iter_rows(values_only=True))
    header = rows[0]
    assert header[:4] == ("STT", "Mã hồ sơ", "Họ và tên", "Ngày sinh")
    assert {"Nhóm", "Lý do", "Thông tin sai lệch / cần sửa", "Số lô", "Cơ sở tiêm"} <= set(header)
    column = {name: header.index(name) for name in header}
    data = rows[1:]
    assert len(data) == 8  # four invalid people, two doses each; the signed person is valid
    reasons = {r[column["Họ và tên"]]: r for r in data}
    assert reasons["Trần Thị Không"][column["Lý do"]] == "Chưa có số định danh"
    assert reasons["Lê Văn Cũ"][column["Nhóm"]] == "Không có CCCD/mã định danh"
    assert reasons["Phạm Thị Sai"][column["Nhóm"]] == "CCCD/mã định danh sai định dạng"
    lech = reasons["Hoàng Văn Lệch"]
    assert lech[column["Nhóm"]] == "Sai lệch thông tin với CSDL quốc gia về dân cư"
    assert "ngày sinh" in lech[column["Thông tin sai lệch / cần sửa"]]
    assert {r[column["Số lô"]] for r in data} == {"FK1001", "FK1002"}
    assert problems == [], problems


@pytest.mark.timeout(180)
def test_feedback_correction_and_resign_in_chromium(
    site: Site, browser: Any, tmp_path: Path
) -> None:
    problems: list[str] = []
    expect = playwright_api.expect
    expect.set_options(timeout=10_000)

    # A citizen, no login.
    citizen_page = browser.new_context(locale="vi-VN").new_page()
    watch(citizen_page, problems)
    citizen_page.goto(f"{site.url}/")
    citizen_page.get_by_role("link", name="Phản ánh thông tin tiêm chủng").click()
    expect(
        citizen_page.get_by_role("heading", name="Phản ánh thông tin tiêm chủng")
    ).to_be_visible()
    citizen_page.get_by_label("Họ và tên", exact=True).fill("Đoàn Văn Phản")
    citizen_page.get_by_label("Ngày sinh (ngày/tháng/năm)", exact=True).fill("17/05/1990")
    citizen_page.get_by_label("Số điện thoại", exact=True).fill("0907 777 777")
    citizen_page.get_by_label("Số CCCD/mã định danh (nếu có)", exact=True).fill("079090777777")
    citizen_page.get_by_role("combobox", name="Thông tin bị sai").select_option("dose_lot")
    citizen_page.get_by_role(
        "combobox", name="Mũi tiêm (nếu sai thông tin mũi tiêm)"
    ).select_option("1")
    citizen_page.get_by_label("Thông tin đúng (nếu biết)", exact=True).fill("FK9999")
    citizen_page.get_by_label("Mô tả (tối thiểu 10 ký tự)", exact=True).fill(
        "Số lô mũi 1 trên chứng nhận là FK1001, đúng phải là FK9999."
    )
    citizen_page.wait_for_timeout(1200)  # a person takes longer than the form's minimum
    citizen_page.get_by_role("button", name="Gửi phản ánh").click()
    expect(citizen_page.get_by_role("heading", name="Đã gửi phản ánh")).to_be_visible()
    expect(citizen_page.locator("body")).to_contain_text("Đã nhận phản ánh của bạn")
    # The answer names no facility: it would tell a stranger where a person was vaccinated.
    expect(citizen_page.locator("body")).not_to_contain_text("Trạm Y tế Phường Bến Nghé")
    code = citizen_page.locator("#tracking-code").inner_text()
    assert code.startswith("PA")

    # The facility: inbox → feedback → correct the dose → answer.
    staff = browser.new_context(locale="vi-VN").new_page()
    watch(staff, problems)
    login(staff, site.url, "nhanvien.bennghe")
    staff.get_by_role("link", name="Phản ánh của người dân").click()
    row = staff.locator("#feedback-inbox tr", has_text=code)
    expect(row).to_contain_text("Số lô vắc xin của một mũi — Mũi 1")
    expect(row).to_contain_text("Mới")
    row.get_by_role("link", name="Xem").click()
    expect(staff.get_by_role("heading", name=f"Phản ánh {code}")).to_be_visible()
    staff.get_by_role("link", name="Sửa hồ sơ theo phản ánh này").click()
    expect(staff.locator("#feedback-context")).to_contain_text("FK9999")
    dose = staff.locator(f"#dose-{site.dose_id}")
    dose.get_by_label("Số lô").fill("FK9999")
    dose.get_by_label("Lý do sửa (bắt buộc)").fill("Theo phản ánh của người tiêm")
    dose.get_by_role("button", name="Lưu mũi 1").click()
    expect(staff.locator(".flash.success")).to_contain_text("Đã lưu mũi 1 (phiên bản 2)")
    expect(staff.locator("#history")).to_contain_text("Theo phản ánh của người tiêm")
    expect(staff.locator("#history")).to_contain_text(f"Theo phản ánh {code}")
    # The registry answers: re-verification is immediate.
    staff.get_by_role("button", name="Kiểm tra lại với CSDL dân cư").click()
    expect(staff.locator(".flash.success")).to_contain_text("hồ sơ đã được xác minh")
    staff.screenshot(path=str(tmp_path / "correction.png"))
    staff.get_by_role("link", name=f"Phản ánh {code}").click()
    expect(staff.locator("#feedback-state")).to_have_text("Đang xử lý")  # moved on by the fix
    staff.get_by_label("Nội dung trả lời (người dân sẽ đọc được)").fill(
        "Đã sửa số lô mũi 1 thành FK9999; chứng nhận sẽ được ký lại."
    )
    staff.get_by_role("combobox", name="Trạng thái sau khi trả lời").select_option("resolved")
    staff.get_by_role("button", name="Gửi trả lời").click()
    expect(staff.locator(".flash.success")).to_contain_text("Đã giải quyết")

    # The citizen reads the answer.
    citizen_page.get_by_role("link", name="Xem trả lời phản ánh").click()
    citizen_page.get_by_label("Số điện thoại", exact=True).fill("0907777777")
    citizen_page.get_by_role("button", name="Tra cứu").click()
    expect(citizen_page.locator("#feedback-state")).to_have_text("Đã giải quyết")
    expect(citizen_page.locator("#feedback-status")).to_contain_text("thành FK9999")

    # The officer: the dose is back on the signing page, to be signed again.
    officer = browser.new_context(locale="vi-VN").new_page()
    watch(officer, problems)
    login(officer, site.url, "kyduyet.bennghe")
    officer.get_by_label("Họ và tên").fill("doan van phan")
    officer.get_by_role("button", name="Tìm kiếm", exact=True).click()
    person = officer.locator(f"#person-{site.person_id}")
    expect(person).to_contain_text("Đoàn Văn Phản")
    first = person.locator("tr", has_text="FK9999")
    expect(first).to_contain_text("Đã sửa sau khi ký — cần ký lại")
    expect(first.locator("input.dose-box")).to_be_enabled()
    second = person.locator("tr", has_text="FK1002")
    expect(second.locator("input.dose-box")).to_be_disabled()  # still signed
    officer.screenshot(path=str(tmp_path / "resign.png"))

    with site.app.extensions["kyso.sessions"]() as session:
        signatures = session.scalars(
            select(DoseSignature).where(DoseSignature.dose_id == site.dose_id)
        ).all()
        assert len(signatures) == 1
        assert signatures[0].superseded_at is not None
        person_row = session.get(Person, site.person_id)
        assert person_row is not None
        assert person_row.doses[0].version == 2
    assert problems == [], problems
