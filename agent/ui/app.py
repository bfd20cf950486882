"""The desktop app: ``kyso-agent`` without ``--headless``.

Threads: Qt owns the main thread (window, tray, dialogs); the websockets server and the service
run on the asyncio loop of a ``ServerThread``; PKCS#11 calls run on the token's own worker
thread. ``QtUserInterface`` carries the service's questions to the Qt thread and the answers
back; ``DesktopApp`` is the Qt side (the ``Presenter``) that owns the dialogs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

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
from kyso.agent.diagnostics import diagnostics_text
from kyso.agent.logs import log_path, setup_logging
from kyso.agent.pairing import FetchedKey, PairingError, PairingManager, PairingRequest
from kyso.agent.protocol import ErrorCode
from kyso.agent.service import BatchOutcome, ConsentRequest
from kyso.agent.settings import SettingsError, SettingsStore, UserSettings
from kyso.agent.token import model as tm
from kyso.agent.ui.bridge import QtUserInterface, Reply
from kyso.agent.ui.collector import GuiThreadCollector
from kyso.agent.ui.controller import (
    DRIVER_TIMEOUT_SECONDS,
    HOTPLUG_SECONDS,
    SHUTDOWN_SECONDS,
    AgentController,
)
from kyso.agent.ui.dialogs import (
    AboutDialog,
    ConsentDialog,
    OriginDialog,
    PairingDialog,
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
    _pairing_requested = Signal(object)  # PairingRequest | None, from the asyncio thread
    # (dialog, FetchedKey | PairingError), from the fetch thread: the dialog that asked for it
    _key_fetched = Signal(object)
    _keyring_done = Signal(object)  # (done, PairingError | None), from a keyring thread

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
        pairing: PairingManager | None = None,
        settings_store: SettingsStore | None = None,
        driver_timeout: float = DRIVER_TIMEOUT_SECONDS,
        load_token: Callable[[], tm.Token] | None = None,
    ) -> None:
        super().__init__()
        self.language = language
        self.pairing = pairing
        self.settings_store = settings_store
        self.ui = QtUserInterface(self)
        self.controller = AgentController(
            config,
            token,
            self.ui,
            module=module,
            module_error=module_error,
            port=port,
            hotplug_interval=hotplug_interval,
            pairing=pairing,
            driver_timeout=driver_timeout,
            load_token=load_token,
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
        self.pairing_dialog: PairingDialog | None = None
        self._fetcher: threading.Thread | None = None
        self._pairing_requested.connect(self.ask_pairing, Qt.ConnectionType.QueuedConnection)
        self._key_fetched.connect(self._show_fetched, Qt.ConnectionType.QueuedConnection)
        self._keyring_done.connect(self._keyring_finished, Qt.ConnectionType.QueuedConnection)
        self._keyring_jobs: list[threading.Thread] = []
        self._remove_pairing_listener: Callable[[], None] | None = None
        if pairing is not None:
            self._remove_pairing_listener = pairing.add_pairing_listener(
                self._pairing_requested.emit
            )

        w = self.window
        w.start_stop.connect(self.toggle)
        w.cancel_start.connect(self.controller.cancel_start)
        w.about_requested.connect(self.show_about)
        w.logs_requested.connect(self.open_logs)
        w.diagnostics_requested.connect(self.copy_diagnostics)
        w.settings_requested.connect(self.show_settings)
        w.quit_requested.connect(self.quit)

    # --- actions ---------------------------------------------------------------------------

    def toggle(self) -> None:
        if self.controller.waiting:
            self.controller.cancel_start()
        elif self.controller.listening:
            self.stop()
        else:
            self.controller.start()

    def stop(self) -> None:
        self.withdraw_question()  # a dialog left open would keep the server from closing
        self.controller.stop()

    def quit(self) -> None:
        # Gone from the screen at once, even if a stuck driver makes the shutdown wait.
        self.window.hide()
        if self.tray is not None:
            self.tray.hide()
        self.shutdown()
        QApplication.quit()

    def shutdown(self) -> None:
        self.withdraw_question()
        if self._remove_pairing_listener is not None:
            self._remove_pairing_listener()
            self._remove_pairing_listener = None
        if self.pairing_dialog is not None:
            self.pairing_dialog.close()
        self.controller.shutdown()
        if self._fetcher is not None:
            self._fetcher.join(timeout=30)
        if self._pin_reader is not None:
            self._pin_reader.join(timeout=10)
        for job in self._keyring_jobs:  # a keyring that never answers keeps only its thread
            job.join(timeout=5)
        if self.tray is not None:
            self.tray.hide()

    def show_about(self) -> None:
        self.about = AboutDialog(self.language, self.window)
        self.about.show()

    def open_logs(self) -> None:
        folder = log_path(self.controller.config.state_dir).parent
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def copy_diagnostics(self) -> str:
        text = self.diagnostics()
        QGuiApplication.clipboard().setText(text)
        self.message = message_dialog(
            t("copy_diagnostics", self.language),
            t("diagnostics_copied", self.language),
            self.language,
            self.window,
        )
        self.message.show()
        return text

    def diagnostics(self) -> str:
        """What the officer sends to IT: versions, module, token and certificate; no secrets."""
        c = self.controller
        origins = None
        if self.pairing is not None:
            origins = [(o.origin, o.fingerprint, o.machine) for o in self.pairing.origins()]
        return diagnostics_text(
            c.config,
            module=c.module,
            tokens=c.snapshot.tokens,
            certificates=c.snapshot.certificates,
            origins=origins,
            listening_port=c.listening_port,
            language=self.language,
        )

    def settings_values(self) -> SettingsValues:
        config = self.controller.config
        store = self.settings_store
        if store is not None:
            current = store.current()
            return SettingsValues(
                module=current.pkcs11_module,
                module_locked=store.is_locked("pkcs11_module"),
                port=current.port,
                port_locked=store.is_locked("port"),
                language=current.language,
                start_at_login=current.start_at_login,
                listen_at_launch=current.listen_at_launch,
            )
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
        if self.pairing is not None:
            return [OriginRow(o.origin, o.fingerprint, o.machine) for o in self.pairing.origins()]
        return [
            OriginRow(o.origin, o.manifest_key_fingerprint, machine=True)
            for o in self.controller.config.origins
        ]

    def _remove_origin(self, origin: str, done: Callable[[str | None], None]) -> None:
        pairing = self.pairing
        if pairing is None:
            return
        self._in_keyring(
            lambda: pairing.remove(origin),
            lambda error: done(error.text.get(self.language) if error is not None else None),
        )

    def _in_keyring(
        self, job: Callable[[], object], done: Callable[[PairingError | None], None]
    ) -> None:
        """Runs a keyring write off the Qt thread; ``done(error)`` runs on the Qt thread.

        A keyring may wait for an unlock prompt or hang: the window keeps answering meanwhile.
        """
        emit = self._keyring_done.emit

        def run() -> None:
            error: PairingError | None = None
            try:
                job()
            except PairingError as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the app is gone (Quit)
                emit((done, error))

        thread = threading.Thread(target=run, name="kyso-keyring", daemon=True)
        self._keyring_jobs = [t for t in self._keyring_jobs if t.is_alive()] + [thread]
        thread.start()

    def _keyring_finished(
        self, payload: tuple[Callable[[PairingError | None], None], PairingError | None]
    ) -> None:
        done, error = payload
        done(error)

    def show_settings(self) -> SettingsDialog:
        store = self.settings_store
        modules = store.modules() if store is not None else discover_modules()
        dialog = SettingsDialog(
            self.settings_values(),
            modules,
            self.origin_rows(),
            self._remove_origin if self.pairing is not None else None,
            self.language,
            self.window,
        )
        dialog.accepted.connect(lambda: self.apply_settings(dialog.values()))
        self.settings = dialog
        dialog.show()
        return dialog

    def apply_settings(self, values: SettingsValues) -> str | None:
        """Saves through the core's store; returns the error shown to the officer, if any."""
        store = self.settings_store
        if store is not None:
            settings = UserSettings(
                language=values.language,
                start_at_login=values.start_at_login,
                listen_at_launch=values.listen_at_launch,
                port=values.port,
                pkcs11_module=values.module,
            )
            try:
                self.controller.config = store.save(settings)  # port and module: next Start
            except (SettingsError, ConfigError) as exc:
                error = exc.text.get(self.language)
                self.message = message_dialog(
                    t("settings_title", self.language), error, self.language, self.window
                )
                self.message.show()
                return error
        if values.language != self.language:
            self.set_language(values.language)
        return None

    # --- pairing a new origin (Qt main thread) ----------------------------------------------

    def ask_pairing(self, request: PairingRequest | None) -> None:
        if request is None:  # answered or dropped
            return
        if self.pairing_dialog is not None and self.pairing_dialog.isVisible():
            return  # one at a time
        dialog = PairingDialog(request.origin, self.language)
        self.pairing_dialog = dialog
        dialog.allowed.connect(lambda: self._fetch_key(dialog))
        dialog.finished.connect(lambda result: self._pairing_finished(dialog, result))
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _fetch_key(self, dialog: PairingDialog) -> None:
        pairing, emit, origin = self.pairing, self._key_fetched.emit, dialog.origin
        if pairing is None:
            return

        def fetch() -> None:  # a blocking HTTPS request: never on the Qt or asyncio thread
            try:
                emit((dialog, pairing.fetch_key(origin)))
            except PairingError as exc:
                emit((dialog, exc))

        self._fetcher = threading.Thread(target=fetch, name="kyso-pairing-fetch", daemon=True)
        self._fetcher.start()

    def _show_fetched(self, payload: tuple[PairingDialog, FetchedKey | PairingError]) -> None:
        asked, result = payload
        dialog = self.pairing_dialog
        # A key arrives only in the dialog that asked for it, while it waits for it: a late
        # answer for a page the officer already cancelled must never land under another.
        if dialog is None or dialog is not asked or dialog.step != 0:
            return
        if isinstance(result, PairingError):
            dialog.show_error(result.text.get(self.language))
        elif result.origin == dialog.origin:
            dialog.fetched = result
            dialog.show_fingerprint(result.fingerprint)

    def _pairing_finished(self, dialog: PairingDialog, result: int) -> None:
        pairing = self.pairing
        if pairing is None:
            return
        fetched = dialog.fetched
        if (
            result == QDialog.DialogCode.Accepted
            and isinstance(fetched, FetchedKey)
            and fetched.origin == dialog.origin
        ):
            self._in_keyring(lambda: pairing.approve(fetched), self._approval_saved)
        else:
            pairing.decline(dialog.origin)
        if self.pairing_dialog is dialog:
            self.pairing_dialog = None

    def _approval_saved(self, error: PairingError | None) -> None:
        if error is not None:
            self.message = message_dialog(
                t("pairing_title", self.language), error.text.get(self.language), self.language
            )
            self.message.show()

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


def main(args: argparse.Namespace) -> int:
    """Runs the desktop app until Quit; the second launch only shows the first one's window."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Kyso")
    collector = GuiThreadCollector(app)  # cycles collected on this thread only
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
    setup_logging(config.state_dir)

    if args.autostart and not config.start_at_login:
        return EXIT_OK  # started by a login entry, but the officer turned that option off
    from kyso.agent.autostart import for_this_system
    from kyso.agent.pairing import PairingManager

    desktop = launch(
        config,
        language,
        pairing=PairingManager(config),
        settings_store=SettingsStore(config, autostart=for_this_system()),
    )
    instance.activated.connect(desktop.window.show_and_raise)
    code = EXIT_OK
    try:
        code = app.exec()
    finally:
        desktop.shutdown()
        instance.close()
        collector.stop()
    if not desktop.controller.release_token(SHUTDOWN_SECONDS):
        # The driver is stuck inside a call (C_Initialize included): finalising it would wait
        # forever, and so would the interpreter's exit (it joins the token's worker). Quit
        # means quit.
        log.error("the USB token driver does not answer: ending without finalising it")
        logging.shutdown()
        os._exit(code)
    return code


def _load_pkcs11(module: str) -> tm.Token:
    from kyso.agent.token.pkcs11_token import Pkcs11Token

    return Pkcs11Token(module)


def launch(
    config: AgentConfig,
    language: str,
    *,
    resolve: Callable[[AgentConfig], str] = resolve_module,
    load_token: Callable[[str], tm.Token] = _load_pkcs11,
    **options: Any,
) -> DesktopApp:
    """The window on screen first, the token's driver loaded behind it (issue 18).

    A driver whose C_Initialize (or first slot list) hangs cannot keep the window from showing
    or answering: the load runs on its own thread, the window says it waits for the driver, with
    Cancel, and gives up after the controller's ``driver_timeout``. ``options`` go to
    ``DesktopApp`` (tests pass ``use_tray``, ``port``, ``driver_timeout`` ...).
    """
    module: str | None = None
    module_error: i18n.Text | None = None
    try:
        module = resolve(config)
    except ConfigError as exc:
        module_error = exc.text
    chosen = module
    desktop = DesktopApp(
        config,
        None,
        language=language,
        module=module,
        module_error=module_error,
        load_token=(lambda: load_token(chosen)) if chosen is not None else None,
        **options,
    )
    desktop.window.show()
    if config.listen_at_launch:
        desktop.controller.start()
    return desktop
