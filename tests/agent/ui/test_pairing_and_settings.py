"""Pairing a page from a new origin through the desktop app, and the Settings dialog saving
through the core's settings store (a real user TOML file) and the pairing manager's list."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog
from pytestqt.qtbot import QtBot
from support.memory_keyring import MemoryKeyring
from support.platform_keys import ManifestIssuer
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kyso.agent.config import load_config
from kyso.agent.pairing import OriginStore, PairingManager
from kyso.agent.settings import SettingsStore
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.ui.app import DesktopApp
from kyso.agent.ui.dialogs import PairingDialog

from .conftest import ORIGIN, start_and_wait

NEW_ORIGIN = "https://tiemchung.hcm.example.vn"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def desktop(
    qtbot: QtBot, token: Pkcs11Token, tmp_path: Path, memory_keyring: MemoryKeyring
) -> Iterator[DesktopApp]:
    machine = tmp_path / "agent.toml"
    issuer = ManifestIssuer(ORIGIN)
    machine.write_text(
        f'[[origins]]\norigin = "{ORIGIN}"\nmanifest_key = """{issuer.public_pem}"""\n',
        encoding="utf-8",
    )
    config = load_config(machine, tmp_path / "user.toml", state_dir=tmp_path / "state")
    nowhere = closed_port()  # the new origin's HTTPS server is down: a network error
    pairing = PairingManager(
        config,
        store=OriginStore(service=f"kyso-test-{uuid.uuid4().hex}"),
        resolve=lambda host: ("127.0.0.1", nowhere),
        timeout=2,
    )
    app = DesktopApp(
        config,
        token,
        language="vi",
        port=0,
        use_tray=False,
        pairing=pairing,
        settings_store=SettingsStore(config),
    )
    qtbot.addWidget(app.window)
    yield app
    app.shutdown()


def test_a_new_origin_asks_to_pair_and_a_fetch_failure_is_explained(
    qtbot: QtBot, desktop: DesktopApp
) -> None:
    assert start_and_wait(qtbot, desktop.controller)
    url = f"ws://127.0.0.1:{desktop.controller.listening_port}/"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=NEW_ORIGIN, open_timeout=5)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    qtbot.waitUntil(lambda: desktop.pairing_dialog is not None, timeout=5000)
    dialog = desktop.pairing_dialog
    assert isinstance(dialog, PairingDialog)
    assert NEW_ORIGIN in dialog.message.text()
    assert dialog.cancel_button.isDefault()
    qtbot.waitUntil(dialog.approve_button.isEnabled, timeout=3000)
    qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.step == 3, timeout=10_000)  # the error step
    assert dialog.message.text()
    assert not dialog.approve_button.isVisible()
    with qtbot.waitSignal(dialog.finished, timeout=1000):
        dialog.cancel_button.click()
    assert desktop.pairing is not None
    assert desktop.pairing.pending is None
    assert [o.origin for o in desktop.pairing.origins()] == [ORIGIN]


def test_settings_show_machine_values_locked_and_save_the_officers(
    qtbot: QtBot, desktop: DesktopApp, tmp_path: Path
) -> None:
    dialog = desktop.show_settings()
    qtbot.addWidget(dialog)
    qtbot.waitExposed(dialog)
    # The administrator's page is listed and cannot be removed.
    assert dialog.origin_list.count() == 1
    dialog.origin_list.setCurrentRow(0)
    assert not dialog.remove_button.isEnabled()
    assert dialog.origin_note.isVisible()
    # The officer's own choices are saved in the user file and applied to the window.
    dialog.language_combo.setCurrentIndex(dialog.language_combo.findData("en"))
    dialog.listen_at_launch.setChecked(False)
    with qtbot.waitSignal(dialog.finished, timeout=1000) as finished:
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert finished.args == [QDialog.DialogCode.Accepted]
    assert desktop.window.start_button.text() == "Start"
    saved = load_config(tmp_path / "agent.toml", tmp_path / "user.toml")
    assert saved.language == "en"
    assert saved.listen_at_launch is False
    assert desktop.controller.config.language == "en"


def test_settings_lock_a_module_set_for_the_machine(
    qtbot: QtBot, token: Pkcs11Token, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    from kyso.agent.token.softhsm import find_module

    machine = tmp_path / "agent.toml"
    machine.write_text(f'pkcs11_module = "{find_module()}"\nport = 47999\n', encoding="utf-8")
    config = load_config(machine, tmp_path / "user.toml", state_dir=tmp_path / "state")
    app = DesktopApp(
        config, token, language="vi", use_tray=False, settings_store=SettingsStore(config)
    )
    qtbot.addWidget(app.window)
    try:
        dialog = app.show_settings()
        qtbot.addWidget(dialog)
        assert not dialog.module_combo.isEnabled()
        assert not dialog.browse_button.isEnabled()
        assert "Quản trị viên" in dialog.module_note.text()
        assert not dialog.port_spin.isEnabled()
        assert dialog.port_spin.value() == 47999
    finally:
        app.shutdown()


def test_a_late_key_never_lands_in_another_pages_dialog(
    qtbot: QtBot, token: Pkcs11Token, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """Allow A, cancel while A's server stalls, then B asks: when A's key finally arrives it
    must not appear (or be confirmed) under B's dialog, and A stays declined."""
    import threading

    from kyso.agent.config import key_fingerprint, load_manifest_key
    from kyso.agent.pairing import FetchedKey

    machine = tmp_path / "agent.toml"
    issuer = ManifestIssuer(ORIGIN)
    machine.write_text(
        f'[[origins]]\norigin = "{ORIGIN}"\nmanifest_key = """{issuer.public_pem}"""\n',
        encoding="utf-8",
    )
    config = load_config(machine, tmp_path / "user.toml", state_dir=tmp_path / "state")
    pairing = PairingManager(config, store=OriginStore(service=f"kyso-test-{uuid.uuid4().hex}"))
    first, second = "https://attacker-a.example.net", NEW_ORIGIN
    release = threading.Event()

    def stalling_fetch(origin: str) -> FetchedKey:  # A's server answers only when released
        if origin == first:
            release.wait(20)
        pem = ManifestIssuer(origin).public_pem
        return FetchedKey(origin, pem, key_fingerprint(load_manifest_key(pem)))

    pairing.fetch_key = stalling_fetch  # type: ignore[method-assign]
    app = DesktopApp(
        config,
        token,
        language="vi",
        port=0,
        use_tray=False,
        pairing=pairing,
        settings_store=SettingsStore(config),
    )
    qtbot.addWidget(app.window)
    try:
        assert start_and_wait(qtbot, app.controller)
        url = f"ws://127.0.0.1:{app.controller.listening_port}/"
        with pytest.raises(InvalidStatus):
            connect(url, origin=first, open_timeout=5)
        qtbot.waitUntil(lambda: app.pairing_dialog is not None, timeout=5000)
        dialog_a = app.pairing_dialog
        assert dialog_a is not None
        qtbot.waitUntil(dialog_a.approve_button.isEnabled, timeout=3000)
        qtbot.mouseClick(dialog_a.approve_button, Qt.MouseButton.LeftButton)  # fetch starts
        dialog_a.cancel_button.click()  # the officer changes their mind
        with pytest.raises(InvalidStatus):
            connect(url, origin=second, open_timeout=5)
        qtbot.waitUntil(
            lambda: app.pairing_dialog is not None and app.pairing_dialog is not dialog_a,
            timeout=5000,
        )
        dialog_b = app.pairing_dialog
        assert dialog_b is not None
        release.set()  # A's key arrives now
        qtbot.wait(800)
        assert dialog_b.step == 1  # still asking about B, nothing fetched for it
        assert dialog_b.fetched is None
        assert pairing.allowed_origin(first) is None
    finally:
        release.set()
        app.shutdown()
