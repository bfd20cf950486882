"""The signing page in Chromium: log in, search, tick (one box, then all), the limits, preview,
and sign the 1,000 people / 3,000 doses through the real agent and a SoftHSM token.

The real platform is served by werkzeug on an ephemeral port in a thread, over a SQLite and a
PostgreSQL database filled with bulk inserts: 1,000 verified people with 3 doses each (exactly
one batch), one more verified person (one over both limits), and one person the registry
disagrees with. Screenshots of the search page and the preview are written to the test's tmp
dir (and copied to $KYSO_SCREENSHOTS when set, for a person to look at).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from support.agent_harness import start_agent
from support.chromium import needs_chromium, serve
from support.platform_db import Databases
from support.platform_keys import ManifestIssuer
from support.platform_seed import PASSWORD, Seed, add_person, seed
from support.signing_data import bulk_people

from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken
from kyso.platform.app import create_app
from kyso.platform.models import VerificationStatus
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.testpki import TestPki
from kyso.platform.users.service import register_certificate

playwright_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Site:
    url: str
    app: Flask
    unverified_id: int
    extra_id: int
    issuer: ManifestIssuer  # the platform's manifest key, as the agent pins it


@pytest.fixture(params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest,
    platform_databases: Databases,
    tmp_path: Path,
    softhsm: ProvisionedToken,
    test_pki: TestPki,
) -> Iterator[Site]:
    needs_chromium()
    if request.param == "sqlite":
        url = platform_databases.sqlite(tmp_path)
    else:
        url = platform_databases.postgresql()
    manifest_key = ec.generate_private_key(ec.SECP256R1())
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "browser-test",
            "SESSION_COOKIE_SECURE": False,
            "TRUST_ANCHORS": str(test_pki.write_anchors(tmp_path / "ca.pem")),
        }
    )
    app.instance_path = str(tmp_path / "instance")
    app.extensions["kyso.manifest_signer"] = ManifestSigner(manifest_key)
    serial = x509.load_der_x509_certificate(softhsm.certificates["rsa"].der).serial_number
    with app.extensions["kyso.sessions"]() as session:
        org: Seed = seed(session)
        register_certificate(session, org.admin, org.officer, f"{serial:X}")
        bulk_people(session, org, 1000, doses=3, first_dose=date(2022, 3, 1))
        extra = add_person(session, org, "Phạm Văn Thêm", doses=1, first_dose=date(2022, 6, 15))
        unverified = add_person(
            session,
            org,
            "Trần Thị Bích",
            doses=1,
            status=VerificationStatus.MISMATCH,
            first_dose=date(2022, 3, 2),
        )
        unverified.verification_detail = {"fields": ["birth_date"]}
        session.commit()
        ids = (unverified.id, extra.id)
    with serve(app) as url:
        yield Site(url, app, *ids, ManifestIssuer(url, manifest_key))


@pytest.mark.timeout(180)
def test_search_select_limits_preview_and_sign_in_chromium(
    site: Site, browser: Any, tmp_path: Path, token: Pkcs11Token
) -> None:
    started = time.monotonic()
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")

    def console(message: playwright_api.ConsoleMessage) -> None:
        where = str(message.location.get("url", ""))
        expected = where.endswith("/favicon.ico") or (  # no icon; the refused tick:
            "409" in message.text and where.endswith("/signing/selection")
        )
        if message.type in ("error", "warning") and not expected:
            problems.append(f"{message.text} ({where})")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    expect = playwright_api.expect
    expect.set_options(timeout=10_000)

    # Log in: an officer lands on the signing page.
    page.goto(f"{site.url}/login")
    page.get_by_label("Tên đăng nhập").fill("kyduyet.bennghe")
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    expect(page.get_by_role("heading", name="Ký duyệt chứng nhận tiêm")).to_be_visible()
    count = page.locator("#selection-count")
    expect(count).to_have_text("Đã chọn: 0 người, 0 mũi")

    # The person the registry disagrees with: shown, the reason and the fix, box disabled.
    page.get_by_label("Họ và tên").fill("tran thi")
    page.get_by_role("button", name="Tìm kiếm", exact=True).click()
    person = page.locator(f"#person-{site.unverified_id}")
    expect(person).to_contain_text("Trần Thị Bích")
    expect(person).to_contain_text("Sai lệch với CSDL quốc gia về dân cư")
    expect(person).to_contain_text("ngày sinh")
    expect(person).to_contain_text("Trạm Y tế Phường Bến Nghé cần sửa hồ sơ")
    expect(person.locator("input.dose-box")).to_be_disabled()
    expect(person.locator("input.person-box")).to_be_disabled()
    page.screenshot(path=str(tmp_path / "unverified.png"))

    # One tick is saved at once by the script, and the count follows without a reload.
    page.get_by_label("Họ và tên").fill("Phạm Văn")
    page.get_by_role("button", name="Tìm kiếm", exact=True).click()
    box = page.get_by_label("Chọn mũi 1 của Phạm Văn Thêm")
    box.check()
    expect(count).to_have_text("Đã chọn: 1 người, 1 mũi")
    expect(page.locator("#selection-message")).to_have_text("Đã chọn thêm 1 mũi.")
    box.uncheck()
    expect(count).to_have_text("Đã chọn: 0 người, 0 mũi")

    # Everything: one person and one dose over the limits, refused as a whole.
    page.goto(f"{site.url}/signing/")
    expect(page.locator("tbody.person")).to_have_count(50)
    expect(page.get_by_role("heading", name="Tìm thấy 1.000+ người.")).to_be_visible()
    page.screenshot(path=str(tmp_path / "search.png"))
    page.get_by_role("button", name="Chọn tất cả kết quả tìm kiếm").click()
    alert = page.locator(".flash.error")
    expect(alert).to_contain_text("Không thể chọn thêm 3.001+ mũi của 1.001+ người")
    expect(alert).to_contain_text("tối đa 1.000 người và 3.000 mũi")
    expect(count).to_have_text("Đã chọn: 0 người, 0 mũi")

    # Narrowed by date to exactly 1,000 people and 3,000 doses: it fits.
    page.locator("input[name=to]").fill("2022-04-30")
    page.get_by_role("button", name="Tìm kiếm", exact=True).click()
    page.get_by_role("button", name="Chọn tất cả kết quả tìm kiếm").click()
    expect(page.locator(".flash.success")).to_contain_text("Đã chọn thêm 3.000 mũi.")
    expect(page.locator(".flash.success")).to_contain_text("1 người chưa được xác minh")
    expect(count).to_have_text("Đã chọn: 1.000 người, 3.000 mũi")
    first_box = page.locator("input.dose-box:not([disabled])").first
    expect(first_box).to_be_checked()

    # At the limit, one more tick is refused by the server and the box goes back.
    page.goto(f"{site.url}/signing/?name=pham+van")
    extra_box = page.get_by_label("Chọn mũi 1 của Phạm Văn Thêm")
    extra_box.click()  # not check(): the refusal unticks it again at once
    message = page.locator("#selection-message")
    expect(message).to_contain_text("Không thể chọn thêm 1 mũi của 1 người")
    expect(message).to_contain_text("chỉ còn có thể chọn thêm 0 người và 0 mũi")
    expect(extra_box).not_to_be_checked()
    expect(count).to_have_text("Đã chọn: 1.000 người, 3.000 mũi")

    # The preview: exactly the batch, re-checked; Sign is enabled (it calls the agent).
    page.get_by_role("link", name="Xem danh sách").click()
    expect(page.get_by_role("heading", name="Xem danh sách trước khi ký")).to_be_visible()
    expect(page.locator("#preview-people")).to_have_text("1.000")
    expect(page.locator("#preview-doses")).to_have_text("3.000")
    expect(page.locator(".facts")).to_contain_text("từ 01/03/2022 đến 26/04/2022")
    expect(page.get_by_role("button", name="Ký số")).to_be_enabled()
    expect(page.locator("#sign-note")).to_contain_text("Kyso Agent")
    page.screenshot(path=str(tmp_path / "preview.png"))
    browsing = time.monotonic() - started

    # Sign: the real agent and the SoftHSM token; the scripted officer approves.
    agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    try:
        page.reload()  # the page's configuration names the agent's (test) port
        page.get_by_role("button", name="Ký số").click()
        page.wait_for_url("**/signing/batches/*", timeout=120_000)
        expect(page.locator("#batch-signed")).to_have_text("3.000")
        expect(page.locator("#batch-pending")).to_have_text("0")
        assert agent.ui.consents[-1].manifest.summary.people == 1000
    finally:
        agent.stop()
    page.close()

    keep = os.environ.get("KYSO_SCREENSHOTS")  # pytest rotates its tmp dirs away
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name in ("search.png", "unverified.png", "preview.png"):
            shutil.copy(tmp_path / name, Path(keep) / name)
    assert problems == [], problems  # no CSP violation, no script error
    assert browsing < 30
