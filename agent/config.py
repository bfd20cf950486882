"""Configuration: the admin-owned machine file, the officer's user file, and the token driver.

Two layers of TOML (see ``load_config``):

- the machine file, writable by administrators only, holds everything that decides what the agent
  trusts: the allowed web page origins with the key each one signs batch manifests with, limits,
  the port, and optionally the PKCS#11 module;
- the user file may only hold what is harmless for a user to change (language, start at login,
  listen at launch). A machine setting found there is an error, never silently applied or ignored.

The PKCS#11 module is native code loaded into the agent, so its path is checked before use
(threat 4): absolute, an existing regular file, and inside folders only an administrator can
change. Without a configured module, the agent picks the first installed driver of the
data-driven table ``modules.toml``.

Nothing here imports pkcs11 or Qt. By concern, the rest lives beside this file: origins and
their manifest keys in ``origins.py``, the admin-owned path walk in ``module_path.py``, module
discovery in ``modules.py``, filesystem access (injectable, so that the Windows rules are tested
on Linux) in ``fs.py``, the error in ``errors.py``. Their public names are re-exported here for
the callers that import them from the configuration.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from kyso.agent import i18n
from kyso.agent.errors import ConfigError
from kyso.agent.errors import config_error as _error
from kyso.agent.fs import (
    REAL_FS,
    FileStat,
    FileSystem,
    RealFileSystem,
    env_get,
    is_absolute,
    is_windows,
)
from kyso.agent.module_path import check_admin_owned_file, check_module_path
from kyso.agent.modules import KnownModule, ModuleEntry, discover_modules, module_table
from kyso.agent.origins import (
    LOOPBACK_HOSTS,
    AllowedOrigin,
    key_fingerprint,
    load_manifest_key,
    normalise_origin,
)
from kyso.agent.winreg_config import MachineRegistry, apply_machine_registry, default_registry

log = logging.getLogger(__name__)

DEFAULT_PORT = 47321
MAX_BATCH = 3000  # the protocol's maximum number of digests in one batch
DEFAULT_MAX_CONNECTIONS = 8
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_MANIFEST_MAX_LIFETIME_SECONDS = 3600
# A connection that has not said hello this long after opening is closed (protocol.md 1).
DEFAULT_HELLO_TIMEOUT_SECONDS = 5.0
# A connection with no message this long and no request running is closed (protocol.md 1).
DEFAULT_IDLE_TIMEOUT_SECONDS = 60.0
LANGUAGES = ("vi", "en")

# Settings a user may change: also accepted in the machine file, as machine-wide defaults.
_USER_KEYS = frozenset({"language", "start_at_login", "listen_at_launch"})
# Settings that decide what the agent trusts or how much it accepts: machine file only.
_MACHINE_KEYS = frozenset(
    {
        "port",
        "batch_cap",
        "max_connections",
        "max_message_bytes",
        "pkcs11_module",
        "manifest_max_lifetime_seconds",
        "origins",
    }
)
# (minimum, maximum, default) of each integer setting.
_INT_SETTINGS: dict[str, tuple[int, int, int]] = {
    # Not below 1024: the agent runs as the officer, who cannot bind privileged ports on POSIX.
    "port": (1024, 65535, DEFAULT_PORT),
    "batch_cap": (1, MAX_BATCH, MAX_BATCH),
    "max_connections": (1, 256, DEFAULT_MAX_CONNECTIONS),
    "max_message_bytes": (64 * 1024, 64 * 1024 * 1024, DEFAULT_MAX_MESSAGE_BYTES),
    "manifest_max_lifetime_seconds": (60, 24 * 3600, DEFAULT_MANIFEST_MAX_LIFETIME_SECONDS),
}
_BOOL_SETTINGS: dict[str, bool] = {"start_at_login": True, "listen_at_launch": True}
# The user file's table of what the officer chose in Settings where the machine file is silent
# (agent/settings.py writes it). A top-level machine key in the user file stays an error.
OFFICER_TABLE = "officer"
OFFICER_KEYS = frozenset({"port", "pkcs11_module"})


# ---------------------------------------------------------------------------------------------
# Where the files are
# ---------------------------------------------------------------------------------------------


def _home(env: Mapping[str, str], *, windows: bool) -> str:
    home = env_get(env, "USERPROFILE" if windows else "HOME", windows=windows)
    return home or str(Path.home())


def _xdg(env: Mapping[str, str], name: str, fallback: str) -> str:
    # The XDG spec says a relative value is invalid and must be ignored.
    value = env.get(name)
    return value if value and value.startswith("/") else fallback


def default_machine_config_path(
    system: str = sys.platform, env: Mapping[str, str] = os.environ
) -> Path:
    """The admin-owned, per-machine file."""
    if is_windows(system):
        base = env_get(env, "ProgramData", windows=True) or "C:\\ProgramData"
        return Path(str(PureWindowsPath(base, "Kyso", "agent.toml")))
    if system == "darwin":
        return Path("/Library/Application Support/Kyso/agent.toml")
    return Path("/etc/kyso/agent.toml")


def default_user_config_path(
    system: str = sys.platform, env: Mapping[str, str] = os.environ
) -> Path:
    """The officer's own file (roaming on Windows, XDG on Linux)."""
    if is_windows(system):
        base = env_get(env, "APPDATA", windows=True) or str(
            PureWindowsPath(_home(env, windows=True), "AppData", "Roaming")
        )
        return Path(str(PureWindowsPath(base, "Kyso", "agent.toml")))
    home = _home(env, windows=False)
    if system == "darwin":
        return Path(home, "Library", "Application Support", "Kyso", "agent.toml")
    return Path(_xdg(env, "XDG_CONFIG_HOME", f"{home}/.config"), "kyso", "agent.toml")


def default_state_dir(system: str = sys.platform, env: Mapping[str, str] = os.environ) -> Path:
    """Per-user, per-machine state (the replay guard); not created here."""
    if is_windows(system):
        base = env_get(env, "LOCALAPPDATA", windows=True) or str(
            PureWindowsPath(_home(env, windows=True), "AppData", "Local")
        )
        return Path(str(PureWindowsPath(base, "Kyso")))
    home = _home(env, windows=False)
    if system == "darwin":
        return Path(home, "Library", "Application Support", "Kyso")
    return Path(_xdg(env, "XDG_STATE_HOME", f"{home}/.local/state"), "kyso")


# ---------------------------------------------------------------------------------------------
# The configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent runs with. Built by ``load_config``, which validates every value."""

    port: int = DEFAULT_PORT
    batch_cap: int = MAX_BATCH
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    pkcs11_module: str | None = None  # as configured; resolve_module checks and picks
    origins: tuple[AllowedOrigin, ...] = ()
    language: str = i18n.DEFAULT_LANGUAGE
    start_at_login: bool = True
    listen_at_launch: bool = True
    manifest_max_lifetime_seconds: int = DEFAULT_MANIFEST_MAX_LIFETIME_SECONDS
    # Fixed bounds (not read from the config files); the tests shorten them.
    hello_timeout_seconds: float = DEFAULT_HELLO_TIMEOUT_SECONDS
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    state_dir: Path = field(default_factory=default_state_dir)
    machine_config_path: Path | None = None  # the file consulted (it may not exist)
    user_config_path: Path | None = None
    # Settings of OFFICER_KEYS that the machine file sets: the officer cannot change them.
    machine_locked: frozenset[str] = frozenset()

    def origin(self, origin_header: str) -> AllowedOrigin | None:
        """The allowed origin whose serialisation equals the ``Origin`` header, byte for byte.

        No normalisation of the header: browsers send the serialised form, and anything else
        (a missing or ``null`` origin, other case, trailing slash, other port) is refused.
        """
        for allowed in self.origins:
            if allowed.origin == origin_header:
                return allowed
        return None


class _TomlFile:
    """One parsed config file and the name it is reported under."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.name = str(path)
        self.data = data


def _line_column(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _read_toml(path: Path) -> _TomlFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _error("file_unreadable", config=path, error=exc.strerror or exc) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        decoded = raw[: exc.start].decode("utf-8", "replace")
        line, column = _line_column(decoded, len(decoded))
        raise _error(
            "toml_invalid", config=path, line=line, column=column, error="invalid UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        if where:
            line, column = int(where.group(1)), int(where.group(2))
        else:  # "(at end of document)"
            line, column = _line_column(text, len(text))
        reason = re.sub(r"\s*\(at [^()]*\)$", "", message)
        raise _error("toml_invalid", config=path, line=line, column=column, error=reason) from None
    return _TomlFile(path, data)


def _int_setting(file: _TomlFile, key: str) -> int:
    minimum, maximum, _ = _INT_SETTINGS[key]
    value = file.data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error("not_integer", setting=key, config=file.name)
    if not minimum <= value <= maximum:
        raise _error(
            "out_of_range",
            setting=key,
            config=file.name,
            value=value,
            minimum=minimum,
            maximum=maximum,
        )
    return value


def _bool_setting(file: _TomlFile, key: str) -> bool:
    value = file.data[key]
    if not isinstance(value, bool):
        raise _error("not_boolean", setting=key, config=file.name)
    return value


def _language(file: _TomlFile) -> str:
    value = file.data["language"]
    if not isinstance(value, str):
        raise _error("not_string", setting="language", config=file.name)
    if value not in LANGUAGES:
        raise _error("language_invalid", value=value, config=file.name)
    return value


def _module_setting(file: _TomlFile, system: str) -> str:
    value = file.data["pkcs11_module"]
    if not isinstance(value, str):
        raise _error("not_string", setting="pkcs11_module", config=file.name)
    unc = is_windows(system) and value.startswith(("\\\\", "//"))
    if not unc and not is_absolute(value, system):
        raise _error("module_relative", path=value, config=file.name)
    return value


def _origins(file: _TomlFile) -> tuple[AllowedOrigin, ...]:
    entries = file.data["origins"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _error("origins_not_list", config=file.name)
    result: list[AllowedOrigin] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"origins[{index}]"
        for key in entry:
            if key not in ("origin", "manifest_key"):
                raise _error("unknown_key", setting=f"{where}.{key}", config=file.name)
        for required in ("origin", "manifest_key"):
            if required not in entry:
                raise _error(
                    "origin_field_missing", setting=where, field=required, config=file.name
                )
            if not isinstance(entry[required], str):
                raise _error("not_string", setting=f"{where}.{required}", config=file.name)
        origin = normalise_origin(entry["origin"], config=file.name)
        if origin in seen:
            raise _error("origin_duplicate", origin=origin, config=file.name)
        seen.add(origin)
        key = load_manifest_key(entry["manifest_key"], origin=origin, config=file.name)
        result.append(AllowedOrigin(origin, key))
    return tuple(result)


def load_config(
    machine_path: Path | None = None,
    user_path: Path | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    system: str = sys.platform,
    state_dir: Path | None = None,
    fs: FileSystem = REAL_FS,
    registry: MachineRegistry | None = None,
) -> AgentConfig:
    """Read the machine file, then the user file, over the defaults; validate everything.

    ``machine_path`` is given by ``--config PATH`` (development, the demo): such a file must
    exist. The default files may be missing, which means defaults. On POSIX the default machine
    file must be root-owned and not writable by others, like everything it lets the agent trust.
    On Windows (without ``--config``) the registry's machine settings are merged in; ``registry``
    stands in for the Windows registry in tests.
    """
    explicit_machine = machine_path is not None
    machine = machine_path if machine_path is not None else default_machine_config_path(system, env)
    user = user_path if user_path is not None else default_user_config_path(system, env)

    values: dict[str, Any] = {}
    if explicit_machine:
        if not machine.exists():
            raise _error("file_missing", config=machine)
    elif is_windows(system) and fs.exists(str(machine)):
        # Any user may create folders and files under %ProgramData%: a file there is trusted
        # only when an administrator (or SYSTEM) owns it, whatever the folder's ACL.
        if not fs.owner_is_administrator(str(machine)):
            raise _error("machine_config_not_admin", config=machine)
    elif fs.exists(str(machine)):
        check_admin_owned_file(machine, fs)
    if machine.exists():
        values.update(_machine_values(_read_toml(machine), system))
    if is_windows(system) and not explicit_machine:
        # The MSI's silent-install settings (HKLM\Software\Kyso\Agent): agent/winreg_config.py.
        registry = registry if registry is not None else default_registry(system)
        values = apply_machine_registry(values, registry, config=machine)
    locked = frozenset(OFFICER_KEYS & set(values))
    if user.exists():
        user_file = _read_toml(user)
        officer = _officer_values(user_file, system)
        values.update(_user_values(user_file, machine_file=False))
        for key, value in officer.items():
            if key in locked:
                log.warning("%s in %s ignored: the machine config sets it", key, user)
            else:
                values[key] = value
    values["machine_locked"] = locked

    return AgentConfig(
        **values,
        state_dir=state_dir if state_dir is not None else default_state_dir(system, env),
        machine_config_path=machine,
        user_config_path=user,
    )


def _machine_values(file: _TomlFile, system: str) -> dict[str, Any]:
    for key in file.data:
        if key not in _MACHINE_KEYS and key not in _USER_KEYS:
            raise _error("unknown_key", setting=key, config=file.name)
    values = _user_values(file, machine_file=True)
    for key in _INT_SETTINGS:
        if key in file.data:
            values[key] = _int_setting(file, key)
    if "pkcs11_module" in file.data:
        values["pkcs11_module"] = _module_setting(file, system)
    if "origins" in file.data:
        values["origins"] = _origins(file)
    return values


def _officer_values(file: _TomlFile, system: str) -> dict[str, Any]:
    """The user file's [officer] table (port, pkcs11_module), validated; removed from ``file``."""
    table = file.data.pop(OFFICER_TABLE, None)
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise _error("unknown_key", setting=OFFICER_TABLE, config=file.name)
    inner = _TomlFile(file.path, table)
    values: dict[str, Any] = {}
    for key in table:
        if key not in OFFICER_KEYS:
            raise _error("unknown_key", setting=f"{OFFICER_TABLE}.{key}", config=file.name)
    if "port" in table:
        values["port"] = _int_setting(inner, "port")
    if "pkcs11_module" in table:
        values["pkcs11_module"] = _module_setting(inner, system)
    return values


def _user_values(file: _TomlFile, *, machine_file: bool) -> dict[str, Any]:
    """The user-safe settings of a file; in the user file, any other key is an error."""
    for key in file.data:
        if key in _MACHINE_KEYS and not machine_file:
            raise _error("machine_key_in_user_file", setting=key, config=file.name)
        if key not in _MACHINE_KEYS and key not in _USER_KEYS:
            raise _error("unknown_key", setting=key, config=file.name)
    values: dict[str, Any] = {}
    if "language" in file.data:
        values["language"] = _language(file)
    for key in _BOOL_SETTINGS:
        if key in file.data:
            values[key] = _bool_setting(file, key)
    return values


def resolve_module(
    config: AgentConfig,
    *,
    system: str = sys.platform,
    fs: FileSystem = REAL_FS,
    env: Mapping[str, str] = os.environ,
) -> str:
    """The module to load: the machine config's, which must be safe, else the first discovered.

    A configured module that fails the check is an error (the agent refuses to start); it never
    falls back to discovery, which would hide the administrator's mistake or an attack.
    """
    if config.pkcs11_module is not None:
        return check_module_path(config.pkcs11_module, system=system, fs=fs, env=env)
    modules = discover_modules(system=system, fs=fs, env=env)
    if not modules:
        raise _error("no_module")
    return modules[0].path


__all__ = [
    "DEFAULT_PORT",
    "LOOPBACK_HOSTS",
    "MAX_BATCH",
    "REAL_FS",
    "AgentConfig",
    "AllowedOrigin",
    "ConfigError",
    "FileStat",
    "FileSystem",
    "KnownModule",
    "MachineRegistry",
    "ModuleEntry",
    "RealFileSystem",
    "check_module_path",
    "default_machine_config_path",
    "default_state_dir",
    "default_user_config_path",
    "discover_modules",
    "key_fingerprint",
    "load_config",
    "load_manifest_key",
    "module_table",
    "normalise_origin",
    "resolve_module",
]
