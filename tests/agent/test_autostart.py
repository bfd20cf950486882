"""Start at login: the per-user entry the Settings option writes, and --autostart honouring it.

The Windows Run-key entry is tested against the registry model in test_windows_adapters.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kyso.agent.autostart import (
    AUTOSTART_FLAG,
    XdgAutostart,
    for_this_system,
)
from kyso.agent.config import load_config
from kyso.agent.settings import SettingsStore, UserSettings


def test_xdg_autostart_file(tmp_path: Path) -> None:
    entry = XdgAutostart(
        ["/opt/kyso agent/bin/kyso-agent", AUTOSTART_FLAG], {"HOME": str(tmp_path)}
    )
    assert entry.path == tmp_path / ".config" / "autostart" / "kyso-agent.desktop"
    entry.set(True)
    text = entry.path.read_text(encoding="utf-8")
    assert 'Exec="/opt/kyso agent/bin/kyso-agent" --autostart\n' in text
    assert entry.enabled()
    entry.set(False)
    assert not entry.path.exists()
    assert isinstance(
        for_this_system(["x"], "linux", {"XDG_CONFIG_HOME": str(tmp_path)}), XdgAutostart
    )


def test_saving_the_option_sets_the_entry(tmp_path: Path) -> None:
    config = load_config(None, tmp_path / "user.toml", env={"HOME": str(tmp_path)})
    entry = XdgAutostart(["kyso-agent", AUTOSTART_FLAG], {"HOME": str(tmp_path)})
    store = SettingsStore(config, env={"HOME": str(tmp_path)}, autostart=entry)
    current = store.current()
    store.save(UserSettings(current.language, True, current.listen_at_launch, current.port, None))
    assert entry.enabled()
    store.save(UserSettings(current.language, False, current.listen_at_launch, current.port, None))
    assert not entry.enabled()


@pytest.mark.parametrize(("start_at_login", "quits"), [(False, True), (True, False)])
def test_a_login_launch_quits_when_the_officer_turned_it_off(
    tmp_path: Path, start_at_login: bool, quits: bool
) -> None:
    user = tmp_path / "user.toml"
    user.write_text(f"start_at_login = {'true' if start_at_login else 'false'}\n", "utf-8")
    machine = tmp_path / "machine.toml"
    machine.write_text('pkcs11_module = "/nonexistent/libnothing.so"\n', "utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kyso.agent.cli",
            "--headless",
            AUTOSTART_FLAG,
            "--config",
            str(machine),
            "--user-config",
            str(user),
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if quits:
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    else:
        assert done.returncode != 0  # it went on, and stopped at the missing driver
        assert "libnothing" in done.stderr
