"""The settings the officer may change, on top of the user config file (``config.py``).

``SettingsStore(config)`` reads what is in force and writes the officer's choices to the user
TOML atomically (a temporary file in the same folder, then a rename): language, start at login,
start listening at launch at the top level, and in the ``[officer]`` table the port and the
PKCS#11 module, unless the machine file sets them (``machine_locked``: the Settings window
shows those fields locked). A module chosen here passes the same check as the administrator's
(``check_module_path``: only a library in a folder only administrators can change), and port
and module take effect the next time the agent starts listening.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kyso.agent import i18n
from kyso.agent.autostart import Autostart
from kyso.agent.config import (
    LANGUAGES,
    OFFICER_KEYS,
    OFFICER_TABLE,
    REAL_FS,
    AgentConfig,
    ConfigError,
    FileSystem,
    KnownModule,
    check_module_path,
    default_user_config_path,
    discover_modules,
)
from kyso.agent.errors import AgentError

PORT_RANGE = (1024, 65535)


class SettingsError(AgentError):
    """A setting the officer cannot save; ``text`` (vi/en) says why and what to do."""

    def __init__(self, reason: str, **values: object) -> None:
        self.reason = reason
        self.text = i18n.text(f"settings.{reason}", **values)
        super().__init__(f"{reason}: {self.text.en}")


@dataclass(frozen=True)
class UserSettings:
    language: str  # "vi" or "en"
    start_at_login: bool
    listen_at_launch: bool
    port: int
    pkcs11_module: str | None  # None: the first detected driver


class SettingsStore:
    def __init__(
        self,
        config: AgentConfig,
        *,
        system: str = sys.platform,
        fs: FileSystem = REAL_FS,
        env: Mapping[str, str] = os.environ,
        autostart: Autostart | None = None,
    ) -> None:
        self._config = config
        # The OS start entry the "start at login" option controls (None: the option is only
        # stored, as in tests that must not touch the session's real autostart).
        self._autostart = autostart
        self._system = system
        self._fs = fs
        self._env = env
        self.path = config.user_config_path or default_user_config_path(system, env)

    @property
    def machine_locked(self) -> frozenset[str]:
        """Names of the fields the machine config sets: ``port`` and/or ``pkcs11_module``."""
        return self._config.machine_locked

    def is_locked(self, name: str) -> bool:
        return name in self._config.machine_locked

    def current(self) -> UserSettings:
        c = self._config
        return UserSettings(
            c.language, c.start_at_login, c.listen_at_launch, c.port, c.pkcs11_module
        )

    def modules(self) -> list[KnownModule]:
        """The installed token drivers the agent knows (modules.toml), safe to load."""
        return discover_modules(system=self._system, fs=self._fs, env=self._env)

    def save(self, settings: UserSettings) -> AgentConfig:
        """Validates and writes the officer's settings; returns the config they make.

        Raises SettingsError (``locked``, ``language``, ``port``, ``write_failed``) or the
        module check's ConfigError (its ``text`` says what is wrong with the file).
        """
        current = self.current()
        for name in OFFICER_KEYS:
            if self.is_locked(name) and getattr(settings, name) != getattr(current, name):
                raise SettingsError("locked", setting=name)
        if settings.language not in LANGUAGES:
            raise SettingsError("language", value=settings.language)
        low, high = PORT_RANGE
        if not low <= settings.port <= high:
            raise SettingsError("port", value=settings.port, minimum=low, maximum=high)
        if settings.pkcs11_module is not None and not self.is_locked("pkcs11_module"):
            check_module_path(
                settings.pkcs11_module, system=self._system, fs=self._fs, env=self._env
            )
        self._write(self._render(settings))
        if self._autostart is not None and settings.start_at_login != self._autostart.enabled():
            try:
                self._autostart.set(settings.start_at_login)
            except OSError as exc:
                raise SettingsError("autostart_failed", error=exc) from exc
        self._config = dataclasses.replace(
            self._config,
            language=settings.language,
            start_at_login=settings.start_at_login,
            listen_at_launch=settings.listen_at_launch,
            port=settings.port,
            pkcs11_module=settings.pkcs11_module,
        )
        return self._config

    def _render(self, settings: UserSettings) -> str:
        lines = [
            "# The officer's settings, written by the Kyso agent's Settings window.",
            f"language = {json.dumps(settings.language)}",
            f"start_at_login = {'true' if settings.start_at_login else 'false'}",
            f"listen_at_launch = {'true' if settings.listen_at_launch else 'false'}",
        ]
        officer: list[str] = []
        if not self.is_locked("port"):
            officer.append(f"port = {settings.port}")
        if not self.is_locked("pkcs11_module") and settings.pkcs11_module is not None:
            # A JSON string is a valid TOML basic string (backslashes and quotes escaped).
            officer.append(f"pkcs11_module = {json.dumps(settings.pkcs11_module)}")
        if officer:
            lines += ["", f"[{OFFICER_TABLE}]", *officer]
        return "\n".join(lines) + "\n"

    def _write(self, text: str) -> None:
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".agent.", suffix=".toml")
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise SettingsError("write_failed", config=path, error=exc.strerror or exc) from exc


__all__ = ["ConfigError", "SettingsError", "SettingsStore", "UserSettings"]
