"""The desktop app end to end: the real agent server and service, a SoftHSM token, a page-like
WebSocket client on a background thread, and an officer who clicks and types in the dialogs.

The page blocks on its socket, so it runs in a worker thread while the test's main thread runs
the Qt event loop (qtbot.waitUntil), exactly as Qt owns the main thread in the app.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot
from support.agent_harness import Page
from support.platform_keys import ManifestIssuer
from support.signing import collect, digests, sign_request, verify
from websockets.sync.client import connect

from kyso.agent.config import AgentConfig, AllowedOrigin
from kyso.agent.protocol import ErrorCode
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken, user_logged_in
from kyso.agent.ui.app import DesktopApp
from kyso.agent.ui.dialogs import ConsentDialog, OriginDialog

from .conftest import ORIGIN, start_and_wait

T = TypeVar("T")


class Desktop:
    def __init__(self, app: DesktopApp, issuer: ManifestIssuer) -> None:
        self.app = app
        self.issuer = issuer
        self.pool = ThreadPoolExecutor(max_workers=1)

    @property
    def port(self) -> int:
        port = self.app.controller.listening_port
        assert port is not None
        return port

    def page(self) -> Page:
        url = f"ws://127.0.0.1:{self.port}/"
        return Page(connect(url, origin=ORIGIN, open_timeout=10, legacy=True))  # type: ignore[arg-type]

    def background(self, fn: Callable[[], T]) -> Future[T]:
        return self.pool.submit(fn)


@pytest.fixture
def desktop(qtbot: QtBot, token: Pkcs11Token, tmp_path: Path) -> Iterator[Desktop]:
    issuer = ManifestIssuer(ORIGIN)
    config = AgentConfig(
        port=0,
        origins=(AllowedOrigin.create(ORIGIN, issuer.public_pem),),
        state_dir=tmp_path,
    )
    app = DesktopApp(config, token, language="vi", port=0, use_tray=False)
    qtbot.addWidget(app.window)
    app.window.show()
    assert start_and_wait(qtbot, app.controller)
    desktop = Desktop(app, issuer)
    yield desktop
    app.shutdown()
    desktop.pool.shutdown(wait=True, cancel_futures=True)


def result(qtbot: QtBot, future: Future[T], timeout: int = 60_000) -> T:
    """The page's answer, once the Qt thread has handled what the agent told it before it.

    The service posts the outcome to the Qt thread before it sends the page its reply, but the
    wait can see the reply first: the events already posted are processed before returning.
    """
    qtbot.waitUntil(future.done, timeout=timeout)
    QCoreApplication.sendPostedEvents()
    QCoreApplication.processEvents()
    return future.result()


def open_consent(qtbot: QtBot, desktop: Desktop) -> ConsentDialog:
    qtbot.waitUntil(lambda: isinstance(desktop.app.question, ConsentDialog), timeout=20_000)
    dialog = desktop.app.question
    assert isinstance(dialog, ConsentDialog)
    qtbot.waitExposed(dialog)
    return dialog


def approve_with_pin(qtbot: QtBot, dialog: ConsentDialog, pin: str) -> None:
    qtbot.keyClicks(dialog.pin_edit, pin)
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
    qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)


def test_officer_signs_a_batch_in_the_dialog(
    qtbot: QtBot, desktop: Desktop, softhsm: ProvisionedToken
) -> None:
    page = desktop.page()
    assert result(qtbot, desktop.background(page.hello))["state"] == "ready"

    # The page asks for the certificates: the officer allows the origin.
    listing = desktop.background(lambda: page.request({"type": "list_certificates", "id": "c1"}))
    qtbot.waitUntil(lambda: isinstance(desktop.app.question, OriginDialog), timeout=20_000)
    origin_dialog = desktop.app.question
    assert isinstance(origin_dialog, OriginDialog)
    assert not origin_dialog.approve_button.isEnabled()
    qtbot.waitUntil(origin_dialog.approve_button.isEnabled, timeout=3000)
    qtbot.mouseClick(origin_dialog.approve_button, Qt.MouseButton.LeftButton)
    assert result(qtbot, listing)[-1]["type"] == "certificates"

    certificate = softhsm.certificates["p256"]
    items = digests(120)
    request = sign_request(desktop.issuer, certificate.fingerprint_sha256, "ECDSA_SHA256", items)
    signing = desktop.background(lambda: page.request(request))
    dialog = open_consent(qtbot, desktop)
    assert desktop.app.controller.status.value == "signing"
    labels = "\n".join(w.text() for w in dialog.findChildren(QLabel))
    assert "Số chữ ký sẽ tạo: 120" in labels
    assert "Mã xác nhận: K7Q-4MZ" in labels
    approve_with_pin(qtbot, dialog, softhsm.user_pin)

    replies = result(qtbot, signing)
    assert replies[-1]["type"] == "result", replies[-1]
    signatures = collect(replies)
    assert len(signatures) == 120
    for digest, signature in zip(items, signatures, strict=True):
        verify(certificate.der, "ECDSA_SHA256", digest, signature)
    assert not user_logged_in(softhsm)

    # The progress window turned into the result, and the main window shows the last batch.
    progress = desktop.app.progress
    assert progress is not None
    qtbot.waitUntil(lambda: progress.finished_outcome is not None, timeout=5000)
    assert progress.message.text().endswith("120/120 chữ ký.")
    last = desktop.app.window.values["last_batch"].text()
    assert ORIGIN in last
    assert "120/120 chữ ký — thành công" in last
    assert desktop.app.controller.status.value == "listening"
    assert desktop.app.question is None
    page.close()


def test_wrong_pin_is_not_retried_and_says_what_is_left(
    qtbot: QtBot, desktop: Desktop, token: Pkcs11Token, softhsm: ProvisionedToken
) -> None:
    page = desktop.page()
    result(qtbot, desktop.background(page.hello))
    before = token.stats
    fp = softhsm.certificates["rsa"].fingerprint_sha256
    request = sign_request(desktop.issuer, fp, "RSA_PKCS1_SHA256", digests(3))
    signing = desktop.background(lambda: page.request(request))
    approve_with_pin(qtbot, open_consent(qtbot, desktop), "999999")
    reply = result(qtbot, signing)[-1]
    assert reply["code"] == ErrorCode.PIN_INCORRECT
    assert token.stats.logins == before.logins + 1
    assert token.stats.signatures == before.signatures

    progress = desktop.app.progress
    assert progress is not None
    qtbot.waitUntil(lambda: "Kyso không tự thử lại" in progress.detail.text(), timeout=5000)
    assert "Mã PIN không đúng" in progress.message.text()
    qtbot.wait(1500)
    assert desktop.app.question is None  # no second PIN dialog
    assert token.stats.logins == before.logins + 1
    page.close()


def test_cancel_in_the_dialog_declines_without_a_token_operation(
    qtbot: QtBot, desktop: Desktop, token: Pkcs11Token, softhsm: ProvisionedToken
) -> None:
    page = desktop.page()
    result(qtbot, desktop.background(page.hello))
    before = token.stats
    fp = softhsm.certificates["p256"].fingerprint_sha256
    signing = desktop.background(
        lambda: page.request(sign_request(desktop.issuer, fp, "ECDSA_SHA256", digests(5)))
    )
    dialog = open_consent(qtbot, desktop)
    qtbot.keyClicks(dialog.pin_edit, softhsm.user_pin)
    qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)  # at once: Cancel, the default
    reply = result(qtbot, signing)[-1]
    assert reply["code"] == ErrorCode.USER_DECLINED
    assert token.stats.logins == before.logins
    assert token.stats.signatures == before.signatures
    assert "từ chối" in desktop.app.window.values["last_batch"].text()
    page.close()


def test_stop_signing_during_a_batch(
    qtbot: QtBot, desktop: Desktop, softhsm: ProvisionedToken
) -> None:
    page = desktop.page()
    result(qtbot, desktop.background(page.hello))
    certificate = softhsm.certificates["rsa"]
    items = digests(3000)
    request = sign_request(desktop.issuer, certificate.fingerprint_sha256, "RSA_PSS_SHA256", items)
    signing = desktop.background(lambda: page.request(request))
    approve_with_pin(qtbot, open_consent(qtbot, desktop), softhsm.user_pin)
    qtbot.waitUntil(lambda: desktop.app.progress is not None, timeout=5000)
    progress = desktop.app.progress
    assert progress is not None
    qtbot.waitUntil(lambda: progress.bar.value() > 0, timeout=20_000)
    qtbot.mouseClick(progress.button, Qt.MouseButton.LeftButton)
    replies = result(qtbot, signing)
    assert replies[-1]["code"] == ErrorCode.CANCELLED
    signed = len(collect(replies))
    assert 0 < signed < 3000
    qtbot.waitUntil(lambda: progress.finished_outcome is not None, timeout=5000)
    assert f"đã ký {signed}/3000" in progress.message.text()
    assert not user_logged_in(softhsm)
    page.close()


def test_stop_while_a_dialog_is_open_answers_no_and_stops(
    qtbot: QtBot, desktop: Desktop, token: Pkcs11Token, softhsm: ProvisionedToken
) -> None:
    page = desktop.page()
    result(qtbot, desktop.background(page.hello))
    before = token.stats
    fp = softhsm.certificates["p256"].fingerprint_sha256

    def sign() -> list[dict[str, Any]]:
        try:
            return page.request(sign_request(desktop.issuer, fp, "ECDSA_SHA256", digests(5)))
        except Exception as exc:  # the agent closed the connection while stopping
            return [{"type": "closed", "error": repr(exc)}]

    signing = desktop.background(sign)
    open_consent(qtbot, desktop)
    qtbot.mouseClick(desktop.app.window.start_button, Qt.MouseButton.LeftButton)
    assert not desktop.app.controller.listening
    assert desktop.app.question is None
    last = result(qtbot, signing)[-1]
    assert last.get("code") == ErrorCode.USER_DECLINED or last["type"] == "closed"
    assert token.stats.logins == before.logins
    assert desktop.app.window.start_button.text() == "Bắt đầu"


def test_diagnostics_have_no_secrets(
    qtbot: QtBot, desktop: Desktop, softhsm: ProvisionedToken
) -> None:
    qtbot.waitUntil(lambda: desktop.app.controller.snapshot.present, timeout=5000)
    text = desktop.app.copy_diagnostics()
    assert softhsm.label in text
    assert ORIGIN in text
    # (the test PINs are digits that also occur inside the tax code of the certificate subject)
    assert not re.search(rf"\b{softhsm.user_pin}\b", text)
    assert not re.search(rf"\b{softhsm.so_pin}\b", text)
    assert QApplication.clipboard().text() == text
