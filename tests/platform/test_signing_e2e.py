"""The signing pages on the real platform with the real agent and a SoftHSM token, in Chromium.

Login → preview → Sign → the agent's consent (scripted officer) → chunks posted → result page;
the agent not running, the wrong token, an interrupted 3,000-dose batch finished with "sign the
rest", batch mode, the user page reading the serial from the token, and the platform-side
threats: a subverted page script cannot get other bytes signed or stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from support.agent_harness import ScriptedUI, start_agent
from support.chromium import needs_chromium, serve
from support.openssl_cms import verify_export
from support.platform_db import Databases
from support.platform_keys import ManifestIssuer
from support.platform_seed import PASSWORD, seed
from support.signing_data import bulk_people

from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken
from kyso.platform.app import create_app
from kyso.platform.formatting import certificate_facts, day
from kyso.platform.models import Dose, DoseSignature, SigningAttempt, SigningBatch, User
from kyso.platform.signing.certificates import load_trust_store
from kyso.platform.signing.export import export_signed
from kyso.platform.signing.selection import add_doses
from kyso.platform.testpki import TestPki
from kyso.platform.users.service import format_serial, register_certificate

playwright_api = pytest.importorskip("playwright.sync_api")

INSTALLER = "https://tiemchung.example.vn/tai/kyso-agent.msi"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Site:
    url: str
    app: Any
    officer: str
    officer_id: int
    admin: str
    serial: str
    doses: int
    issuer: ManifestIssuer
    anchors: Path


@pytest.fixture
def site(
    request: pytest.FixtureRequest,
    platform_databases: Databases,
    tmp_path: Path,
    softhsm: ProvisionedToken,
    test_pki: TestPki,
) -> Iterator[Site]:
    """The platform on SQLite, served on loopback: verified people (6 with 2 doses each unless
    the test says otherwise), all ticked by the officer whose registered certificate is one of
    the SoftHSM token's (P-256 unless the test says otherwise)."""
    people_count, doses_each, kind = getattr(request, "param", (6, 2, "p256"))
    needs_chromium()
    manifest_key = ec.generate_private_key(ec.SECP256R1())
    key_path = tmp_path / "manifest-key.pem"
    key_path.write_bytes(
        manifest_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    anchors = test_pki.write_anchors(tmp_path / "anchors.pem")
    app = create_app(
        {
            "DATABASE_URL": platform_databases.sqlite(tmp_path),
            "SECRET_KEY": "agent-client-test",
            "SESSION_COOKIE_SECURE": False,
            "TRUST_ANCHORS": str(anchors),
            "MANIFEST_KEY": str(key_path),
            "AGENT_INSTALLER_URL": INSTALLER,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    serial = format(
        x509.load_der_x509_certificate(softhsm.certificates[kind].der).serial_number, "X"
    )
    with app.extensions["kyso.sessions"]() as session:
        org = seed(session)
        register_certificate(session, org.admin, org.officer, serial)
        people = bulk_people(session, org, people_count, doses=doses_each)
        dose_ids = list(session.scalars(select(Dose.id).where(Dose.person_id.in_(people))))
        add_doses(session, org.officer, dose_ids)
        session.commit()
        officer, officer_id, admin = org.officer.username, org.officer.id, org.admin.username
    with serve(app) as url:
        issuer = ManifestIssuer(url, manifest_key)
        yield Site(url, app, officer, officer_id, admin, serial, len(dose_ids), issuer, anchors)


class PlatformPage:
    def __init__(self, browser: Any, site: Site, username: str | None = None) -> None:
        self.problems: list[str] = []
        self.context = browser.new_context(locale="vi-VN", viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on("console", self._console)
        self.page.goto(f"{site.url}/login")
        self.page.get_by_label("Tên đăng nhập").fill(username or site.officer)
        self.page.get_by_label("Mật khẩu").fill(PASSWORD)
        self.page.get_by_role("button", name="Đăng nhập").click()

    def _console(self, message: Any) -> None:
        where = str(message.location.get("url", ""))
        if message.type == "error" and not where.endswith("/favicon.ico"):
            self.problems.append(f"{message.text} ({where})")

    def close(self) -> None:
        self.context.close()


@pytest.mark.timeout(120)
def test_signing_page_signs_a_batch_with_the_real_agent(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    hold = threading.Event()
    ui = ScriptedUI(hold=hold)
    agent = start_agent(token, tmp_path / "agent", ui=ui, issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    officer = PlatformPage(browser, site)
    page = officer.page
    try:
        page.goto(f"{site.url}/signing/preview")
        button = page.get_by_role("button", name="Ký số")
        expect(button).to_be_enabled()  # the script found its configuration
        button.click()
        # While the agent's dialog is open, the page shows the same verification code.
        assert ui.dialog_open.wait(20)
        code = ui.consents[-1].manifest.code
        expect(page.locator("#sign-code")).to_be_visible()
        expect(page.locator("#sign-code-value")).to_have_text(code)
        expect(page.locator("#sign-status")).to_contain_text(code)
        expect(page.get_by_role("button", name="Hủy ký")).to_be_visible()
        page.screenshot(path=str(tmp_path / "consent.png"))
        hold.set()
        page.wait_for_url("**/signing/batches/*", timeout=30_000)
        expect(page.locator("#batch-signed")).to_have_text(str(site.doses))
        expect(page.locator("#batch-pending")).to_have_text("0")
        assert ui.consents[-1].origin == site.url
        assert ui.outcomes[-1].signed == site.doses
    finally:
        officer.close()
        agent.stop()
    assert officer.problems == [], officer.problems


@pytest.mark.timeout(120)
def test_signing_page_agent_not_running_then_wrong_token(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    site.app.config["AGENT_PORT"] = _free_port()
    officer = PlatformPage(browser, site)
    page = officer.page
    agent = None
    try:
        page.goto(f"{site.url}/signing/preview")
        page.get_by_role("button", name="Ký số").click()
        error = page.locator("#sign-error")
        expect(error).to_contain_text("Không kết nối được với phần mềm ký Kyso Agent")
        expect(error).to_contain_text("bấm “Bắt đầu”")
        installer = page.get_by_role("link", name="Tải bộ cài Kyso Agent")
        expect(installer).to_have_attribute("href", INSTALLER)
        expect(page.get_by_role("button", name="Ký số")).to_be_enabled()  # may try again

        # The agent runs, but the token does not hold the officer's registered certificate.
        agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
        site.app.config["AGENT_PORT"] = agent.port
        with site.app.extensions["kyso.sessions"]() as session:
            admin = session.scalars(select(User).where(User.username == site.admin)).one()
            user = session.scalars(select(User).where(User.username == site.officer)).one()
            register_certificate(session, admin, user, "ABCDEF12")
            session.commit()
        page.goto(f"{site.url}/signing/preview")
        page.get_by_role("button", name="Ký số").click()
        # serials in the one format of every page (issue 17), with what tells them apart
        expect(error).to_contain_text("(số sê-ri AB CD EF 12) không có trên USB token")
        expect(error).to_contain_text(f"{format_serial(site.serial)} (Trạm Y tế")  # the token's
        expect(error).to_contain_text("ECDSA P-256")
        expect(error).to_contain_text("RSA-2048")
        assert agent.ui.consents == []  # nothing was sent to sign
    finally:
        officer.close()
        if agent is not None:
            agent.stop()
    refused = "ERR_CONNECTION_REFUSED"
    assert [p for p in officer.problems if refused not in p] == [], officer.problems


@pytest.mark.timeout(120)
def test_signing_page_refuses_a_revoked_certificate_with_its_date(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path, test_pki: TestPki
) -> None:
    """The CA revoked the token's certificate: the page says so, naming the certificate and
    the revocation date, and nothing is sent to the token."""
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    serial = int(site.serial, 16)
    revoked_at = datetime(2026, 11, 30, 2, 30, tzinfo=UTC)
    test_pki.revoke(serial, revoked_at)
    agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    officer = PlatformPage(browser, site)
    page = officer.page
    try:
        page.goto(f"{site.url}/signing/preview")
        page.get_by_role("button", name="Ký số").click()
        error = page.locator("#sign-error")
        expect(error).to_contain_text("đã bị thu hồi từ 09:30 ngày 30/11/2026 (giờ Việt Nam)")
        expect(error).to_contain_text("“Trạm Y tế Phường Bến Nghé”")
        assert agent.ui.consents == []  # nothing was sent to sign
    finally:
        test_pki.reinstate(serial)  # the session's other tests share this certificate
        officer.close()
        agent.stop()
    assert officer.problems == [] or all("400" in p for p in officer.problems), officer.problems


def _count(text: str) -> int:
    return int(text.replace(".", "").replace(",", ""))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("site", [(1000, 3, "rsa")], indirect=True)
def test_agent_lost_mid_batch_then_sign_the_rest(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path
) -> None:
    """The agent goes away after the first chunks: what arrived is stored, the result page
    says what happened and "Ký tiếp phần còn lại" signs the rest with a new attempt."""
    expect = playwright_api.expect
    expect.set_options(timeout=60_000)
    first = start_agent(token, tmp_path / "agent1", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = first.port
    officer = PlatformPage(browser, site)
    page = officer.page
    second = None
    try:
        page.goto(f"{site.url}/signing/preview")
        page.get_by_role("button", name="Ký số").click()
        deadline = time.monotonic() + 60
        while page.evaluate("() => document.getElementById('sign-progress-bar').value") < 1:
            assert time.monotonic() < deadline, "no signature arrived"
            time.sleep(0.005)
        first.stop()
        page.wait_for_url("**/signing/batches/*", timeout=60_000)
        expect(page.locator("#sign-error")).to_contain_text("Mất kết nối với Kyso Agent giữa chừng")
        signed = _count(page.locator("#batch-signed").inner_text())
        pending = _count(page.locator("#batch-pending").inner_text())
        assert 0 < signed < site.doses
        assert signed + pending == site.doses
        assert first.ui.outcomes == [] or first.ui.outcomes[-1].signed >= signed
        page.screenshot(path=str(tmp_path / "interrupted.png"))

        second = start_agent(token, tmp_path / "agent2", issuer=site.issuer)
        site.app.config["AGENT_PORT"] = second.port
        page.reload()
        page.get_by_role("button", name="Ký tiếp phần còn lại").click()
        expect(page.locator("#batch-pending")).to_have_text("0")
        expect(page.locator("#batch-signed")).to_have_text("3.000")
        assert second.ui.consents[-1].manifest.count == pending
        batch_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    finally:
        officer.close()
        first.stop()
        if second is not None:
            second.stop()
    assert officer.problems == [], officer.problems

    # Nothing signed twice, nothing lost, and every certificate verifies with OpenSSL.
    with site.app.extensions["kyso.sessions"]() as session:
        signatures = session.scalars(select(DoseSignature.dose_id)).all()
        assert len(signatures) == len(set(signatures)) == site.doses
        export_signed(session, batch_id, tmp_path / "export", load_trust_store(site.anchors))
    assert verify_export(tmp_path / "export") == site.doses


@pytest.mark.timeout(240)
@pytest.mark.parametrize("site", [(1000, 3, "p256")], indirect=True)
def test_batch_mode_signs_3000_doses_with_one_token_signature(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    expect.set_options(timeout=60_000)
    with site.app.extensions["kyso.sessions"]() as session:
        officer_user = session.get(User, site.officer_id)
        assert officer_user is not None
        assert officer_user.signing_unit is not None
        officer_user.signing_unit.batch_mode = True
        session.commit()
    agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    officer = PlatformPage(browser, site)
    page = officer.page
    # Issue 17: what the progress line said while signing, and how tall its bar was.
    shown: list[str] = []
    page.expose_function("kysoProgress", lambda text, size: shown.append(f"{size}:{text}"))
    page.add_init_script(
        """addEventListener("DOMContentLoaded", () => {
          const text = document.getElementById("sign-progress-text");
          const bar = document.getElementById("sign-progress-bar");
          if (!text) return;
          const size = () => {
            const box = bar.getBoundingClientRect();
            return `${Math.round(box.width)}x${Math.round(box.height)}`;
          };
          new MutationObserver(() => kysoProgress(text.textContent, size()))
            .observe(text, {childList: true, characterData: true, subtree: true});
        });"""
    )
    try:
        page.goto(f"{site.url}/signing/preview")
        page.get_by_role("button", name="Ký số").click()
        page.wait_for_url("**/signing/batches/*", timeout=60_000)
        assert shown, "the progress line never changed"
        assert all("bản ghi" not in line for line in shown), shown  # not "Đã ký 0/1 bản ghi"
        assert any("1 chữ ký cho 3.000 mũi tiêm" in line for line in shown), shown
        sizes = [line.split(":", 1)[0].split("x") for line in shown]
        assert all(int(w) >= 300 and int(h) >= 20 for w, h in sizes), shown  # a bar one sees
        expect(page.locator("#batch-signed")).to_have_text("3.000")
        expect(page.locator("#batch-pending")).to_have_text("0")
        assert agent.ui.consents[-1].manifest.count == 1  # one token operation
        assert agent.ui.consents[-1].manifest.summary.doses == site.doses
        batch_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    finally:
        officer.close()
        agent.stop()
    assert officer.problems == [], officer.problems
    with site.app.extensions["kyso.sessions"]() as session:
        export_signed(session, batch_id, tmp_path / "export", load_trust_store(site.anchors))
    assert verify_export(tmp_path / "export") == site.doses


@pytest.mark.timeout(120)
def test_user_page_reads_the_serial_from_the_token(
    browser: Any, site: Site, token: Pkcs11Token, softhsm: ProvisionedToken, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    admin = PlatformPage(browser, site, site.admin)
    page = admin.page
    page.set_viewport_size({"width": 1366, "height": 768})
    wanted = x509.load_der_x509_certificate(softhsm.certificates["rsa"].der)
    serial = format(wanted.serial_number, "X")
    try:
        page.goto(f"{site.url}/users/{site.officer_id}/certificate")
        page.get_by_role("button", name="Đọc chứng thư số từ USB token").click()
        items = page.locator("#read-certificate-list li")
        expect(items.first).to_be_visible()
        # what the platform's pages write for each certificate on the token, as it is now (the
        # session's token also holds certificates other tests put on it)
        facts = {c.serial_hex: certificate_facts(c.der) for c in token.list_certificates()}
        assert {
            format(x509.load_der_x509_certificate(c.der).serial_number, "X")
            for c in softhsm.certificates.values()
        } <= set(facts)
        assert items.count() > 1  # several certificates: the officer's is chosen from a list
        shown: list[str] = []
        for index in range(items.count()):
            item = items.nth(index)
            listed = facts[str(item.get_attribute("data-serial"))]
            for name in ("organisation", "tax_code", "key_type", "valid", "serial"):
                fact = item.locator(f"[data-fact={name}] dd")
                assert fact.inner_text() == getattr(listed, name), (name, listed)
            shown.append(item.inner_text())
        # the RSA and the P-256 certificate have the same subject: what is shown tells them apart
        assert len(set(shown)) == len(shown), shown
        rsa = page.locator(f"#read-certificate-list li[data-serial='{serial}']")
        expect(rsa.locator("[data-fact=key_type] dd")).to_have_text("RSA-2048")
        expect(rsa.locator("[data-fact=tax_code] dd")).to_have_text("0312345678")
        expect(rsa.locator("[data-fact=organisation] dd")).to_have_text("Trạm Y tế Phường Bến Nghé")
        # the last day in Vietnam time (the UTC day before it from 17:00 UTC)
        expect(rsa).to_contain_text(f"–{day(wanted.not_valid_after_utc)}")
        # the one already registered (the fixture's P-256) is marked, and only that one
        registered = page.locator("#read-certificate-list li.registered")
        expect(registered).to_have_count(1)
        expect(registered).to_have_attribute("data-serial", site.serial)
        expect(registered).to_contain_text("Đang đăng ký cho người dùng này")
        expect(registered.locator("[data-fact=key_type] dd")).to_have_text("ECDSA P-256")
        page.screenshot(path=str(tmp_path / "picker-1366.png"), full_page=True)
        rsa.get_by_role("button", name="Dùng chứng thư này").click()
        expect(page.locator("input[name=serial]")).to_have_value(format_serial(serial))
        expect(page.locator("#read-certificate-status")).to_contain_text(format_serial(serial))
        page.get_by_role("button", name="Lưu").click()
        expect(page.locator(".flash.success")).to_contain_text(format_serial(serial))
        # the page then shows the registered certificate the way the picker did
        current = page.locator("dl.certificate").first
        expect(current.locator("[data-fact=key_type] dd")).to_have_text("RSA-2048")
        expect(current.locator("[data-fact=valid] dd")).to_have_text(facts[serial].valid)
        expect(current.locator("[data-fact=serial] dd")).to_have_text(format_serial(serial))
        history = page.locator("table .certificate-line")
        expect(history.first).to_contain_text("RSA-2048")
        page.screenshot(path=str(tmp_path / "registered-1366.png"), full_page=True)
        page.set_viewport_size({"width": 360, "height": 740})
        page.get_by_role("button", name="Đọc chứng thư số từ USB token").click()
        expect(page.locator("#read-certificate-list li.registered")).to_have_attribute(
            "data-serial", serial
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.screenshot(path=str(tmp_path / "picker-360.png"), full_page=True)
        assert agent.ui.origin_requests == [site.url]
    finally:
        admin.close()
        agent.stop()
    assert admin.problems == [], admin.problems


# --- the platform-side threats: what a subverted page script could try -----------------------


@pytest.mark.timeout(120)
def test_a_page_that_swaps_a_digest_gets_nothing_signed(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path
) -> None:
    """Threat 6 end to end: the script hands the agent a digest the platform did not commit to;
    the agent refuses before any dialog or token operation, and nothing is stored."""
    expect = playwright_api.expect
    expect.set_options(timeout=20_000)
    agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    officer = PlatformPage(browser, site)
    page = officer.page

    def swap(route: Any) -> None:
        response = route.fetch()
        data = response.json()
        data["attempt"]["digests"][0] = base64.b64encode(hashlib.sha256(b"evil").digest()).decode()
        route.fulfill(response=response, json=data)

    try:
        page.route("**/signing/api/batches", swap)
        page.goto(f"{site.url}/signing/preview")
        before = token.stats
        page.get_by_role("button", name="Ký số").click()
        expect(page.locator("#sign-error")).to_contain_text("không khớp")
        assert agent.ui.consents == []
        after = token.stats
        assert (after.logins, after.signatures) == (before.logins, before.signatures)
    finally:
        officer.close()
        agent.stop()
    with site.app.extensions["kyso.sessions"]() as session:
        assert session.scalars(select(DoseSignature)).all() == []


@pytest.mark.timeout(120)
def test_signatures_altered_on_the_way_are_rejected_per_record(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path
) -> None:
    """The platform verifies every returned signature against the certificate and the exact
    bytes it prepared: one altered in transit is rejected with its reason, the rest stored."""
    expect = playwright_api.expect
    expect.set_options(timeout=30_000)
    agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    officer = PlatformPage(browser, site)
    page = officer.page

    def alter(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        if body.get("offset") == 0:
            raw = bytearray(base64.b64decode(body["signatures"][0]))
            raw[-1] ^= 0x01
            body["signatures"][0] = base64.b64encode(bytes(raw)).decode()
        route.continue_(post_data=json.dumps(body))

    try:
        page.route("**/signatures", alter)
        page.goto(f"{site.url}/signing/preview")
        expect(page.locator("#sign-progress")).to_be_hidden()  # no empty bar before signing
        page.get_by_role("button", name="Ký số").click()
        page.wait_for_url("**/signing/batches/*", timeout=30_000)
        expect(page.locator("#batch-rejected")).to_have_text("1")
        expect(page.locator("#batch-signed")).to_have_text(str(site.doses - 1))
        expect(page.locator("#rejected-records tr[data-reason='signature_invalid']")).to_have_count(
            1
        )
    finally:
        officer.close()
        agent.stop()
    assert officer.problems == [], officer.problems


@pytest.mark.timeout(240)
@pytest.mark.parametrize("site", [(1000, 3, "rsa")], indirect=True)
def test_tab_closed_mid_batch_then_resumed_from_the_batch_list(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path
) -> None:
    """The officer closes the tab while the token signs: what was posted is kept, the agent
    stops (the connection closed), and the batch is finished later from "Các lô đã ký"."""
    expect = playwright_api.expect
    expect.set_options(timeout=60_000)
    agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    officer = PlatformPage(browser, site)
    page = officer.page
    try:
        page.goto(f"{site.url}/signing/preview")
        page.get_by_role("button", name="Ký số").click()
        deadline = time.monotonic() + 60
        while page.evaluate("() => document.getElementById('sign-progress-bar').value") < 200:
            assert time.monotonic() < deadline, "signing did not progress"
            time.sleep(0.005)
        page.close()
        deadline = time.monotonic() + 30
        while not agent.ui.outcomes:
            assert time.monotonic() < deadline, "the agent did not stop with the tab"
            time.sleep(0.05)
        assert agent.ui.outcomes[-1].signed < site.doses

        page = officer.context.new_page()
        page.goto(f"{site.url}/signing/batches")
        page.locator("#batch-list a").first.click()
        signed = _count(page.locator("#batch-signed").inner_text())
        assert 0 < signed < site.doses
        page.get_by_role("button", name="Ký tiếp phần còn lại").click()
        expect(page.locator("#batch-pending")).to_have_text("0")
        expect(page.locator("#batch-signed")).to_have_text("3.000")
    finally:
        officer.close()
        agent.stop()
    with site.app.extensions["kyso.sessions"]() as session:
        signatures = session.scalars(select(DoseSignature.dose_id)).all()
        assert len(signatures) == len(set(signatures)) == site.doses


@pytest.mark.timeout(180)
def test_platform_away_longer_than_the_retries_costs_no_second_signing(
    browser: Any, site: Site, token: Pkcs11Token, tmp_path: Path
) -> None:
    """Issue 19, 5: the platform stops taking signatures (the connection refused) for longer
    than the page's retries. The signatures the agent made stay in the browser (IndexedDB), the
    officer is told, and they are posted when the platform is back, even from the batch's page
    opened again later: one consent, one attempt, nothing signed twice on the token. Fails on
    the old code (the page dropped them and the batch needed a second signing)."""
    expect = playwright_api.expect
    expect.set_options(timeout=30_000)
    agent = start_agent(token, tmp_path / "agent", issuer=site.issuer)
    site.app.config["AGENT_PORT"] = agent.port
    officer = PlatformPage(browser, site)
    page = officer.page
    posts = "**/signing/api/batches/*/signatures"
    try:
        page.goto(f"{site.url}/signing/preview")
        page.route(posts, lambda route: route.abort("connectionrefused"))
        page.get_by_role("button", name="Ký số").click()
        error = page.locator("#sign-error")
        expect(error).to_contain_text(f"Hệ thống chưa nhận được {site.doses} chữ ký đã ký")
        expect(error).to_contain_text("không cần ký lại")
        assert agent.ui.outcomes[-1].signed == site.doses
        with site.app.extensions["kyso.sessions"]() as session:
            batch_id = session.scalars(select(SigningBatch.id)).one()
            assert session.scalar(select(func.count()).select_from(DoseSignature)) == 0

        # The officer leaves and opens the batch's page later; the platform is still away. The
        # sign button must not be enabled while the held signatures are delivered: the page
        # reloads once they are in, and a click in between would be lost with it.
        page.add_init_script(
            """window.__kysoButtonEnabled = 0;
            new MutationObserver(() => {
              const button = document.getElementById("sign-button");
              if (button && !button.disabled) window.__kysoButtonEnabled += 1;
            }).observe(document, {
              subtree: true, childList: true, attributes: true, attributeFilter: ["disabled"],
            });"""
        )
        page.goto(f"{site.url}/signing/batches/{batch_id}")
        expect(error).to_contain_text(f"Hệ thống chưa nhận được {site.doses} chữ ký đã ký")
        assert page.evaluate("window.__kysoButtonEnabled") == 0
        expect(page.locator("#sign-button")).to_be_disabled()
        page.unroute(posts)  # the platform is back
        expect(page.locator("#batch-pending")).to_have_text("0")
        expect(page.locator("#batch-signed")).to_have_text(str(site.doses))
        expect(page.locator("#batch-status")).to_have_attribute("data-status", "completed")
    finally:
        officer.close()
        agent.stop()
    assert len(agent.ui.consents) == 1  # one PIN, one signing on the token
    refused = "ERR_CONNECTION_REFUSED"
    assert [p for p in officer.problems if refused not in p] == [], officer.problems
    with site.app.extensions["kyso.sessions"]() as session:
        signatures = session.scalars(select(DoseSignature.dose_id)).all()
        assert len(signatures) == len(set(signatures)) == site.doses
        assert session.scalar(select(func.count()).select_from(SigningAttempt)) == 1
