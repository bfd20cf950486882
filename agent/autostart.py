"""Starting the agent when the officer logs in ("Khởi động cùng Windows").

The Settings option writes (or removes) a per-user entry: the ``Run`` key under
``HKEY_CURRENT_USER`` on Windows, an XDG autostart file elsewhere. Every entry launches the
agent with ``--autostart``, and so does the per-machine entry the MSI may install: a launch with
that flag quits at once when the officer turned the option off, so a machine-wide entry never
overrides the officer's choice.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
VALUE_NAME = "Kyso Agent"
DESKTOP_FILE = "kyso-agent.desktop"
AUTOSTART_FLAG = "--autostart"


def launch_command() -> list[str]:
    """How this installation starts the desktop app (the frozen executable, or the module)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, AUTOSTART_FLAG]
    return [sys.executable, "-m", "kyso.agent.cli", AUTOSTART_FLAG]


class Autostart(Protocol):
    def enabled(self) -> bool: ...

    def set(self, enabled: bool) -> None: ...


class WindowsRunKey:
    """``HKCU\\...\\Run``: the per-user start entry Windows reads at logon."""

    def __init__(self, command: Sequence[str], winreg: ModuleType | Any | None = None) -> None:
        if winreg is None:
            import winreg as real_winreg  # only on Windows

            winreg = real_winreg
        self._reg = winreg
        self._command = subprocess.list2cmdline(list(command))

    def enabled(self) -> bool:
        reg = self._reg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _kind = reg.QueryValueEx(key, VALUE_NAME)
        except OSError:
            return False
        return bool(value)

    def set(self, enabled: bool) -> None:
        reg = self._reg
        with reg.CreateKeyEx(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
            if enabled:
                reg.SetValueEx(key, VALUE_NAME, 0, reg.REG_SZ, self._command)
            else:
                with contextlib.suppress(FileNotFoundError):
                    reg.DeleteValue(key, VALUE_NAME)


class XdgAutostart:
    """``$XDG_CONFIG_HOME/autostart/kyso-agent.desktop`` (freedesktop.org autostart)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] = os.environ) -> None:
        base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
        self.path = Path(base) / "autostart" / DESKTOP_FILE
        self._command = " ".join(_desktop_quote(part) for part in command)

    def enabled(self) -> bool:
        return self.path.is_file()

    def set(self, enabled: bool) -> None:
        if not enabled:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = (
            "[Desktop Entry]\n"
            "Type=Application\n"
            "Name=Kyso Agent\n"
            "Comment=Công cụ ký số chứng nhận tiêm / Vaccination certificate signing agent\n"
            f"Exec={self._command}\n"
            "X-GNOME-Autostart-enabled=true\n"
        )
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(self.path)


def _desktop_quote(part: str) -> str:
    # The Desktop Entry spec's Exec quoting: double quotes, with \ " ` $ escaped.
    if part and all(c.isalnum() or c in "/-_.:=" for c in part):
        return part
    escaped = "".join("\\" + c if c in '\\"`$' else c for c in part)
    return f'"{escaped}"'


def for_this_system(
    command: Sequence[str] | None = None,
    system: str = sys.platform,
    env: Mapping[str, str] = os.environ,
) -> Autostart:
    command = list(command or launch_command())
    if system == "win32":
        return WindowsRunKey(command)
    return XdgAutostart(command, env)
