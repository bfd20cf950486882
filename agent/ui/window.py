"""The Start window and the tray icon.

The procedure officers follow says: open the plugin and press Start. So the window is mostly one
large Start/Stop button and four plain lines: listening or not, the token, the certificate that
will sign, and the last batch. The tray icon repeats the state and carries the menu; where the
desktop has no tray, the window has the same actions as buttons and closing it quits.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QFont, QShowEvent
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QMenu,
    QPushButton,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from kyso.agent.expiry import expiry_warning
from kyso.agent.i18n import tr
from kyso.agent.ui.controller import AgentController, TrayState
from kyso.agent.ui.icons import status_icon
from kyso.agent.ui.widgets import fit_to_text, keep_buttons_whole, label, short_subject, t

ROWS = ("status", "token", "certificate", "last_batch")
WINDOW_MIN_WIDTH = 560


def status_text(controller: AgentController, language: str) -> str:
    if controller.waiting:
        return t("status_waiting", language)
    if not controller.listening:
        return t("status_stopped", language)
    if controller.signing:
        return t("status_signing", language)
    return t("status_listening", language, port=controller.listening_port)


def token_text(controller: AgentController, language: str) -> str:
    if controller.token is None:
        if controller.loading:
            return t("token_loading", language)
        error = controller.module_error
        return error.get(language) if error is not None else t("token_no_driver", language)
    snapshot = controller.snapshot
    if not snapshot.present:
        return t("token_missing", language)
    return "; ".join(
        t("token_present", language, label=info.label, manufacturer=info.manufacturer)
        for info in snapshot.tokens
    )


def certificate_text(controller: AgentController, language: str) -> str:
    snapshot = controller.snapshot
    if not snapshot.present:
        return "—"
    usable = snapshot.signing_certificates
    if not usable:
        return t("certificate_none", language)
    lines: list[str] = []
    for cert in usable:
        lines.append(
            t(
                "certificate_line",
                language,
                subject=short_subject(cert.subject),
                kind=f"{cert.key_type}-{cert.key_size}",
                not_after=cert.not_after.date(),
            )
        )
        warning = expiry_warning(cert.not_after, language)
        if warning:
            lines.append(warning)
    return "\n".join(lines)


def last_batch_text(controller: AgentController, language: str) -> str:
    outcome = controller.last_outcome
    if outcome is None:
        return t("last_batch_none", language)
    when = format_time(outcome.finished_at)
    if outcome.error is None:
        result = t("result_ok", language)
    else:
        reason = tr(f"errors.{outcome.error.lower()}", language, signed=outcome.signed)
        result = t("result_error", language, reason=reason)
    return t(
        "last_batch_line",
        language,
        origin=outcome.origin,
        signed=outcome.signed,
        total=outcome.total,
        time=when,
        result=result,
    )


class MainWindow(QWidget):
    """The Start window. Emits what the officer asked for; the app decides what it means."""

    start_stop = Signal()
    cancel_start = Signal()
    settings_requested = Signal()
    logs_requested = Signal()
    diagnostics_requested = Signal()
    about_requested = Signal()
    quit_requested = Signal()
    closed = Signal()

    def __init__(self, controller: AgentController, language: str) -> None:
        super().__init__()
        self.controller = controller
        self.language = language
        self.setObjectName("main_window")
        self.setWindowIcon(status_icon(TrayState.LISTENING))

        self.title = label(bold=True, scale=1.4, name="title")
        self.hint = label(name="hint")
        self.start_button = QPushButton()
        self.start_button.setObjectName("start_stop")
        self.start_button.setMinimumHeight(64)
        font = QFont(self.start_button.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.start_button.setFont(font)
        self.start_button.clicked.connect(self.start_stop.emit)

        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        self.captions = {}
        self.values = {}
        for row, name in enumerate(ROWS):
            caption = label(bold=True, wrap=False, name=f"{name}_caption")
            value = label(name=name)
            grid.addWidget(caption, row, 0)
            grid.addWidget(value, row, 1)
            self.captions[name], self.values[name] = caption, value
        # While Start waits for the token's driver: what is going on, and a way out.
        self.waiting = QWidget()
        self.waiting.setObjectName("waiting")
        self.waiting_text = label(name="waiting_text")
        self.cancel_button = QPushButton()
        self.cancel_button.setObjectName("cancel_start")
        self.cancel_button.setAutoDefault(False)
        self.cancel_button.clicked.connect(self.cancel_start.emit)
        waiting_row = QHBoxLayout(self.waiting)
        waiting_row.setContentsMargins(0, 0, 0, 0)
        waiting_row.addWidget(self.waiting_text, 1)
        waiting_row.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignTop)
        self.waiting.setVisible(False)
        self.error = label(name="error")
        self.error.setStyleSheet("color: #b00020;")

        self.settings_button = QPushButton()
        self.logs_button = QPushButton()
        self.diagnostics_button = QPushButton()
        self.about_button = QPushButton()
        self.quit_button = QPushButton()
        for button, signal in (
            (self.settings_button, self.settings_requested),
            (self.logs_button, self.logs_requested),
            (self.diagnostics_button, self.diagnostics_requested),
            (self.about_button, self.about_requested),
            (self.quit_button, self.quit_requested),
        ):
            button.setAutoDefault(False)
            button.clicked.connect(signal.emit)
        actions = QHBoxLayout()
        for button in (self.settings_button, self.logs_button, self.diagnostics_button):
            actions.addWidget(button)
        actions.addStretch(1)
        actions.addWidget(self.about_button)
        actions.addWidget(self.quit_button)

        layout = QVBoxLayout(self)
        layout.setSpacing(12)
        layout.addWidget(self.title)
        layout.addWidget(self.hint)
        layout.addWidget(self.start_button)
        layout.addLayout(grid)
        layout.addWidget(self.waiting)
        layout.addWidget(self.error)
        layout.addStretch(1)
        layout.addLayout(actions)
        keep_buttons_whole(self)

        controller.changed.connect(self.refresh)
        self.set_language(language)

    def set_language(self, language: str) -> None:
        self.language = language
        self.setWindowTitle(t("window_title", language))
        self.title.setText(t("app_name", language))
        self.hint.setText(t("window_hint", language))
        for name in ROWS:
            self.captions[name].setText(t(f"caption_{name}", language))
        self.settings_button.setText(t("menu_settings", language))
        self.logs_button.setText(t("menu_logs", language))
        self.diagnostics_button.setText(t("copy_diagnostics", language))
        self.about_button.setText(t("menu_about", language))
        self.quit_button.setText(t("menu_quit", language))
        self.cancel_button.setText(t("cancel", language))
        self.refresh()

    def refresh(self) -> None:
        c, language = self.controller, self.language
        self.start_button.setText(t("stop" if c.listening else "start", language))
        self.start_button.setEnabled(not c.waiting)
        self.waiting.setVisible(c.waiting)
        if c.waiting:
            seconds = round(c.driver_timeout)
            self.waiting_text.setText(t("driver_waiting_hint", language, seconds=seconds))
        self.values["status"].setText(status_text(c, language))
        self.values["token"].setText(token_text(c, language))
        self.values["certificate"].setText(certificate_text(c, language))
        self.values["last_batch"].setText(last_batch_text(c, language))
        error = c.start_error.get(language) if c.start_error is not None else ""
        self.error.setText(error)
        self.error.setVisible(bool(error))
        self.setWindowIcon(status_icon(c.status))
        if self.isVisible():
            fit_to_text(self, WINDOW_MIN_WIDTH)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_to_text(self, WINDOW_MIN_WIDTH, exact=True)

    def show_and_raise(self) -> None:
        self.show()
        self.setWindowState(self.windowState() & ~self.windowState().WindowMinimized)
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        super().closeEvent(event)
        self.closed.emit()


class Tray(QSystemTrayIcon):
    """The tray icon: the state at a glance, and the menu."""

    def __init__(self, controller: AgentController, window: MainWindow) -> None:
        super().__init__()
        self.controller = controller
        self.window = window
        self.menu = QMenu()
        self.start_action = QAction(self.menu)
        self.open_action = QAction(self.menu)
        self.settings_action = QAction(self.menu)
        self.logs_action = QAction(self.menu)
        self.about_action = QAction(self.menu)
        self.quit_action = QAction(self.menu)
        self.start_action.triggered.connect(window.start_stop.emit)
        self.open_action.triggered.connect(window.show_and_raise)
        self.settings_action.triggered.connect(window.settings_requested.emit)
        self.logs_action.triggered.connect(window.logs_requested.emit)
        self.about_action.triggered.connect(window.about_requested.emit)
        self.quit_action.triggered.connect(window.quit_requested.emit)
        self.menu.addAction(self.start_action)
        self.menu.addAction(self.open_action)
        self.menu.addSeparator()
        self.menu.addAction(self.settings_action)
        self.menu.addAction(self.logs_action)
        self.menu.addAction(self.about_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.setContextMenu(self.menu)
        self.activated.connect(self._activated)
        controller.changed.connect(self.refresh)
        self.refresh()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.window.show_and_raise()

    def refresh(self) -> None:
        language = self.window.language
        c = self.controller
        self.start_action.setText(t("stop" if c.listening else "start", language))
        self.start_action.setEnabled(not c.waiting)
        self.open_action.setText(t("menu_open", language))
        self.settings_action.setText(t("menu_settings", language))
        self.logs_action.setText(t("menu_logs", language))
        self.about_action.setText(t("menu_about", language))
        self.quit_action.setText(t("menu_quit", language))
        self.setIcon(status_icon(c.status))
        self.setToolTip(f"{t('app_name', language)} — {t(f'tray_{c.status.value}', language)}")


def format_time(when: datetime) -> str:
    return when.astimezone().strftime("%H:%M %d/%m/%Y")
