"""Issue 17 in Chromium: dates typed as dd/mm/yyyy whatever the browser's locale.

An English-locale Chromium showed the date pickers as mm/dd/yyyy while the rest of the site is
dd/mm/yyyy, and silently emptied 02/31/2021. The audit log's date fields are now text fields:
an administrator in an en-US browser types 02/01/2024 (2 January) and gets that day's events,
in Vietnam time; 31/02/2021 is refused with a message saying what to type.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.chromium import CHROMIUM, CHROMIUM_ARGS
from support.platform_db import Databases
from support.platform_seed import PASSWORD, seed
from werkzeug.serving import BaseWSGIServer, make_server

from kyso.platform.app import create_app
from kyso.platform.models import AuditEvent

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, platform_databases: Databases, tmp_path: Path
) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    url = (
        platform_databases.sqlite(tmp_path)
        if request.param == "sqlite"
        else platform_databases.postgresql()
    )
    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": "browser-test", "SESSION_COOKIE_SECURE": False}
    )
    app.instance_path = str(tmp_path / "instance")
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
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        app.extensions["kyso.engine"].dispose()


@pytest.mark.timeout(120)
def test_audit_dates_in_an_english_chromium(site: str, tmp_path: Path) -> None:
    expect = playwright_api.expect
    expect.set_options(timeout=10_000)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--lang=en-US"])
        page = browser.new_page(locale="en-US")
        page.goto(f"{site}/login")
        page.get_by_label("Tên đăng nhập").fill("admin")
        page.get_by_label("Mật khẩu").fill(PASSWORD)
        page.get_by_role("button", name="Đăng nhập").click()
        page.wait_for_load_state()
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
        browser.close()
