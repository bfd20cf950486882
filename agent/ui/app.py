"""The desktop app: ``kyso-agent`` without ``--headless``.

Threads: Qt owns the main thread (window, tray, dialogs); the websockets server and the service
run on the asyncio loop of a ``ServerThread``; PKCS#11 calls run on the token's own worker
thread. ``QtUserInterface`` carries the service's questions to the Qt thread and the answers
back; ``DesktopApp`` is the Qt side (the ``Presenter``) that owns the dialogs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QApplication, QDialog, QSystemTrayIcon

from kyso.agent import i18n
from kyso.agent.config import (
    AgentConfig,
    ConfigError,
    discover_modules,
    load_config,
    resolve_module,
)
from kyso.agent.protocol import ErrorCode
from kyso.agent.service import BatchOutcome, ConsentRequest
from kyso.agent.token import model as tm
from kyso.agent.ui.bridge import QtUserInterface, Reply
from kyso.agent.ui.controller import HOTPLUG_SECONDS, AgentController
from kyso.agent.ui.dialogs import (
    AboutDialog,
    ConsentDialog,
    OriginDialog,
    ProgressDialog,
    message_dialog,
)
from kyso.agent.ui.settings import OriginRow, SettingsDialog, SettingsValues
from kyso.agent.ui.single_instance import SingleInstance, activate_running, instance_name
from kyso.agent.ui.widgets import t
from kyso.agent.ui.window import MainWindow, Tray

log = logging.getLogger(__name__)

EXIT_OK, EXIT_CONFIG = 0, 2


class DesktopApp(QObject):
    """The window, the tray and the dialogs; answers the service's questions (Presenter)."""

    _pin_status_read = Signal(object)

    def __init__(
        self,
        config: AgentConfig,
        token: tm.Token | None,
        *,
        language: str,
        module: str | None = None,
        module_error: i18n.Text | None = None,
        port: int | None = None,
        use_tray: bool | None = None,
        hotplug_interval: float = HOTPLUG_SECONDS,
    ) -> None:
        super().__init__()
        self.language = language
        self.ui = QtUserInterface(self)
        self.controller = AgentController(
            config,
            token,
            self.ui,
            module=module,
            module_error=module_error,
            port=port,
            hotplug_interval=hotplug_interval,
        )
        self.window = MainWindow(self.controller, language)
        if use_tray is None:
            use_tray = QSystemTrayIcon.isSystemTrayAvailable()
        self.tray: Tray | None = Tray(self.controller, self.window) if use_tray else None
        if self.tray is not None:
            self.tray.show()
        # Without a tray, closing the window is quitting; with one, the app stays in the tray.
        QApplication.setQuitOnLastWindowClosed(self.tray is None)

        self.question: QDialog | None = None  # the open origin or consent dialog
        self._question_reply: Callable[[], None] | None = None  # answers it negatively
        self.progress: ProgressDialog | None = None
        self._consent: ConsentRequest | None = None
        self.about: AboutDialog | None = None
        self.settings: SettingsDialog | None = None
        self.message: QDialog | None = None
        self._pin_status_read.connect(self._show_pin_after, Qt.ConnectionType.QueuedConnection)
        self._pin_reader: threading.Thread | None = None

        w = self.window
        w.start_stop.connect(self.toggle)
        w.about_requested.connect(self.show_about)
        w.logs_requested.connect(self.open_logs)
        w.diagnostics_requested.connect(self.copy_diagnostics)
        w.settings_requested.connect(self.show_settings)
        w.quit_requested.connect(self.quit)

    # --- actions ---------------------------------------------------------------------------

    def toggle(self) -> None:
        if self.controller.listening:
            self.stop()
        else:
            self.controller.start()

    def stop(self) -> None:
        self.withdraw_question()  # a dialog left open would keep the server from closing
        self.controller.stop()

    def quit(self) -> None:
        self.shutdown()
        QApplication.quit()

    def shutdown(self) -> None:
        self.withdraw_question()
        self.controller.shutdown()
        if self._pin_reader is not None:
            self._pin_reader.join(timeout=10)
        if self.tray is not None:
            self.tray.hide()

    def show_about(self) -> None:
        self.about = AboutDialog(self.language, self.window)
        self.about.show()

    def open_logs(self) -> None:
        folder = self.controller.config.state_dir
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def copy_diagnostics(self) -> str:
        text = diagnostics_text(self.controller)
        QGuiApplication.clipboard().setText(text)
        self.message = message_dialog(
            t("copy_diagnostics", self.language),
            t("diagnostics_copied", self.language),
            self.language,
            self.window,
        )
        self.message.show()
        return text

    def settings_values(self) -> SettingsValues:
        config = self.controller.config
        return SettingsValues(
            module=config.pkcs11_module,
            # The user file may not hold a module or a port: any value is the administrator's.
            module_locked=config.pkcs11_module is not None,
            port=config.port,
            port_locked=True,
            language=self.language,
            start_at_login=config.start_at_login,
            listen_at_launch=config.listen_at_launch,
        )

    def origin_rows(self) -> list[OriginRow]:
        return [
            OriginRow(o.origin, o.manifest_key_fingerprint, machine=True)
            for o in self.controller.config.origins
        ]

    def show_settings(self) -> SettingsDialog:
        self.settings = SettingsDialog(
            self.settings_values(),
            discover_modules(),
            self.origin_rows(),
            None,
            self.language,
            self.window,
        )
        self.settings.accepted.connect(lambda: self.apply_settings(self.settings.values()))
        self.settings.show()
        return self.settings

    def apply_settings(self, values: SettingsValues) -> None:
        if values.language != self.language:
            self.set_language(values.language)

    def set_language(self, language: str) -> None:
        self.language = language
        self.window.set_language(language)
        if self.tray is not None:
            self.tray.refresh()

    # --- Presenter: the service's questions (Qt main thread) --------------------------------

    def _open_question(self, dialog: QDialog, answer: Callable[[bool], None]) -> None:
        self.withdraw_question()
        self.question = dialog
        done = False

        def finish(accepted: bool) -> None:
            nonlocal done
            if done:
                return
            done = True
            if self.question is dialog:
                self.question, self._question_reply = None, None
            answer(accepted)

        dialog.finished.connect(lambda result: finish(result == QDialog.DialogCode.Accepted))
        self._question_reply = lambda: finish(False)
        dialog.setWindowModality(Qt.WindowModality.NonModal)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def ask_origin(self, origin: str, reply: Reply[bool]) -> None:
        self._open_question(OriginDialog(origin, self.language), reply)

    def ask_consent(self, request: ConsentRequest, reply: Reply[str | None]) -> None:
        self.controller.set_signing(True)
        self._consent = request
        dialog = ConsentDialog(request, self.language)

        def answer(accepted: bool) -> None:
            if not accepted:
                dialog.pin_edit.clear()
                reply(None)
                return
            pin = dialog.take_pin()
            self._open_progress()
            reply(pin)

        self._open_question(dialog, answer)

    def withdraw_question(self) -> None:
        close, self._question_reply = self._question_reply, None
        dialog, self.question = self.question, None
        if close is not None:
            close()
        if dialog is not None:
            dialog.close()

    def _open_progress(self) -> None:
        if self.progress is not None:
            self.progress.close()
        self.progress = ProgressDialog(self.language)
        self.progress.cancel_requested.connect(self.controller.cancel_signing)
        self.progress.show()
        self.progress.raise_()

    def show_progress(self, signed: int, total: int) -> None:
        if self.progress is not None:
            self.progress.set_progress(signed, total)

    def show_outcome(self, outcome: BatchOutcome) -> None:
        self.controller.set_signing(False)
        self.controller.record_outcome(outcome)
        if self.progress is not None and self.progress.finished_outcome is None:
            self.progress.show_outcome(outcome)
            if outcome.error is ErrorCode.PIN_INCORRECT:
                self._read_pin_status_after()
        elif outcome.error is ErrorCode.PIN_LOCKED:
            self.message = message_dialog(
                t("result_error_title", self.language),
                i18n.tr("dialogs.pin_locked", self.language),
                self.language,
            )
            self.message.show()
        self._consent = None

    def _read_pin_status_after(self) -> None:
        """After a wrong PIN, the token's flags say whether the next try is the last."""
        token, request = self.controller.token, self._consent
        if token is None or request is None:
            return
        emit = self._pin_status_read.emit

        def read() -> None:
            try:
                emit(token.pin_status(request.certificate.token))
            except tm.TokenError:
                log.info("could not read the PIN flags after a wrong PIN")

        self._pin_reader = threading.Thread(target=read, name="kyso-pin-status", daemon=True)
        self._pin_reader.start()

    def _show_pin_after(self, status: tm.PinStatus) -> None:
        progress = self.progress
        if progress is not None and progress.finished_outcome is not None:
            progress.show_outcome(progress.finished_outcome, status)


def diagnostics_text(controller: AgentController) -> str:
    """What the officer sends to IT: versions, module, token and certificate; no secrets."""
    from PySide6 import __version__ as pyside_version

    from kyso.agent import __version__

    snapshot = controller.snapshot
    lines = [
        f"kyso-agent {__version__}; Python {sys.version.split()[0]}; PySide6 {pyside_version}",
        f"platform: {sys.platform}",
        f"PKCS#11 module: {controller.module or '-'}",
        f"listening: {controller.listening_port or 'no'}",
        f"origins: {', '.join(o.origin for o in controller.config.origins) or '-'}",
    ]
    if controller.module_error is not None:
        lines.append(f"module error: {controller.module_error.en}")
    for info in snapshot.tokens:
        lines.append(f"token: {info.label} ({info.manufacturer} {info.model}) serial {info.serial}")
    for cert in snapshot.certificates:
        lines.append(
            f"certificate: {cert.subject}; serial {cert.serial_hex}; "
            f"{cert.key_type}-{cert.key_size}; until {cert.not_after.isoformat()}"
        )
    outcome = controller.last_outcome
    if outcome is not None:
        lines.append(
            f"last batch: {outcome.origin} {outcome.signed}/{outcome.total} "
            f"{outcome.error or 'ok'} at {outcome.finished_at.isoformat()}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Runs the desktop app until Quit; the second launch only shows the first one's window."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Kyso")
    name = instance_name(extra=str(args.user_config or ""))
    if activate_running(name):
        return EXIT_OK
    instance = SingleInstance(name)
    instance.listen()

    language = args.language or i18n.DEFAULT_LANGUAGE
    try:
        config = load_config(args.config, args.user_config, state_dir=args.state_dir)
    except ConfigError as exc:
        message_dialog(t("config_error_title", language), exc.text.get(language), language).exec()
        return EXIT_CONFIG
    language = args.language or config.language

    token: tm.Token | None = None
    module: str | None = None
    module_error: i18n.Text | None = None
    try:
        module = resolve_module(config)
        from kyso.agent.token.pkcs11_token import Pkcs11Token

        token = Pkcs11Token(module)
    except ConfigError as exc:
        module_error = exc.text
    except tm.ModuleLoadError as exc:
        module_error = i18n.text("cli.module_load_failed", module=module, error=exc)

    desktop = DesktopApp(config, token, language=language, module=module, module_error=module_error)
    instance.activated.connect(desktop.window.show_and_raise)
    desktop.window.show()
    if config.listen_at_launch:
        desktop.controller.start()
    try:
        return app.exec()
    finally:
        desktop.shutdown()
        instance.close()
        if token is not None:
            token.close()
