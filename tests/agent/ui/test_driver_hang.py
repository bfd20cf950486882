"""The window never freezes (issue 18): a USB token driver that hangs, and a keyring that does
not answer, leave the window repainting and answering clicks, the other pages connecting, and
nothing running after Quit.

The driver is a real PKCS#11 module built in the test session (tests/support/hanging_pkcs11.c)
whose C_GetSlotList blocks while the test holds its gate; the keyring is a real keyring backend
whose writes wait until released.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from pytestqt.qtbot import QtBot
from support.hanging_module import BlockingKeyring, Gate
from support.platform_keys import ManifestIssuer
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kyso.agent.config import AgentConfig, AllowedOrigin, key_fingerprint, load_manifest_key
from kyso.agent.i18n import tr
from kyso.agent.pairing import FetchedKey, OriginStore, PairingManager
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.ui.app import DesktopApp
from kyso.agent.ui.controller import TrayState

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
