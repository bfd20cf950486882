"""Issue 17 in Chromium: dates typed as dd/mm/yyyy whatever the browser's locale.

An English-locale Chromium showed the date pickers as mm/dd/yyyy while the rest of the site is
dd/mm/yyyy, and silently emptied 02/31/2021. The audit log's date fields are now text fields:
an administrator in an en-US browser types 02/01/2024 (2 January) and gets that day's events,
in Vietnam time; 31/02/2021 is refused with a message saying what to type.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.chromium import chromium, login, platform_app, serve
from support.platform_seed import seed

from kyso.platform.models import AuditEvent

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[str]:
    app = platform_app(database_url, tmp_path)
    with app.extensions["kyso.sessions"]() as session:
        seed(session)
        session.add_all(
            [
                AuditEvent(
                    at=datetime(2024, 1, 1, 10, 0, tzinfo=UTC),
                    action="user.create",
                    target="ngay-1",
                ),
                AuditEvent(
                    at=datetime(2024, 1, 2, 10, 0, tzinfo=UTC),
                    action="user.create",
                    target="ngay-2",
                ),
            ]
        )
        session.commit()
    with serve(app) as url:
        yield url


@pytest.mark.timeout(120)
def test_audit_dates_in_an_english_chromium(site: str, tmp_path: Path) -> None:
    expect = playwright_api.expect
    expect.set_options(timeout=10_000)
    with chromium("--lang=en-US") as browser:
        page = browser.new_page(locale="en-US")
        login(page, site, "admin")
        page.goto(f"{site}/users/audit")
        since, until = page.locator("input[name=since]"), page.locator("input[name=until]")
        expect(since).to_have_attribute("placeholder", "dd/mm/yyyy")
        since.fill("02/01/2024")  # 2 January, not February 1st
        until.fill("02/01/2024")
        page.get_by_role("button", name="Lọc").click()
        page.wait_for_load_state()
        expect(since).to_have_value("02/01/2024")
        expect(page.get_by_role("cell", name="02/01/2024 17:00:00")).to_be_visible()
        expect(page.get_by_role("cell", name="ngay-2")).to_be_visible()
        expect(page.get_by_role("cell", name="ngay-1")).to_have_count(0)
        page.screenshot(path=str(tmp_path / "audit-en.png"))

        since.fill("31/02/2021")
        until.fill("")
        page.get_by_role("button", name="Lọc").click()
        page.wait_for_load_state()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("“31/02/2021” không hợp lệ")
        expect(alert).to_contain_text("ngày/tháng/năm")
        expect(since).to_have_value("31/02/2021")  # kept as typed, never silently emptied
