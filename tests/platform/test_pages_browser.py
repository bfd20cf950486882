"""Issue 17 in Chromium: pages that help, and that everyone can use.

The real platform is served by werkzeug on an ephemeral port (SQLite and PostgreSQL) and Debian's
Chromium visits every page as each role and as a citizen. Each page passes axe-core with no
serious or critical violation; each role lands on its work page after login; the citizen pages
fit a 360-px phone; the login form keeps the typed username after a wrong password.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from support.accessibility import violations
from support.chromium import login, platform_app, serve
from support.platform_seed import PASSWORD, add_person, seed

playwright_api = pytest.importorskip("playwright.sync_api")
SCREENSHOTS = os.environ.get("KYSO_TEST_SCREENSHOTS", "")


@dataclass
class Site:
    url: str
    app: Flask
    person_id: int
    admin_id: int
    officer_id: int


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    # no signing agent runs on this PC
    app = platform_app(database_url, tmp_path, AGENT_PORT=_closed_port())
    with app.extensions["kyso.sessions"]() as session:
        org = seed(session)
        person = add_person(
            session,
            org,
            "Đoàn Văn Phản",
            identity_number="079090777777",
            phone="0907777777",
            first_dose=date(2022, 3, 1),
        )
        session.commit()
        ids = (person.id, org.admin.id, org.officer.id)
    with serve(app) as url:
        yield Site(url, app, *ids)


CITIZEN_PAGES = [
    "/login",
    "/feedback/",
    "/feedback/status",
    "/passports/lookup",
    "/passports/verify",
]


def _pages(site: Site) -> dict[str | None, list[str]]:
    return {
        None: [*CITIZEN_PAGES, "/downloads/kyso-agent.msi"],
        "kyduyet.bennghe": ["/signing/", "/signing/batches", "/users/me"],
        "nhanvien.bennghe": [
            "/records/import",
            "/stats/invalid",
            f"/stats/people/{site.person_id}",
            "/feedback/inbox",
            "/records/requests",
        ],
        "cucduphong": ["/passports/issuer"],
        "admin": [
            "/users/",
            "/users/new",
            f"/users/{site.admin_id}",
            f"/users/{site.officer_id}/certificate",
            "/users/audit",
            "/users/units",
        ],
    }


@pytest.mark.timeout(240)
def test_every_page_passes_axe(site: Site, browser: Any) -> None:
    found: list[str] = []
    for username, paths in _pages(site).items():
        for lang in ("vi", "en"):
            # bypass_csp: axe is injected as a script the platform's CSP would refuse
            page = browser.new_page(locale="vi-VN", bypass_csp=True)
            if username is not None:
                login(page, site.url, username)
            page.goto(f"{site.url}/lang/{lang}")
            for path in paths:
                page.goto(site.url + path)
                found += violations(page)
            page.close()
    assert not found, "\n".join(found)


@pytest.mark.timeout(120)
def test_each_role_lands_on_its_work_page(site: Site, browser: Any) -> None:
    # before issue 17 everyone but the officer landed on the user list
    landing = {
        "kyduyet.bennghe": "/signing/",
        "nhanvien.bennghe": "/stats/invalid",
        "cucduphong": "/passports/issuer",
        "admin": "/users/",
    }
    for username, path in landing.items():
        page = browser.new_page(locale="vi-VN")
        login(page, site.url, username)
        assert page.url == site.url + path, username
        page.goto(site.url + "/")  # the brand link goes to the same page
        assert page.url == site.url + path, username
        page.close()


@pytest.mark.timeout(120)
def test_login_keeps_the_username_after_a_wrong_password(site: Site, browser: Any) -> None:
    page = browser.new_page(locale="vi-VN")
    page.goto(f"{site.url}/login")
    page.get_by_label("Tên đăng nhập").fill("kyduyet.bennghe")
    page.get_by_label("Mật khẩu").fill("not-the-password")
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_load_state()
    playwright_api.expect(page.get_by_role("alert")).to_be_visible()
    assert page.get_by_label("Tên đăng nhập").input_value() == "kyduyet.bennghe"
    assert page.get_by_label("Mật khẩu").input_value() == ""
    # the cursor waits in the password field, so the officer only retypes that
    assert page.evaluate("document.activeElement.name") == "password"
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_load_state()
    assert page.url == f"{site.url}/signing/"


@pytest.mark.timeout(120)
def test_citizen_pages_fit_a_phone_and_have_an_icon(site: Site, browser: Any) -> None:
    icons: list[str] = []
    page = browser.new_page(locale="vi-VN", viewport={"width": 360, "height": 740})
    page.on(
        "response",
        lambda r: icons.append(f"{r.status} {r.url}") if "favicon" in r.url else None,
    )
    for path in CITIZEN_PAGES:
        page.goto(site.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{path} is {width} px wide on a 360-px phone"
    page.set_default_timeout(10_000)
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href is not None
    icon = page.request.get(site.url + href)
    assert icon.status == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert not [line for line in icons if not line.startswith("200 ")], icons


@pytest.mark.timeout(240)
def test_no_page_scrolls_sideways_on_a_phone(site: Site, browser: Any) -> None:
    # before: /stats/invalid was 412 px wide at 360 px (the filter's dropdown kept its width)
    too_wide: list[str] = []
    for username, paths in _pages(site).items():
        for lang in ("vi", "en"):
            page = browser.new_page(locale="vi-VN", viewport={"width": 360, "height": 740})
            if username is not None:
                login(page, site.url, username)
            page.goto(f"{site.url}/lang/{lang}")
            for path in paths:
                page.goto(site.url + path)
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > 360:
                    too_wide.append(f"{username} {lang} {path}: {width} px")
                if SCREENSHOTS and lang == "vi":  # to look at them: KYSO_TEST_SCREENSHOTS=dir
                    name = (username or "citizen") + path.replace("/", "_")
                    page.screenshot(path=f"{SCREENSHOTS}/phone-{name}.png", full_page=True)
            page.close()
    assert not too_wide, "wider than a 360-px phone:\n" + "\n".join(too_wide)


@pytest.mark.timeout(120)
def test_certificate_page_without_the_agent_names_its_own_button(site: Site, browser: Any) -> None:
    # before issue 17 it said to press "Ký số" (not on this page) and linked a missing file
    expect = playwright_api.expect
    page = browser.new_page(locale="vi-VN")
    login(page, site.url, "admin")
    page.goto(f"{site.url}/users/{site.officer_id}/certificate")
    page.get_by_role("button", name="Đọc chứng thư số từ USB token").click()
    error = page.locator("#read-certificate-error")
    expect(error).to_contain_text("Không kết nối được với phần mềm ký Kyso Agent")
    expect(error).to_contain_text("bấm “Đọc chứng thư số từ USB token” lại")
    expect(error).not_to_contain_text("Ký số")
    installer = error.get_by_role("link", name="Tải bộ cài Kyso Agent")
    expect(installer).to_have_attribute("href", "/downloads/kyso-agent.msi")
