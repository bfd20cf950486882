"""The officer's dialogs: consent and PIN, origin approval, progress and result, pairing, about.

Safety rules of threat 7 and 8, in every question dialog:
- every line is the agent's own text; what the platform says (the batch summary) is shown only
  inside a frame titled as the platform's statement, and all labels are plain text;
- Cancel is the default button; the approving button is enabled only ``APPROVE_DELAY_MS`` after
  the dialog was shown or last became the active window, so an Enter or a click meant for
  something else cannot approve;
- the PIN field is masked, and its text leaves the dialog only through ``reply`` once.
"""

from __future__ import annotations

from dataclasses import asdict

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeyEvent, QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from kyso.agent import __version__
from kyso.agent.certificate_facts import certificate_facts
from kyso.agent.expiry import expiry_warning
from kyso.agent.i18n import Count, tr
from kyso.agent.protocol import ErrorCode
from kyso.agent.service import BatchOutcome, ConsentRequest
from kyso.agent.token.model import PinStatus
from kyso.agent.ui.widgets import fit_to_text, keep_buttons_whole, label, t

APPROVE_DELAY_MS = 1000
DIALOG_MIN_WIDTH = 520


class _GuardedQuestion(QDialog):
    """A question whose approving button waits ``APPROVE_DELAY_MS`` and whose default is Cancel."""

    def __init__(self, language: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.language = language
        self.setWindowFlag(Qt.WindowType.WindowStaysOnTopHint, True)
        self.cancel_button = QPushButton(t("cancel", language))
        self.cancel_button.setObjectName("cancel")
        self.approve_button = QPushButton()
        self.approve_button.setObjectName("approve")
        self.approve_button.setAutoDefault(False)
        self.cancel_button.setAutoDefault(True)
        self.cancel_button.setDefault(True)
        self.cancel_button.clicked.connect(self.reject)
        self.approve_button.clicked.connect(self._approve_clicked)
        self._delay_passed = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(APPROVE_DELAY_MS)
        self._timer.timeout.connect(self._delay_elapsed)
        self.approve_button.setEnabled(False)

    def button_row(self) -> QHBoxLayout:
        keep_buttons_whole(self)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.approve_button)
        return row

    # The approving button waits after every show and every return to the foreground.
    def _restart_delay(self) -> None:
        self._delay_passed = False
        self._update_approve()
        self._timer.start()

    def _delay_elapsed(self) -> None:
        self._delay_passed = True
        self._update_approve()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_to_text(self, DIALOG_MIN_WIDTH, exact=True)
        self._restart_delay()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.ActivationChange and self.isVisible():
            if self.isActiveWindow():
                self._restart_delay()
            else:
                self._timer.stop()
                self._delay_passed = False
                self._update_approve()

    def can_approve(self) -> bool:
        return self._delay_passed

    def _update_approve(self) -> None:
        self.approve_button.setEnabled(self.can_approve())

    def _approve_clicked(self) -> None:
        if self.can_approve():
            self.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if self._enter_approves():
                self._approve_clicked()
            else:
                self.reject()  # Cancel is the default
            return
        super().keyPressEvent(event)

    def _enter_approves(self) -> bool:
        return False


class ConsentDialog(_GuardedQuestion):
    """ "Kiểm tra mã PIN": what will be signed, by which certificate, and the PIN."""

    def __init__(
        self, request: ConsentRequest, language: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(language, parent)
        self.request = request
        manifest, cert = request.manifest, request.certificate
        self.setWindowTitle(t("dialogs.consent_title", language))
        self.approve_button.setText(t("consent_approve", language, count=Count(manifest.count)))

        layout = QVBoxLayout(self)
        layout.addWidget(label(t("dialogs.consent_title", language), bold=True, scale=1.25))
        layout.addWidget(
            label(t("dialogs.consent_origin", language, origin=request.origin), name="origin")
        )
        layout.addWidget(
            label(
                t("dialogs.consent_certificate", language, **asdict(certificate_facts(cert))),
                name="certificate",
            )
        )
        warning = expiry_warning(cert.not_after, language)
        if warning:
            layout.addWidget(label(warning, name="expiry"))
        layout.addWidget(
            label(t("dialogs.consent_count", language, count=Count(manifest.count)), name="count")
        )

        frame = QFrame()
        frame.setObjectName("summary_frame")
        frame.setFrameShape(QFrame.Shape.StyledPanel)
        frame.setFrameShadow(QFrame.Shadow.Sunken)
        inner = QVBoxLayout(frame)
        inner.addWidget(label(t("dialogs.consent_summary_title", language), bold=True))
        summary = manifest.summary
        inner.addWidget(
            label(
                t(
                    "dialogs.consent_summary",
                    language,
                    facility=summary.facility,
                    people=Count(summary.people),
                    doses=Count(summary.doses),
                    first_date=summary.first_date,
                    last_date=summary.last_date,
                ),
                name="summary",
            )
        )
        layout.addWidget(frame)
        layout.addWidget(
            label(t("dialogs.consent_code", language, code=manifest.code), bold=True, name="code")
        )

        self.pin_state = label(pin_state_text(request.pin_status, language), name="pin_state")
        self.pin_state.setStyleSheet("color: #b00020; font-weight: bold;")
        self.pin_state.setVisible(bool(self.pin_state.text()))
        layout.addWidget(self.pin_state)

        self.pin_label = label(t("pin_label", language), wrap=False)
        self.pin_edit = QLineEdit()
        self.pin_edit.setObjectName("pin")
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin_edit.setMaxLength(64)
        self.pin_edit.setInputMethodHints(
            Qt.InputMethodHint.ImhHiddenText
            | Qt.InputMethodHint.ImhNoPredictiveText
            | Qt.InputMethodHint.ImhSensitiveData
        )
        self.pin_edit.setPlaceholderText(t("pin_placeholder", language))
        self.pin_label.setBuddy(self.pin_edit)
        self.pin_edit.textChanged.connect(self._update_approve)
        layout.addStretch(1)  # extra height goes here, not between the lines
        pin_row = QHBoxLayout()
        pin_row.addWidget(self.pin_label)
        pin_row.addWidget(self.pin_edit, 1)
        layout.addLayout(pin_row)
        layout.addLayout(self.button_row())

        if request.pin_status.locked:
            self.pin_edit.setEnabled(False)
        self.pin_edit.setFocus()

    def can_approve(self) -> bool:
        return (
            super().can_approve()
            and bool(self.pin_edit.text())
            and not self.request.pin_status.locked
        )

    def _enter_approves(self) -> bool:
        # Enter in the filled PIN field signs once the delay has passed; any other Enter cancels.
        return self.pin_edit.hasFocus() and self.can_approve()

    def take_pin(self) -> str:
        """The typed PIN, once: the field is cleared as it is read."""
        pin = self.pin_edit.text()
        self.pin_edit.clear()
        return pin


def pin_state_text(status: PinStatus, language: str) -> str:
    """The token's retry state, shown before the PIN is typed (threat 8)."""
    if status.locked:
        return t("dialogs.pin_locked", language)
    if status.final_try:
        return t("dialogs.pin_final_try", language)
    if status.count_low:
        return t("dialogs.pin_count_low", language)
    return ""


class OriginDialog(_GuardedQuestion):
    """May this page read the list of certificates? (once per origin and agent run)."""

    def __init__(self, origin: str, language: str, parent: QWidget | None = None) -> None:
        super().__init__(language, parent)
        self.setWindowTitle(t("origin_title", language))
        self.approve_button.setText(t("allow", language))
        layout = QVBoxLayout(self)
        layout.addWidget(label(t("origin_title", language), bold=True, scale=1.25))
        layout.addWidget(label(t("origin_text", language, origin=origin), name="origin"))
        layout.addStretch(1)
        layout.addLayout(self.button_row())


class ProgressDialog(QDialog):
    """Signing progress with Cancel, then the batch's result in the same window."""

    cancel_requested = Signal()

    def __init__(self, language: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.language = language
        self.setWindowTitle(t("progress_title", language))
        layout = QVBoxLayout(self)
        self.heading = label(t("progress_title", language), bold=True, scale=1.25)
        self.message = label(t("progress_starting", language), name="message")
        self.detail = label("", name="detail")
        self.detail.setVisible(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the first chunk
        self.button = QPushButton(t("cancel_signing", language))
        self.button.setObjectName("progress_button")
        self.button.setDefault(True)
        self.button.clicked.connect(self._clicked)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.button)
        layout.addWidget(self.heading)
        layout.addWidget(self.message)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail)
        layout.addStretch(1)
        layout.addLayout(row)
        self.finished_outcome: BatchOutcome | None = None
        self._cancelling = False

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_to_text(self, DIALOG_MIN_WIDTH, exact=True)

    def set_progress(self, signed: int, total: int) -> None:
        if self.finished_outcome is not None:
            return
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(signed)
        if not self._cancelling:
            self.message.setText(t("dialogs.progress", self.language, signed=signed, total=total))

    def _clicked(self) -> None:
        if self.finished_outcome is not None:
            self.accept()
            return
        self._cancelling = True
        self.button.setEnabled(False)
        self.message.setText(t("progress_stopping", self.language))
        self.cancel_requested.emit()

    def show_outcome(self, outcome: BatchOutcome, pin_after: PinStatus | None = None) -> None:
        """Replaces the progress with the result; the officer closes it."""
        self.finished_outcome = outcome
        self.bar.setRange(0, max(outcome.total, 1))
        self.bar.setValue(outcome.signed)
        ok = outcome.error is None
        self.heading.setText(t("result_ok_title" if ok else "result_error_title", self.language))
        self.setWindowTitle(self.heading.text())
        self.message.setText(outcome_text(outcome, self.language))
        detail = outcome_detail(outcome, pin_after, self.language)
        self.detail.setText(detail)
        self.detail.setVisible(bool(detail))
        if not ok:
            self.detail.setStyleSheet("color: #b00020;")
        self.button.setText(t("close", self.language))
        self.button.setEnabled(True)
        if self.isVisible():
            fit_to_text(self, DIALOG_MIN_WIDTH)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.finished_outcome is None and not self._cancelling:
            self._clicked()  # closing the window during a batch means Cancel
        super().closeEvent(event)


def outcome_text(outcome: BatchOutcome, language: str) -> str:
    if outcome.error is None:
        return t(
            "dialogs.finished_ok",
            language,
            batch_id=outcome.batch_id,
            signed=outcome.signed,
            total=outcome.total,
        )
    return t(
        "dialogs.finished_error",
        language,
        batch_id=outcome.batch_id,
        signed=outcome.signed,
        total=outcome.total,
        error=tr(f"errors.{outcome.error.lower()}", language, signed=outcome.signed),
    )


def outcome_detail(outcome: BatchOutcome, pin_after: PinStatus | None, language: str) -> str:
    """After a wrong PIN: how many tries remain (as far as the token tells), no auto retry."""
    if outcome.error is ErrorCode.PIN_LOCKED:
        return t("dialogs.pin_locked", language)
    if outcome.error is not ErrorCode.PIN_INCORRECT:
        return ""
    if pin_after is not None and pin_after.locked:
        tries = t("dialogs.pin_locked", language)
    elif pin_after is not None and pin_after.final_try:
        tries = t("pin_wrong_final_try", language)
    else:
        tries = t("pin_wrong_unknown", language)
    return f"{tries}\n{t('pin_no_retry', language)}"


class PairingDialog(_GuardedQuestion):
    """A page from an origin that is not configured: allow it, then confirm its platform key.

    Step 1 shows the origin; Allow emits ``allowed`` (the caller fetches the platform's
    manifest key over HTTPS) and the dialog waits. Step 2 (``show_fingerprint``) shows the key's
    fingerprint to compare with the one IT gave; Confirm accepts the dialog. ``show_error`` ends
    the pairing with the reason.
    """

    allowed = Signal()

    def __init__(self, origin: str, language: str, parent: QWidget | None = None) -> None:
        super().__init__(language, parent)
        self.origin = origin
        self.fingerprint: str | None = None
        self.fetched: object = None  # what the app fetched (kyso.agent.pairing.FetchedKey)
        self.setWindowTitle(t("pairing_title", language))
        self.approve_button.setText(t("pairing_allow", language))
        layout = QVBoxLayout(self)
        layout.addWidget(label(t("pairing_title", language), bold=True, scale=1.25))
        self.message = label(t("pairing_origin", language, origin=origin), name="message")
        self.fingerprint_label = label("", name="fingerprint")
        self.fingerprint_label.setStyleSheet("font-family: monospace; font-weight: bold;")
        self.fingerprint_label.setVisible(False)
        layout.addWidget(self.message)
        layout.addWidget(self.fingerprint_label)
        layout.addStretch(1)
        layout.addLayout(self.button_row())
        self._step = 1

    @property
    def step(self) -> int:
        return self._step

    def can_approve(self) -> bool:
        return super().can_approve() and self._step in (1, 2)

    def _approve_clicked(self) -> None:
        if not self.can_approve():
            return
        if self._step == 1:
            self._step = 0  # waiting for the key
            self.message.setText(t("pairing_fetching", self.language, origin=self.origin))
            self._update_approve()
            self.allowed.emit()
        else:
            self.accept()

    def show_fingerprint(self, fingerprint: str) -> None:
        if self._step != 0:
            return  # only the answer to this dialog's own Allow, while it waits for it
        self.fingerprint = fingerprint
        self._step = 2
        self.message.setText(t("pairing_compare", self.language, origin=self.origin))
        self.fingerprint_label.setText(format_fingerprint(fingerprint))
        self.fingerprint_label.setVisible(True)
        self.approve_button.setText(t("pairing_confirm", self.language))
        if self.isVisible():
            fit_to_text(self, DIALOG_MIN_WIDTH)
        self._restart_delay()

    def show_error(self, text: str) -> None:
        self._step = 3
        self.message.setText(text)
        self.message.setStyleSheet("color: #b00020;")
        self.fingerprint_label.setVisible(False)
        self.approve_button.setVisible(False)
        self.cancel_button.setText(t("close", self.language))


def format_fingerprint(fingerprint: str) -> str:
    """64 hex digits in groups of four, two lines: easy to compare aloud."""
    groups = [fingerprint[i : i + 4].upper() for i in range(0, len(fingerprint), 4)]
    half = (len(groups) + 1) // 2
    return " ".join(groups[:half]) + "\n" + " ".join(groups[half:])


class _FittedDialog(QDialog):
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_to_text(self, DIALOG_MIN_WIDTH, exact=True)


class AboutDialog(_FittedDialog):
    def __init__(self, language: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from PySide6 import __version__ as pyside_version

        self.setWindowTitle(t("about_title", language))
        layout = QVBoxLayout(self)
        layout.addWidget(label(t("app_name", language), bold=True, scale=1.25))
        layout.addWidget(
            label(t("about_text", language, version=__version__, qt=pyside_version), name="about")
        )
        close = QPushButton(t("close", language))
        close.setDefault(True)
        close.clicked.connect(self.accept)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(close)
        layout.addLayout(row)


def message_dialog(title: str, text: str, language: str, parent: QWidget | None = None) -> QDialog:
    """A plain message with a Close button (errors at start, copied diagnostics, ...)."""
    dialog = _FittedDialog(parent)
    dialog.setWindowTitle(title)
    layout = QVBoxLayout(dialog)
    layout.addWidget(label(title, bold=True))
    layout.addWidget(label(text, name="message"))
    close = QPushButton(t("close", language))
    close.setDefault(True)
    close.clicked.connect(dialog.accept)
    row = QHBoxLayout()
    row.addStretch(1)
    row.addWidget(close)
    layout.addLayout(row)
    return dialog


__all__ = [
    "APPROVE_DELAY_MS",
    "AboutDialog",
    "ConsentDialog",
    "OriginDialog",
    "PairingDialog",
    "ProgressDialog",
    "format_fingerprint",
    "message_dialog",
    "outcome_text",
    "pin_state_text",
]
