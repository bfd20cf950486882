"""The officer's dialogs on their own: defaults, the approval delay, the PIN, retries, pairing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QLabel, QLineEdit
from pytestqt.qtbot import QtBot

from kyso.agent.certificate_facts import certificate_facts
from kyso.agent.i18n import tr
from kyso.agent.protocol import ErrorCode
from kyso.agent.service import BatchOutcome, ConsentRequest
from kyso.agent.token.model import PinStatus
from kyso.agent.ui.dialogs import (
    APPROVE_DELAY_MS,
    ConsentDialog,
    OriginDialog,
    PairingDialog,
    ProgressDialog,
    format_fingerprint,
)

from .conftest import ORIGIN

FINGERPRINT = "3f" * 32


def texts(dialog: QDialog) -> str:
    return "\n".join(w.text() for w in dialog.findChildren(QLabel) if w.isVisible())


def shown(qtbot: QtBot, dialog: QDialog) -> QDialog:
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_consent_shows_what_the_agent_verified(
    qtbot: QtBot, consent_request: Callable[..., ConsentRequest]
) -> None:
    request = consent_request()
    dialog = shown(qtbot, ConsentDialog(request, "vi"))
    text = texts(dialog)
    assert dialog.windowTitle() == "Yêu cầu ký số — Kiểm tra mã PIN"
    assert f"Trang web yêu cầu: {ORIGIN}" in text
    assert "Số chữ ký sẽ tạo: 250" in text
    assert "Nội dung do hệ thống tiêm chủng cung cấp:" in text
    assert "Đơn vị: Trạm Y tế Phường Bến Nghé, Quận 1" in text
    assert "Mã xác nhận: K7Q-4MZ" in text
    assert "Ngày tiêm: từ 01/03/2022 đến 31/03/2022" in text  # dd/mm/yyyy (issue 17)
    # the certificate as the platform's pages show it (issue 17): organisation, tax code, key
    # type, serial in pairs and the validity in Vietnam days, so that RSA and P-256 certificates
    # of one subject read differently
    # (tests/platform/test_certificate_facts.py: the same facts as the platform's pages)
    facts = certificate_facts(request.certificate)
    assert facts.tax_code == "0312345678"
    assert facts.organisation == "Trạm Y tế Phường Bến Nghé"
    assert (
        f"Chứng thư số dùng để ký: {facts.organisation} — MST {facts.tax_code} — "
        f"ECDSA P-256 — số sê-ri {facts.serial} (hiệu lực {facts.valid})"
    ) in text
    # The platform's words are inside the framed summary, and nothing renders as rich text.
    frame = dialog.findChild(QLabel, "summary")
    assert frame is not None
    assert frame.parent().objectName() == "summary_frame"
    assert all(w.textFormat() == Qt.TextFormat.PlainText for w in dialog.findChildren(QLabel))


def test_consent_cancel_is_default_and_approve_waits(
    qtbot: QtBot, consent_request: Callable[..., ConsentRequest]
) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(), "vi"))
    assert dialog.cancel_button.isDefault()
    assert not dialog.approve_button.isDefault()
    opened = time.monotonic()
    qtbot.keyClicks(dialog.pin_edit, "123456")
    assert not dialog.approve_button.isEnabled()
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
    waited = time.monotonic() - opened
    assert waited >= APPROVE_DELAY_MS / 1000 - 0.05, waited


def test_enter_at_0_4_seconds_does_not_approve(
    qtbot: QtBot, consent_request: Callable[..., ConsentRequest]
) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(), "vi"))
    qtbot.keyClicks(dialog.pin_edit, "123456")
    qtbot.wait(400)
    with qtbot.waitSignal(dialog.finished, timeout=1000) as finished:
        qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
    assert finished.args == [QDialog.DialogCode.Rejected]


def test_click_on_approve_before_the_delay_does_nothing(
    qtbot: QtBot, consent_request: Callable[..., ConsentRequest]
) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(), "vi"))
    qtbot.keyClicks(dialog.pin_edit, "123456")
    qtbot.wait(300)
    qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)
    dialog.approve_button.click()  # even a programmatic click on the disabled button
    assert dialog.isVisible()
    assert dialog.result() == 0


def test_pin_is_masked_and_enter_after_the_delay_approves(
    qtbot: QtBot, consent_request: Callable[..., ConsentRequest]
) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(), "vi"))
    assert dialog.pin_edit.echoMode() == QLineEdit.EchoMode.Password
    # a PIN that no other text of the dialog contains (the tax code 0312345678 holds "123456")
    pin = "864209"
    assert pin not in texts(dialog)
    qtbot.keyClicks(dialog.pin_edit, pin)
    assert dialog.pin_edit.displayText() != pin
    assert pin not in texts(dialog)
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
    with qtbot.waitSignal(dialog.finished, timeout=1000) as finished:
        qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
    assert finished.args == [QDialog.DialogCode.Accepted]
    assert dialog.take_pin() == pin
    assert dialog.pin_edit.text() == ""  # read once, then gone


def test_approve_needs_a_pin(qtbot: QtBot, consent_request: Callable[..., ConsentRequest]) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(), "vi"))
    qtbot.wait(APPROVE_DELAY_MS + 200)
    assert not dialog.approve_button.isEnabled()
    qtbot.keyClicks(dialog.pin_edit, "1")
    assert dialog.approve_button.isEnabled()


def test_escape_and_enter_elsewhere_cancel(
    qtbot: QtBot, consent_request: Callable[..., ConsentRequest]
) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(), "vi"))
    qtbot.keyClicks(dialog.pin_edit, "123456")
    qtbot.wait(APPROVE_DELAY_MS + 200)
    dialog.cancel_button.setFocus()
    with qtbot.waitSignal(dialog.finished, timeout=1000) as finished:
        qtbot.keyClick(dialog.cancel_button, Qt.Key.Key_Return)
    assert finished.args == [QDialog.DialogCode.Rejected]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (PinStatus(), None),
        (PinStatus(count_low=True), "Cảnh báo: đã có lần nhập sai mã PIN trước đó."),
        (PinStatus(count_low=True, final_try=True), "chỉ còn MỘT lần thử"),
    ],
)
def test_retry_state_is_shown_before_the_pin_is_typed(
    qtbot: QtBot,
    consent_request: Callable[..., ConsentRequest],
    status: PinStatus,
    expected: str | None,
) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(status), "vi"))
    assert dialog.pin_edit.text() == ""
    if expected is None:
        assert not dialog.pin_state.isVisible()
    else:
        assert dialog.pin_state.isVisible()
        assert expected in dialog.pin_state.text()


def test_locked_token_cannot_be_approved(
    qtbot: QtBot, consent_request: Callable[..., ConsentRequest]
) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(PinStatus(locked=True)), "vi"))
    assert "USB token đã bị khóa" in dialog.pin_state.text()
    assert not dialog.pin_edit.isEnabled()
    qtbot.wait(APPROVE_DELAY_MS + 200)
    assert not dialog.approve_button.isEnabled()


def test_delay_restarts_when_the_dialog_comes_back_to_the_front(
    qtbot: QtBot, consent_request: Callable[..., ConsentRequest]
) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(), "vi"))
    qtbot.keyClicks(dialog.pin_edit, "123456")
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
    dialog._restart_delay()  # what an ActivationChange to the front does
    assert not dialog.approve_button.isEnabled()
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)


def test_consent_in_english(qtbot: QtBot, consent_request: Callable[..., ConsentRequest]) -> None:
    dialog = shown(qtbot, ConsentDialog(consent_request(), "en"))
    assert "Verification code: K7Q-4MZ" in texts(dialog)
    assert dialog.approve_button.text() == "Sign 250 records"
    assert dialog.cancel_button.text() == "Cancel"


def test_origin_dialog_defaults(qtbot: QtBot) -> None:
    dialog = shown(qtbot, OriginDialog(ORIGIN, "vi"))
    assert ORIGIN in texts(dialog)
    assert dialog.cancel_button.isDefault()
    qtbot.wait(300)
    assert not dialog.approve_button.isEnabled()
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)


def outcome(error: ErrorCode | None, signed: int = 0, total: int = 250) -> BatchOutcome:
    return BatchOutcome(ORIGIN, "B2022-0315-0042", total, signed, error, datetime.now(UTC))


def test_progress_then_result(qtbot: QtBot) -> None:
    dialog = shown(qtbot, ProgressDialog("vi"))
    dialog.set_progress(100, 250)
    assert dialog.message.text() == "Đang ký: 100/250"
    assert dialog.bar.value() == 100
    assert dialog.bar.maximum() == 250
    dialog.show_outcome(outcome(None, 250))
    assert dialog.message.text() == "Đã ký xong lô B2022-0315-0042: 250/250 chữ ký."
    assert dialog.button.text() == "Đóng"


def test_progress_cancel_asks_once(qtbot: QtBot) -> None:
    dialog = shown(qtbot, ProgressDialog("vi"))
    dialog.set_progress(100, 250)
    with qtbot.waitSignal(dialog.cancel_requested, timeout=1000):
        qtbot.mouseClick(dialog.button, Qt.MouseButton.LeftButton)
    assert not dialog.button.isEnabled()
    assert "Đang dừng" in dialog.message.text()
    dialog.show_outcome(outcome(ErrorCode.CANCELLED, 100))
    assert "đã ký 100/250" in dialog.message.text()
    assert dialog.button.isEnabled()


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (None, "không cho biết còn bao nhiêu lần thử"),
        (PinStatus(count_low=True), "không cho biết còn bao nhiêu lần thử"),
        (PinStatus(count_low=True, final_try=True), "chỉ còn MỘT lần thử"),
        (PinStatus(locked=True), "USB token đã bị khóa"),
    ],
)
def test_wrong_pin_says_how_many_tries_remain(
    qtbot: QtBot, after: PinStatus | None, expected: str
) -> None:
    dialog = shown(qtbot, ProgressDialog("vi"))
    dialog.show_outcome(outcome(ErrorCode.PIN_INCORRECT), after)
    assert tr("errors.pin_incorrect", "vi") in dialog.message.text()
    assert expected in dialog.detail.text()
    assert "Kyso không tự thử lại" in dialog.detail.text()


def test_pairing_shows_origin_then_fingerprint(qtbot: QtBot) -> None:
    dialog = shown(qtbot, PairingDialog("https://tiemchung.hcm.example.vn", "vi"))
    assert "https://tiemchung.hcm.example.vn" in dialog.message.text()
    assert dialog.cancel_button.isDefault()
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
    with qtbot.waitSignal(dialog.allowed, timeout=1000):
        qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)
    assert not dialog.approve_button.isEnabled()  # waiting for the key
    dialog.show_fingerprint(FINGERPRINT)
    assert dialog.fingerprint_label.text() == format_fingerprint(FINGERPRINT)
    assert "3F3F 3F3F" in dialog.fingerprint_label.text()
    assert not dialog.approve_button.isEnabled()  # a new delay for the second question
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
    with qtbot.waitSignal(dialog.finished, timeout=1000) as finished:
        qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)
    assert finished.args == [QDialog.DialogCode.Accepted]
    assert dialog.fingerprint == FINGERPRINT


def test_pairing_error_ends_it(qtbot: QtBot) -> None:
    dialog = shown(qtbot, PairingDialog("https://tiemchung.hcm.example.vn", "vi"))
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
    dialog.approve_button.click()
    dialog.show_error("Không tải được khóa.")
    assert dialog.message.text() == "Không tải được khóa."
    assert not dialog.approve_button.isVisible()
    with qtbot.waitSignal(dialog.finished, timeout=1000) as finished:
        dialog.cancel_button.click()
    assert finished.args == [QDialog.DialogCode.Rejected]
