"""The Start window and the tray state: Start/Stop, hot-plug of a real SoftHSM token (listening
and stopped), the certificate that will sign, the icons, and the single-instance rule."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from pytestqt.qtbot import QtBot

from kyso.agent.config import AgentConfig
from kyso.agent.service import BatchOutcome
from kyso.agent.token import softhsm as softhsm2
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken
from kyso.agent.ui.app import DesktopApp
from kyso.agent.ui.controller import TrayState
from kyso.agent.ui.icons import status_pixmap
from kyso.agent.ui.single_instance import (
    SingleInstance,
    WindowsSession,
    activate_running,
    current_session,
    instance_name,
)
from kyso.agent.ui.widgets import short_subject

from .conftest import start_and_wait

LABEL = "Kyso Desk"
PROVISION = """
import sys
from pathlib import Path
from typing import Any
from kyso.agent.token import softhsm
softhsm.provision(Path(sys.argv[1]), label=sys.argv[2])
"""


@pytest.fixture
def lonely(tmp_path: Path, softhsm: ProvisionedToken) -> Iterator[ProvisionedToken]:
    """A SoftHSM2 directory with one token, active in this process for the test."""
    try:
        yield softhsm2.provision(tmp_path / "hsm", label=LABEL)
    finally:
        softhsm2.activate(softhsm.conf_path)
        softhsm2.rescan(softhsm.module_path)


def _desktop(qtbot: QtBot, token: Pkcs11Token, tmp_path: Path) -> Iterator[DesktopApp]:
    config = AgentConfig(port=0, state_dir=tmp_path / "state")
    app = DesktopApp(config, token, language="vi", port=0, use_tray=False, hotplug_interval=0.5)
    qtbot.addWidget(app.window)
    app.window.show()
    qtbot.waitExposed(app.window)
    yield app
    app.shutdown()


@pytest.fixture
def desktop(qtbot: QtBot, token: Pkcs11Token, tmp_path: Path) -> Iterator[DesktopApp]:
    yield from _desktop(qtbot, token, tmp_path)


@pytest.fixture
def lonely_desktop(
    lonely: ProvisionedToken, qtbot: QtBot, token: Pkcs11Token, tmp_path: Path
) -> Iterator[DesktopApp]:
    """The app on the one-token directory, started only once that directory is active."""
    yield from _desktop(qtbot, token, tmp_path)


def value(app: DesktopApp, name: str) -> str:
    return app.window.values[name].text()


def test_start_and_stop(qtbot: QtBot, desktop: DesktopApp) -> None:
    window = desktop.window
    assert window.start_button.text() == "Bắt đầu"
    assert value(desktop, "status").startswith("Đã dừng")
    assert desktop.controller.status is TrayState.STOPPED
    qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: desktop.controller.listening, timeout=10_000)
    port = desktop.controller.listening_port
    assert port is not None
    assert window.start_button.text() == "Dừng"
    assert value(desktop, "status") == f"Đang chờ yêu cầu ký từ trang web (cổng {port})."
    qtbot.waitUntil(lambda: desktop.controller.status is TrayState.LISTENING, timeout=5000)
    qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)
    assert desktop.controller.listening_port is None
    assert window.start_button.text() == "Bắt đầu"


def test_the_tray_stops_saying_signing_when_the_result_is_shown(
    qtbot: QtBot, desktop: DesktopApp
) -> None:
    """The outcome and the service's "ready" reach the Qt thread through two queued signals:
    the window must not say "signing" in between (it did, under load)."""
    controller = desktop.controller
    assert start_and_wait(qtbot, controller)
    qtbot.waitUntil(lambda: controller.snapshot.present, timeout=10_000)
    busy = dataclasses.replace(controller.snapshot, busy=True)
    controller._take_snapshot(controller._generation, busy)  # the service: a batch runs
    assert controller.status is TrayState.SIGNING
    controller.record_outcome(
        BatchOutcome("https://tiemchung.example.vn", "B1", 120, 120, None, datetime.now(UTC))
    )
    assert controller.status is TrayState.LISTENING  # before the service's "ready" arrives
    controller.stop()


def test_port_taken_is_explained(qtbot: QtBot, token: Pkcs11Token, tmp_path: Path) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        app = DesktopApp(
            AgentConfig(port=port, state_dir=tmp_path), token, language="vi", use_tray=False
        )
        qtbot.addWidget(app.window)
        try:
            assert not start_and_wait(qtbot, app.controller)
            assert app.window.error.isVisibleTo(app.window)
            assert str(port) in app.window.error.text()
            assert app.window.start_button.text() == "Bắt đầu"
        finally:
            app.shutdown()


def test_certificate_that_will_sign(
    qtbot: QtBot, desktop: DesktopApp, softhsm: ProvisionedToken
) -> None:
    qtbot.waitUntil(lambda: "Kyso Test" in value(desktop, "token"), timeout=5000)
    text = value(desktop, "certificate")
    usable = desktop.controller.snapshot.signing_certificates
    assert usable
    fingerprints = {c.fingerprint_sha256 for c in usable}
    assert softhsm.certificates["p256"].fingerprint_sha256 in fingerprints
    assert softhsm.certificates["expired"].fingerprint_sha256 not in fingerprints
    assert softhsm.certificates["no_signing_usage"].fingerprint_sha256 not in fingerprints
    for cert in usable:
        key = f"{cert.key_type}-{cert.key_size}"
        until = cert.not_after.strftime("%d/%m/%Y")  # dd/mm/yyyy, as the platform writes dates
        assert f"{short_subject(cert.subject)} ({key}) — hiệu lực đến {until}" in text.splitlines()


def _hotplug(qtbot: QtBot, desktop: DesktopApp, lonely: ProvisionedToken, tmp: Path) -> None:
    qtbot.waitUntil(lambda: value(desktop, "token").startswith(LABEL), timeout=5000)
    pulled = time.monotonic()
    softhsm2.delete_token(lonely)  # softhsm2-util, another process
    missing = "Chưa cắm USB token — hãy cắm USB token chứa chứng thư số của bạn."
    qtbot.waitUntil(lambda: value(desktop, "token") == missing, timeout=2000)
    assert time.monotonic() - pulled < 2
    assert value(desktop, "certificate") == "—"
    subprocess.run(
        [sys.executable, "-c", PROVISION, str(lonely.conf_path.parent), "Kyso Again"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    created = time.monotonic()
    qtbot.waitUntil(lambda: value(desktop, "token").startswith("Kyso Again"), timeout=2000)
    assert time.monotonic() - created < 2
    # (no assertion on the certificate line here: the other process writes the certificates
    # after the token appears, and the monitor lists them once per change of the token set)


def test_hotplug_while_listening(
    qtbot: QtBot, lonely_desktop: DesktopApp, lonely: ProvisionedToken, tmp_path: Path
) -> None:
    desktop = lonely_desktop
    assert start_and_wait(qtbot, desktop.controller)
    _hotplug(qtbot, desktop, lonely, tmp_path)
    assert desktop.controller.status is TrayState.LISTENING


def test_hotplug_while_stopped(
    qtbot: QtBot, lonely_desktop: DesktopApp, lonely: ProvisionedToken, tmp_path: Path
) -> None:
    desktop = lonely_desktop
    assert not desktop.controller.listening
    _hotplug(qtbot, desktop, lonely, tmp_path)
    assert desktop.controller.status is TrayState.STOPPED


def test_no_token_state(qtbot: QtBot, lonely_desktop: DesktopApp, lonely: ProvisionedToken) -> None:
    desktop = lonely_desktop
    assert start_and_wait(qtbot, desktop.controller)
    qtbot.waitUntil(lambda: desktop.controller.status is TrayState.LISTENING, timeout=5000)
    softhsm2.delete_token(lonely)
    qtbot.waitUntil(lambda: desktop.controller.status is TrayState.NO_TOKEN, timeout=2000)


def test_no_driver(qtbot: QtBot, tmp_path: Path) -> None:
    from kyso.agent.i18n import text

    error = text("config.no_module")
    app = DesktopApp(
        AgentConfig(port=0, state_dir=tmp_path),
        None,
        language="vi",
        module_error=error,
        use_tray=False,
    )
    qtbot.addWidget(app.window)
    try:
        assert value(app, "token") == error.vi
        assert not start_and_wait(qtbot, app.controller)
        assert app.window.error.text() == error.vi
    finally:
        app.shutdown()


def test_icons_differ_per_state(qtbot: QtBot) -> None:
    images: dict[TrayState, QImage] = {s: status_pixmap(s, 32).toImage() for s in TrayState}
    for state, image in images.items():
        assert not image.isNull()
        assert image.size().width() == 32
        assert image.pixelColor(16, 2).alpha() > 0, state  # the disc is drawn
    states = list(images)
    for i, a in enumerate(states):
        for b in states[i + 1 :]:
            assert images[a] != images[b], (a, b)


def test_language_switch(qtbot: QtBot, desktop: DesktopApp) -> None:
    desktop.window.set_language("en")
    assert desktop.window.start_button.text() == "Start"
    assert value(desktop, "status").startswith("Stopped")


def test_second_launch_shows_the_running_one(qtbot: QtBot, desktop: DesktopApp) -> None:
    name = instance_name("officer", extra=str(time.monotonic()))
    assert not activate_running(name)  # nobody yet
    primary = SingleInstance(name)
    assert primary.listen()
    primary.activated.connect(desktop.window.show_and_raise)
    desktop.window.hide()
    try:
        with qtbot.waitSignal(primary.activated, timeout=5000):
            assert activate_running(name)
        assert desktop.window.isVisible()
    finally:
        primary.close()
    assert not activate_running(name)


def test_instance_names_are_per_user() -> None:
    assert instance_name("a") != instance_name("b")
    assert instance_name("a") == instance_name("a")
    assert instance_name("a", extra="x") != instance_name("a")


class _Kernel32:
    """ProcessIdToSessionId and GetCurrentProcessId as Windows documents them: a BOOL, the
    session written through the pointer; FALSE for a process it cannot look at."""

    def __init__(self, sessions: dict[int, int], pid: int) -> None:
        self.sessions = sessions
        self.pid = pid

    def GetCurrentProcessId(self) -> int:
        return self.pid

    def ProcessIdToSessionId(self, pid: int, session: Any) -> int:
        if pid not in self.sessions:
            return 0
        session.contents.value = self.sessions[pid]
        return 1


def test_on_windows_each_logon_session_has_its_own_instance() -> None:
    # The officer signed in at the console (session 1) and over Remote Desktop (session 3):
    # named pipes are machine-wide, so each session needs its own name.
    sessions = {4100: 1, 5200: 3, 5300: 3}
    console, remote, remote_again = (
        current_session("win32", WindowsSession(_Kernel32(sessions, pid)))
        for pid in (4100, 5200, 5300)
    )
    assert (console, remote, remote_again) == ("1", "3", "3")
    assert instance_name("officer", session=console) != instance_name("officer", session=remote)
    assert instance_name("officer", session=remote) == instance_name(
        "officer", session=remote_again
    )
    # Windows refusing the lookup: one instance per user, as without sessions.
    refused = current_session("win32", WindowsSession(_Kernel32({}, 4100)))
    assert refused == ""
    assert current_session("linux") == ""
