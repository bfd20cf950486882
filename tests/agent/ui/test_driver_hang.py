"""The window never freezes (issue 18): a USB token driver that hangs, and a keyring that does
not answer, leave the window repainting and answering clicks, the other pages connecting, and
nothing running after Quit.

The driver is a real PKCS#11 module built in the test session (tests/support/hanging_pkcs11.c)
whose C_GetSlotList (or, with the other gate, C_Initialize) blocks while the test holds its
gate; the keyring is a real keyring backend whose writes wait until released. The launch tests
go through ``launch``, what ``kyso-agent`` runs after reading its configuration.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from support.hanging_module import BlockingKeyring, Gate
from support.platform_keys import ManifestIssuer
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kyso.agent.config import AgentConfig, AllowedOrigin, key_fingerprint, load_manifest_key
from kyso.agent.i18n import tr
from kyso.agent.pairing import FetchedKey, OriginStore, PairingManager
from kyso.agent.token import library
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.ui.app import DesktopApp, launch
from kyso.agent.ui.controller import SHUTDOWN_SECONDS, TrayState

from .conftest import ORIGIN, start_and_wait

NEW_ORIGIN = "https://tiemchung-moi.example.vn"
WAITING = "Đang chờ trình điều khiển USB token…"


class Liveness(QObject):
    """Proof that the Qt thread runs: a timer asks for a repaint every 50 ms, and the window's
    paint events and the timer's ticks are counted. A child of the widget: it goes with it."""

    def __init__(self, widget: QObject) -> None:
        super().__init__(widget)
        self.paints = 0
        self.ticks = 0
        self._widget = widget
        widget.installEventFilter(self)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(50)

    def _tick(self) -> None:
        self.ticks += 1
        self._widget.update()  # type: ignore[attr-defined]

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._widget and event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False

    def assert_alive_for(self, qtbot: QtBot, ms: int) -> None:
        """Over ``ms`` the timer ticked and the window repainted (half the ideal is plenty)."""
        ticks, paints = self.ticks, self.paints
        qtbot.wait(ms)
        assert self.ticks - ticks >= ms // 100, (self.ticks - ticks, ms)
        assert self.paints - paints >= ms // 200, (self.paints - paints, ms)


def _new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive()]


@pytest.fixture
def hung(
    hanging_module: Path, gate: Gate, qtbot: QtBot, tmp_path: Path
) -> Iterator[Callable[..., DesktopApp]]:
    """Makes the app on the hanging driver, its gate closed; afterwards, checks that Quit left
    no thread of ours running once the driver answered."""
    before = set(threading.enumerate())
    apps: list[DesktopApp] = []
    # A window that does freeze must fail the test, not hang the suite: the driver answers
    # by itself after 20 s.
    watchdog = threading.Timer(20, gate.release)
    watchdog.start()
    token = Pkcs11Token(str(hanging_module))  # C_Initialize answers; the slot list will not

    def make(**options: object) -> DesktopApp:
        gate.close()
        config = AgentConfig(port=0, state_dir=tmp_path / "state")
        app = DesktopApp(
            config,
            token,
            language="vi",
            port=0,
            use_tray=False,
            hotplug_interval=0.2,
            **options,  # type: ignore[arg-type]
        )
        qtbot.addWidget(app.window)
        app.window.show()
        qtbot.waitExposed(app.window)
        apps.append(app)
        return app

    try:
        yield make
    finally:
        watchdog.cancel()
        gate.release()
        for app in apps:
            assert app.controller.shutdown(timeout=10)
        token.close()
    qtbot.waitUntil(lambda: not _new_threads(before), timeout=10_000)


def test_start_on_a_hung_driver_waits_with_cancel_and_the_window_answers(
    qtbot: QtBot, hung: Callable[..., DesktopApp], gate: Gate
) -> None:
    app = hung()
    window, controller = app.window, app.controller
    live = Liveness(window)
    pressed = time.monotonic()
    qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)
    assert time.monotonic() - pressed < 1  # Start returned: the driver is waited for elsewhere
    assert controller.waiting
    assert controller.status is TrayState.WAITING
    assert window.values["status"].text() == WAITING
    assert window.waiting.isVisibleTo(window)
    assert window.cancel_button.text() == "Hủy"
    assert not window.start_button.isEnabled()

    live.assert_alive_for(qtbot, 1000)
    qtbot.mouseClick(window.about_button, Qt.MouseButton.LeftButton)  # clicks are answered
    assert app.about is not None
    assert app.about.isVisible()
    app.about.close()
    assert controller.waiting  # still waiting for the driver

    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert not controller.waiting
    assert not controller.listening
    assert window.error.text() == tr("ui.driver_cancelled", "vi")
    assert window.start_button.isEnabled()
    assert window.values["status"].text().startswith("Đã dừng")
    assert not window.waiting.isVisibleTo(window)

    # The driver answers late: the start that was given up is stopped, never left listening.
    gate.release()
    qtbot.wait(1500)
    assert not controller.listening
    assert controller.listening_port is None


def test_the_wait_for_a_hung_driver_is_bounded(
    qtbot: QtBot, hung: Callable[..., DesktopApp], gate: Gate
) -> None:
    app = hung(driver_timeout=2.0)
    window, controller = app.window, app.controller
    live = Liveness(window)
    controller.start()
    assert window.values["status"].text() == WAITING
    assert window.waiting_text.text() == tr("ui.driver_waiting_hint", "vi", seconds=2)
    live.assert_alive_for(qtbot, 500)
    qtbot.waitUntil(lambda: not controller.waiting, timeout=5000)
    assert not controller.listening
    assert window.error.text() == tr("ui.driver_timeout", "vi", seconds=2)
    assert window.error.isVisibleTo(window)
    # Once the driver answers again, Start works.
    gate.release()
    assert start_and_wait(qtbot, controller)
    assert controller.status is TrayState.NO_TOKEN  # the hanging module has no token
    assert controller.start_error is None
    qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)  # Stop
    assert not controller.listening


def test_stop_and_quit_do_not_wait_for_a_driver_stuck_mid_listening(
    qtbot: QtBot, hung: Callable[..., DesktopApp], gate: Gate
) -> None:
    app = hung()
    gate.release()
    controller = app.controller
    assert start_and_wait(qtbot, controller)
    gate.close()  # the service's hot-plug poll now hangs inside the driver
    qtbot.wait(500)
    live = Liveness(app.window)
    pressed = time.monotonic()
    qtbot.mouseClick(app.window.start_button, Qt.MouseButton.LeftButton)  # Stop
    assert time.monotonic() - pressed < 1
    assert not controller.listening
    live.assert_alive_for(qtbot, 500)


def _fetched(origin: str) -> FetchedKey:
    pem = ManifestIssuer(origin).public_pem
    return FetchedKey(origin, pem, key_fingerprint(load_manifest_key(pem)))


def test_confirming_a_pairing_while_the_keyring_hangs(
    qtbot: QtBot, token: Pkcs11Token, tmp_path: Path, blocking_keyring: BlockingKeyring
) -> None:
    issuer = ManifestIssuer(ORIGIN)
    config = AgentConfig(
        port=0, origins=(AllowedOrigin.create(ORIGIN, issuer.public_pem),), state_dir=tmp_path
    )
    pairing = PairingManager(config, store=OriginStore(service=f"kyso-test-{uuid.uuid4().hex}"))
    pairing.fetch_key = _fetched  # type: ignore[method-assign]  # no HTTPS server needed here
    app = DesktopApp(config, token, language="vi", port=0, use_tray=False, pairing=pairing)
    qtbot.addWidget(app.window)
    app.window.show()
    try:
        assert start_and_wait(qtbot, app.controller)
        url = f"ws://127.0.0.1:{app.controller.listening_port}/"
        with pytest.raises(InvalidStatus):
            connect(url, origin=NEW_ORIGIN, open_timeout=5)  # type: ignore[arg-type]
        qtbot.waitUntil(lambda: app.pairing_dialog is not None, timeout=5000)
        dialog = app.pairing_dialog
        assert dialog is not None
        qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
        qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)  # fetch the key
        qtbot.waitUntil(lambda: dialog.step == 2, timeout=5000)
        qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
        live = Liveness(app.window)
        pressed = time.monotonic()
        qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)  # Confirm
        assert time.monotonic() - pressed < 1
        assert blocking_keyring.writing.wait(5)  # the keyring write now waits
        live.assert_alive_for(qtbot, 500)
        # Another page's handshake goes through meanwhile.
        with connect(url, origin=ORIGIN, open_timeout=3) as page:  # type: ignore[arg-type]
            assert page.protocol.state.name == "OPEN"
        assert pairing.allowed_origin(NEW_ORIGIN) is None  # not before it is stored
        blocking_keyring.release()
        qtbot.waitUntil(lambda: pairing.allowed_origin(NEW_ORIGIN) is not None, timeout=5000)
    finally:
        blocking_keyring.release()
        app.shutdown()


def test_removing_a_paired_page_while_the_keyring_hangs(
    qtbot: QtBot, token: Pkcs11Token, tmp_path: Path, blocking_keyring: BlockingKeyring
) -> None:
    config = AgentConfig(port=0, state_dir=tmp_path)
    pairing = PairingManager(config, store=OriginStore(service=f"kyso-test-{uuid.uuid4().hex}"))
    blocking_keyring.release()
    pairing.approve(_fetched(NEW_ORIGIN))
    blocking_keyring.released.clear()  # from now on the keyring hangs
    blocking_keyring.writing.clear()
    app = DesktopApp(config, token, language="vi", port=0, use_tray=False, pairing=pairing)
    qtbot.addWidget(app.window)
    app.window.show()
    try:
        dialog = app.show_settings()
        qtbot.addWidget(dialog)
        qtbot.waitExposed(dialog)
        assert dialog.origin_list.count() == 1
        dialog.origin_list.setCurrentRow(0)
        assert dialog.remove_button.isEnabled()
        live = Liveness(dialog)
        pressed = time.monotonic()
        qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
        assert time.monotonic() - pressed < 1
        assert blocking_keyring.writing.wait(5)
        live.assert_alive_for(qtbot, 500)
        assert not dialog.remove_button.isEnabled()  # one removal at a time
        assert dialog.origin_list.count() == 1  # still listed until it is stored
        assert pairing.allowed_origin(NEW_ORIGIN) is not None
        blocking_keyring.release()
        qtbot.waitUntil(lambda: dialog.origin_list.count() == 0, timeout=5000)
        assert pairing.allowed_origin(NEW_ORIGIN) is None
    finally:
        blocking_keyring.release()
        app.shutdown()


# --- a driver that hangs as the app starts ---------------------------------------------------


@pytest.fixture
def fresh_module(hanging_module: Path, tmp_path: Path) -> str:
    """The hanging module under a path of this test's own: python-pkcs11 keeps one library per
    path, and only a library loaded afresh calls the driver's C_Initialize."""
    copy = tmp_path / "libkyso-hanging-launch.so"
    shutil.copy(hanging_module, copy)
    return str(copy)


def _launch(
    fresh_module: str, tmp_path: Path, qtbot: QtBot, *, listen: bool, **options: object
) -> DesktopApp:
    config = AgentConfig(port=0, state_dir=tmp_path / "state", listen_at_launch=listen)
    launched = time.monotonic()
    app = launch(
        config,
        "vi",
        resolve=lambda _config: fresh_module,
        use_tray=False,
        port=0,
        hotplug_interval=0.2,
        **options,
    )
    assert time.monotonic() - launched < 1  # the driver is waited for elsewhere
    qtbot.addWidget(app.window)
    qtbot.waitExposed(app.window)
    return app


@pytest.mark.parametrize("stuck", ["C_Initialize", "C_GetSlotList"])
def test_a_driver_hung_at_launch_leaves_the_window_shown_answering_and_quit_clean(
    qtbot: QtBot,
    fresh_module: str,
    gate: Gate,
    init_gate: Gate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stuck: str,
) -> None:
    before = set(threading.enumerate())
    (init_gate if stuck == "C_Initialize" else gate).close()
    # A window that does freeze must fail the test, not hang the suite.
    watchdog = threading.Timer(20, lambda: (gate.release(), init_gate.release()))
    watchdog.start()
    quits: list[bool] = []
    monkeypatch.setattr(QApplication, "quit", staticmethod(lambda: quits.append(True)))
    try:
        app = _launch(fresh_module, tmp_path, qtbot, listen=True)
        window, controller = app.window, app.controller
        assert window.isVisible()
        live = Liveness(window)
        assert controller.waiting
        assert controller.status is TrayState.WAITING
        assert window.values["status"].text() == WAITING
        assert window.waiting.isVisibleTo(window)
        assert window.cancel_button.text() == "Hủy"
        assert not window.start_button.isEnabled()
        if stuck == "C_Initialize":
            assert controller.loading
            assert controller.token is None
            assert window.values["token"].text() == tr("ui.token_loading", "vi")
        live.assert_alive_for(qtbot, 1000)
        qtbot.mouseClick(window.about_button, Qt.MouseButton.LeftButton)  # clicks are answered
        assert app.about is not None
        assert app.about.isVisible()
        app.about.close()
        assert controller.waiting

        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
        assert not controller.waiting
        assert not controller.listening
        assert window.error.text() == tr("ui.driver_cancelled", "vi")
        assert window.start_button.isEnabled()
        live.assert_alive_for(qtbot, 300)

        pressed = time.monotonic()
        qtbot.mouseClick(window.quit_button, Qt.MouseButton.LeftButton)
        # Quit hides the window at once; it waits for no C_Initialize, and for a Start stuck
        # in the slot list at most SHUTDOWN_SECONDS (the server thread may still stop cleanly).
        limit = 2 if stuck == "C_Initialize" else SHUTDOWN_SECONDS + 2
        assert time.monotonic() - pressed < limit
        assert quits == [True]
        assert not window.isVisible()
        # Still inside the driver: the process would end without finalising it (os._exit).
        assert not controller.release_token(timeout=0.5)
    finally:
        watchdog.cancel()
        gate.release()
        init_gate.release()
    # Once the driver answers, whatever it still held ends: no thread of ours, module finalised.
    qtbot.waitUntil(lambda: not _new_threads(before), timeout=10_000)
    assert fresh_module not in library._library_users


def test_a_driver_that_answers_late_at_launch_is_taken_and_start_works(
    qtbot: QtBot, fresh_module: str, init_gate: Gate, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    init_gate.close()
    watchdog = threading.Timer(20, init_gate.release)
    watchdog.start()
    try:
        app = _launch(fresh_module, tmp_path, qtbot, listen=False, driver_timeout=1.0)
        window, controller = app.window, app.controller
        assert controller.waiting  # the load is waited for even without listening at launch
        assert window.waiting_text.text() == tr("ui.driver_waiting_hint", "vi", seconds=1)
        qtbot.waitUntil(lambda: not controller.waiting, timeout=5000)
        assert window.error.text() == tr("ui.driver_timeout", "vi", seconds=1)
        assert controller.loading  # given up waiting, not loading

        # Start while the driver still has not answered: the window waits again, and the
        # server starts when it answers.
        qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)
        assert controller.waiting
        assert window.error.text() == ""
        assert not controller.listening
        init_gate.release()
        qtbot.waitUntil(lambda: controller.listening, timeout=10_000)
        assert controller.token is not None
        assert not controller.loading
        assert controller.status is TrayState.NO_TOKEN  # the hanging module has no token
        assert window.values["token"].text() == tr("ui.token_missing", "vi")
        qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)  # Stop
        assert not controller.listening
        assert controller.shutdown(timeout=10)
        assert controller.release_token(timeout=10)  # it loaded the token: it closes it
        assert controller.token is None
    finally:
        watchdog.cancel()
        init_gate.release()
    qtbot.waitUntil(lambda: not _new_threads(before), timeout=10_000)
    assert fresh_module not in library._library_users


def test_a_driver_answering_late_after_quit_is_closed_by_its_loading_thread(
    qtbot: QtBot, fresh_module: str, init_gate: Gate, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    init_gate.close()
    try:
        app = _launch(fresh_module, tmp_path, qtbot, listen=True)
        assert app.controller.loading
        app.shutdown()
        assert not app.controller.release_token(timeout=0.2)
    finally:
        init_gate.release()
    qtbot.waitUntil(lambda: not _new_threads(before), timeout=10_000)
    assert fresh_module not in library._library_users
    assert app.controller.token is None  # never adopted after Quit
    assert not app.controller.listening


def test_a_driver_that_cannot_be_loaded_at_launch_is_named(qtbot: QtBot, tmp_path: Path) -> None:
    missing = str(tmp_path / "libnot-there.so")
    app = _launch(missing, tmp_path, qtbot, listen=True)
    controller, window = app.controller, app.window
    qtbot.waitUntil(lambda: not controller.waiting, timeout=5000)
    assert controller.token is None
    assert not controller.listening
    expected = controller.module_error
    assert expected is not None
    assert "libnot-there.so" in expected.get("vi")
    assert window.values["token"].text() == expected.get("vi")
    assert window.error.text() == expected.get("vi")  # the Start asked for at launch says why
    app.shutdown()
    assert controller.release_token(timeout=1)
