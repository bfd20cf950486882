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

Nothing here imports pkcs11 or Qt; filesystem access goes through ``FileSystem`` so that the
Windows rules can be tested on Linux.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import ntpath
import os
import posixpath
import re
import stat
import sys
import tomllib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.agent import i18n

if TYPE_CHECKING:
    from kyso.agent.winreg_config import MachineRegistry

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
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})

_MODULES_TABLE = Path(__file__).with_name("modules.toml")
_MAX_SYMLINKS = 40  # as Linux's own limit when resolving a path

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


class ConfigError(Exception):
    """A configuration problem that stops the agent; ``text`` tells the officer what to do."""

    def __init__(self, message_id: str, **values: object) -> None:
        self.message_id = message_id  # catalogue key, e.g. "config.unknown_key"
        self.values = values
        self.text = i18n.text(message_id, **values)
        super().__init__(f"{self.text.vi}\n{self.text.en}")


def _error(name: str, **values: object) -> ConfigError:
    return ConfigError(f"config.{name}", **values)


# ---------------------------------------------------------------------------------------------
# Filesystem access (injectable so that tests can describe a Windows disk on Linux)
# ---------------------------------------------------------------------------------------------


def _windows_owner_is_administrator(path: str) -> bool:  # pragma: no cover - Windows only
    """GetNamedSecurityInfoW's owner SID is BUILTIN\\Administrators or LocalSystem."""
    import ctypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    se_file_object, owner_security_information = 1, 0x1
    win_local_system_sid, win_builtin_administrators_sid = 22, 26
    owner = ctypes.c_void_p()
    descriptor = ctypes.c_void_p()
    status = advapi32.GetNamedSecurityInfoW(
        ctypes.c_wchar_p(path),
        se_file_object,
        owner_security_information,
        ctypes.byref(owner),
        None,
        None,
        None,
        ctypes.byref(descriptor),
    )
    if status != 0:
        return False
    try:
        return any(
            advapi32.IsWellKnownSid(owner, kind)
            for kind in (win_builtin_administrators_sid, win_local_system_sid)
        )
    finally:
        kernel32.LocalFree(descriptor)


@dataclass(frozen=True)
class FileStat:
    """What the module check needs of ``lstat``: the owner and the full mode (type + bits)."""

    uid: int
    mode: int


class FileSystem(Protocol):
    def exists(self, path: str) -> bool: ...

    def isfile(self, path: str) -> bool: ...

    def realpath(self, path: str) -> str: ...

    def lstat(self, path: str) -> FileStat:
        """Like os.lstat; raises OSError (FileNotFoundError when missing)."""
        ...

    def readlink(self, path: str) -> str: ...

    def owner_is_administrator(self, path: str) -> bool:
        """Windows: the file's owner is the Administrators group or SYSTEM."""
        ...


class RealFileSystem:
    """The machine's own filesystem."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def lstat(self, path: str) -> FileStat:
        st = os.lstat(path)
        return FileStat(uid=st.st_uid, mode=st.st_mode)

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def owner_is_administrator(self, path: str) -> bool:
        if sys.platform == "win32":
            return _windows_owner_is_administrator(path)
        return os.lstat(path).st_uid == 0


REAL_FS: FileSystem = RealFileSystem()


def _is_windows(system: str) -> bool:
    return system == "win32" or system == "cygwin"


def _env_get(env: Mapping[str, str], name: str, *, windows: bool) -> str | None:
    """An environment variable; Windows names are case-insensitive."""
    value = env.get(name)
    if value is None and windows:
        upper = name.upper()
        value = next((v for k, v in env.items() if k.upper() == upper), None)
    return value or None


# ---------------------------------------------------------------------------------------------
# Where the files are
# ---------------------------------------------------------------------------------------------


def _home(env: Mapping[str, str], *, windows: bool) -> str:
    home = _env_get(env, "USERPROFILE" if windows else "HOME", windows=windows)
    return home or str(Path.home())


def _xdg(env: Mapping[str, str], name: str, fallback: str) -> str:
    # The XDG spec says a relative value is invalid and must be ignored.
    value = env.get(name)
    return value if value and value.startswith("/") else fallback


def default_machine_config_path(
    system: str = sys.platform, env: Mapping[str, str] = os.environ
) -> Path:
    """The admin-owned, per-machine file."""
    if _is_windows(system):
        base = _env_get(env, "ProgramData", windows=True) or "C:\\ProgramData"
        return Path(str(PureWindowsPath(base, "Kyso", "agent.toml")))
    if system == "darwin":
        return Path("/Library/Application Support/Kyso/agent.toml")
    return Path("/etc/kyso/agent.toml")


def default_user_config_path(
    system: str = sys.platform, env: Mapping[str, str] = os.environ
) -> Path:
    """The officer's own file (roaming on Windows, XDG on Linux)."""
    if _is_windows(system):
        base = _env_get(env, "APPDATA", windows=True) or str(
            PureWindowsPath(_home(env, windows=True), "AppData", "Roaming")
        )
        return Path(str(PureWindowsPath(base, "Kyso", "agent.toml")))
    home = _home(env, windows=False)
    if system == "darwin":
        return Path(home, "Library", "Application Support", "Kyso", "agent.toml")
    return Path(_xdg(env, "XDG_CONFIG_HOME", f"{home}/.config"), "kyso", "agent.toml")


def default_state_dir(system: str = sys.platform, env: Mapping[str, str] = os.environ) -> Path:
    """Per-user, per-machine state (the replay guard); not created here."""
    if _is_windows(system):
        base = _env_get(env, "LOCALAPPDATA", windows=True) or str(
            PureWindowsPath(_home(env, windows=True), "AppData", "Local")
        )
        return Path(str(PureWindowsPath(base, "Kyso")))
    home = _home(env, windows=False)
    if system == "darwin":
        return Path(home, "Library", "Application Support", "Kyso")
    return Path(_xdg(env, "XDG_STATE_HOME", f"{home}/.local/state"), "kyso")


# ---------------------------------------------------------------------------------------------
# Origins (threat 1) and their manifest keys
# ---------------------------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4_LIKE = re.compile(r"[0-9]+|0x[0-9a-f]*")  # WHATWG: such a last label makes it an IPv4 host
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _ipv6_serialisation(text: str) -> str:
    """An IPv6 address written as browsers serialise it (WHATWG URL, "IPv6 serializer")."""
    packed = ipaddress.IPv6Address(text).packed
    pieces = [int.from_bytes(packed[i : i + 2]) for i in range(0, 16, 2)]
    best_start, best_len, i = -1, 1, 0
    while i < 8:  # the first longest run of at least two zero pieces is compressed
        if pieces[i] == 0:
            j = i
            while j < 8 and pieces[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    hexes = [format(p, "x") for p in pieces]
    if best_start < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len :])


def _host(raw: str, origin: str, config: str) -> str:
    """The normalised host, or ConfigError. Only forms a browser would send back unchanged."""
    bad = _error("origin_host", origin=origin, config=config)
    if raw.startswith("["):
        if not raw.endswith("]") or "%" in raw:  # zone ids never appear in an Origin
            raise bad
        try:
            return f"[{_ipv6_serialisation(raw[1:-1])}]"
        except ValueError:
            raise bad from None
    host = raw.lower()
    if not host or len(host) > 253:
        raise bad
    labels = host.split(".")
    if _IPV4_LIKE.fullmatch(labels[-1]):
        # Browsers turn 127.1 or 0x7f.0.0.1 into 127.0.0.1: only the canonical form can match.
        try:
            if str(ipaddress.IPv4Address(host)) == host:
                return host
        except ValueError:
            pass
        raise bad
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise bad
        if label.startswith("xn--"):
            # Only a typo check: a browser would refuse the label, so it could never match.
            try:
                decoded = label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                raise bad from None
            if decoded.isascii() or not decoded.isprintable():
                raise bad
    return host


def normalise_origin(value: str, *, config: str = "<code>") -> str:
    """The serialisation of an origin (scheme://host[:port]) exactly as a browser sends it.

    Strict on purpose: a path, userinfo, wildcard, non-ASCII or malformed host is an error, not
    something to repair, because the allowlist is only as good as its exactness (threat 1).
    """
    if not value.isascii():
        raise _error("origin_not_ascii", origin=value, config=config)
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _error("origin_invalid", origin=value, config=config)
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or not rest:
        raise _error("origin_invalid", origin=value, config=config)
    if scheme not in _DEFAULT_PORTS:
        raise _error("origin_scheme", origin=value, config=config)
    if "*" in rest:
        raise _error("origin_wildcard", origin=value, config=config)
    if "@" in rest:
        raise _error("origin_has_userinfo", origin=value, config=config)
    if any(ch in rest for ch in "/?#\\"):
        raise _error("origin_has_path", origin=value, config=config)
    if rest.startswith("["):
        end = rest.find("]")
        host_raw, after = (rest[: end + 1], rest[end + 1 :]) if end >= 0 else (rest, "")
        if after and not after.startswith(":"):
            raise _error("origin_invalid", origin=value, config=config)
        port_raw: str | None = after[1:] if after else None
    else:
        host_raw, colon, port_text = rest.partition(":")
        port_raw = port_text if colon else None
    host = _host(host_raw, value, config)
    port: int | None = None
    if port_raw is not None:
        if not port_raw.isdigit() or not 1 <= int(port_raw) <= 65535:
            raise _error("origin_port", origin=value, config=config)
        port = int(port_raw)
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise _error("origin_scheme", origin=value, config=config)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


_PEM_PUBLIC_KEY = re.compile(
    r"-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]+-----END PUBLIC KEY-----", re.ASCII
)


def load_manifest_key(
    pem: str | bytes, *, origin: str = "", config: str = "<code>"
) -> ec.EllipticCurvePublicKey:
    """A platform's manifest verification key: one PEM SubjectPublicKeyInfo, EC P-256 (ES256)."""
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    if not _PEM_PUBLIC_KEY.fullmatch(text.strip()):
        raise _error("manifest_key_invalid", origin=origin, config=config)
    try:
        key = serialization.load_pem_public_key(text.strip().encode("ascii"))
    except (ValueError, UnsupportedAlgorithm):
        raise _error("manifest_key_invalid", origin=origin, config=config) from None
    return _require_p256(key, origin, config)


def _require_p256(key: object, origin: str, config: str) -> ec.EllipticCurvePublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        kind = f"EC {key.curve.name}"
    else:
        kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
        kind = kind or "?"
    raise _error("manifest_key_not_p256", origin=origin, config=config, kind=kind)


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo: how a key is named in logs and the UI."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class AllowedOrigin:
    """A web page origin allowed to talk to the agent, and the key its manifests must verify with.

    The origin is normalised on construction, so an instance can only hold a value that a browser
    may send byte for byte.
    """

    origin: str
    manifest_key: ec.EllipticCurvePublicKey = field(compare=False, repr=False)
    manifest_key_fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", normalise_origin(self.origin))
        _require_p256(self.manifest_key, self.origin, "<code>")
        object.__setattr__(self, "manifest_key_fingerprint", key_fingerprint(self.manifest_key))

    @classmethod
    def create(
        cls, origin: str, manifest_key: ec.EllipticCurvePublicKey | str | bytes
    ) -> AllowedOrigin:
        """From an origin and a key object or PEM text (tests, tools)."""
        if isinstance(manifest_key, str | bytes):
            manifest_key = load_manifest_key(manifest_key, origin=origin)
        return cls(origin, manifest_key)


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


def _is_absolute(path: str, system: str) -> bool:
    if _is_windows(system):
        drive, tail = ntpath.splitdrive(path)
        return bool(re.fullmatch(r"[A-Za-z]:", drive)) and tail[:1] in ("\\", "/")
    return path.startswith("/")


def _module_setting(file: _TomlFile, system: str) -> str:
    value = file.data["pkcs11_module"]
    if not isinstance(value, str):
        raise _error("not_string", setting="pkcs11_module", config=file.name)
    unc = _is_windows(system) and value.startswith(("\\\\", "//"))
    if not unc and not _is_absolute(value, system):
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


def _check_admin_owned_file(path: Path, fs: FileSystem) -> None:
    """The default machine file must be as protected as a module (POSIX): it says whom to trust."""
    try:
        _posix_walk(str(path), fs)
    except _UnsafeFolder as exc:
        raise _error("machine_config_unsafe", config=path, folder=exc.folder) from None
    except (_Missing, _LinkLoop, _NotRegular, OSError):
        raise _error("file_unreadable", config=path, error="not a regular file") from None


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
    elif _is_windows(system) and fs.exists(str(machine)):
        # Any user may create folders and files under %ProgramData%: a file there is trusted
        # only when an administrator (or SYSTEM) owns it, whatever the folder's ACL.
        if not fs.owner_is_administrator(str(machine)):
            raise _error("machine_config_not_admin", config=machine)
    elif fs.exists(str(machine)):
        _check_admin_owned_file(machine, fs)
    if machine.exists():
        values.update(_machine_values(_read_toml(machine), system))
    if _is_windows(system) and not explicit_machine:
        # The MSI's silent-install settings (HKLM\Software\Kyso\Agent): agent/winreg_config.py.
        from kyso.agent.winreg_config import apply_machine_registry, default_registry

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


# ---------------------------------------------------------------------------------------------
# PKCS#11 module path safety (threat 4)
# ---------------------------------------------------------------------------------------------


class _UnsafeFolder(Exception):
    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.folder = folder


class _Missing(Exception):
    pass


class _NotRegular(Exception):
    pass


class _LinkLoop(Exception):
    pass


def _require_admin_only(path: str, st: FileStat) -> None:
    if st.uid != 0 or st.mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _UnsafeFolder(path)


def _posix_walk(path: str, fs: FileSystem) -> str:
    """Resolve ``path`` one component at a time, checking every folder, link and the file.

    Everything the kernel would traverse to open the file must be root-owned and not writable by
    group or others; otherwise someone other than the administrator could swap the library (or a
    link or folder on its way) for their own. Returns the resolved path.
    """
    pending: deque[str] = deque(path.split("/"))
    current = "/"
    last = fs.lstat("/")
    _require_admin_only("/", last)
    links = 0
    while pending:
        name = pending.popleft()
        if name in ("", "."):
            continue
        if name == "..":
            current = posixpath.dirname(current)  # already checked on the way in
            last = fs.lstat(current)
            continue
        candidate = posixpath.join(current, name)
        try:
            st = fs.lstat(candidate)
        except FileNotFoundError:
            raise _Missing(candidate) from None
        except NotADirectoryError:
            raise _Missing(candidate) from None
        if stat.S_ISLNK(st.mode):
            # A link's own mode bits mean nothing; who owns it (and its folder) does.
            if st.uid != 0:
                raise _UnsafeFolder(candidate)
            links += 1
            if links > _MAX_SYMLINKS:
                raise _LinkLoop(candidate)
            target = fs.readlink(candidate)
            if target.startswith("/"):
                current = "/"
            pending.extendleft(reversed(target.split("/")))
            continue
        _require_admin_only(candidate, st)
        if pending and not stat.S_ISDIR(st.mode):
            raise _Missing(candidate)  # the kernel would answer ENOTDIR
        current, last = candidate, st
    if not stat.S_ISREG(last.mode):
        raise _NotRegular(current)
    return current


def _windows_roots(env: Mapping[str, str]) -> list[str]:
    """Folders where only administrators can create or change files.

    Under %SystemRoot% only System32 and SysWOW64 count: C:\\Windows\\Temp, \\Tasks, \\Tracing
    and a few System32 subfolders are writable by users (see ``_WINDOWS_USER_WRITABLE``).
    """
    roots: list[str] = []
    for name, default, subfolders in (
        ("SystemRoot", "C:\\Windows", ("System32", "SysWOW64")),
        ("ProgramFiles", "C:\\Program Files", ("",)),
        ("ProgramFiles(x86)", "C:\\Program Files (x86)", ("",)),
    ):
        base = _env_get(env, name, windows=True) or default
        if not _is_absolute(base, "win32") or base.startswith(("\\\\", "//")):
            continue  # a relative or network value cannot name a protected folder
        for sub in subfolders:
            roots.append(ntpath.normpath(ntpath.join(base, sub)) if sub else ntpath.normpath(base))
    return roots


# Subfolders of System32 / SysWOW64 where standard users can create files (AppLocker bypass lists).
_WINDOWS_USER_WRITABLE = (
    "Tasks",
    "Tasks_Migrated",
    "spool",
    "com\\dmp",
    "FxsTmp",
    "Microsoft\\Crypto\\RSA\\MachineKeys",
)


def _windows_allowed(path: str, roots: list[str]) -> bool:
    lowered = ntpath.normcase(path)
    for root in roots:
        prefix = ntpath.normcase(root).rstrip("\\") + "\\"
        if not lowered.startswith(prefix):
            continue
        rest = lowered[len(prefix) :]
        system_folder = ntpath.basename(ntpath.normcase(root)) in ("system32", "syswow64")
        user_writable = system_folder and any(
            rest.startswith(ntpath.normcase(sub) + "\\") for sub in _WINDOWS_USER_WRITABLE
        )
        return not user_writable
    return False


def _strip_extended_prefix(path: str) -> str:
    # Windows' realpath may answer \\?\C:\...; \\?\UNC\server\share stays a network path.
    if path.startswith("\\\\?\\") and re.match(r"[A-Za-z]:\\", path[4:]):
        return path[4:]
    return path


def _check_windows(path: str, fs: FileSystem, env: Mapping[str, str]) -> str:
    if path.startswith(("\\\\", "//")):
        raise _error("module_unc", path=path)
    if not _is_absolute(path, "win32"):
        raise _error("module_not_absolute", path=path)
    roots = _windows_roots(env)
    allowed = ", ".join(roots)
    if ":" in ntpath.splitdrive(path)[1]:  # an alternate data stream is not a module file
        raise _error("module_not_file", path=path)
    given = ntpath.normpath(path)  # folds "..", so C:\Windows\..\Users\x is judged as C:\Users\x
    if not _windows_allowed(given, roots):
        raise _error("module_windows_location", path=path, allowed=allowed)
    if not fs.exists(given):
        raise _error("module_missing", path=path)
    resolved = _strip_extended_prefix(fs.realpath(given))
    if resolved.startswith(("\\\\", "//")):
        raise _error("module_unc", path=resolved)
    resolved = ntpath.normpath(resolved)
    if not _windows_allowed(resolved, roots):
        raise _error("module_windows_location", path=resolved, allowed=allowed)
    if not fs.isfile(resolved):
        raise _error("module_not_file", path=path)
    return resolved


def _check_posix(path: str, fs: FileSystem) -> str:
    if not path.startswith("/"):
        raise _error("module_not_absolute", path=path)
    try:
        resolved = _posix_walk(path, fs)
    except _Missing:
        raise _error("module_missing", path=path) from None
    except _NotRegular:
        raise _error("module_not_file", path=path) from None
    except _LinkLoop:
        raise _error("module_link_loop", path=path) from None
    except _UnsafeFolder as exc:
        raise _error("module_unsafe", path=path, folder=exc.folder) from None
    except OSError as exc:
        raise _error("module_missing", path=f"{path} ({exc.strerror or exc})") from None
    # The platform's own resolution must agree with the walk (else something changed under us).
    if fs.realpath(path) != resolved:
        raise _error("module_unsafe", path=path, folder=fs.realpath(path))
    return resolved


def check_module_path(
    path: str,
    *,
    system: str = sys.platform,
    fs: FileSystem = REAL_FS,
    env: Mapping[str, str] = os.environ,
) -> str:
    """Refuse a PKCS#11 module that a user (or malware running as the user) could have placed.

    POSIX: absolute, an existing regular file, and the file, each folder and each symlink on the
    way to it (symlinks resolved) root-owned and not writable by group or others. Windows:
    absolute, not a network or device path, and both the given and the resolved path inside
    %SystemRoot%\\System32 (or SysWOW64), %ProgramFiles% or %ProgramFiles(x86)%.

    Returns the resolved path, which is the one to load.
    """
    if _is_windows(system):
        return _check_windows(path, fs, env)
    return _check_posix(path, fs)


# ---------------------------------------------------------------------------------------------
# Module discovery (modules.toml)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownModule:
    """An installed token driver from the table: who makes it, what the officer sees, its path."""

    vendor: str
    name: str
    path: str  # resolved and checked by check_module_path
    issuers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModuleEntry:
    """One row of modules.toml, before looking at the disk."""

    vendor: str
    name: str
    paths: tuple[str, ...]
    issuers: tuple[str, ...] = ()


_TABLE_SECTIONS = {"windows", "linux", "macos"}
_PLACEHOLDER = re.compile(r"%([^%]*)%")
_WINDOWS_PLACEHOLDERS = {
    "systemroot": ("SystemRoot", "C:\\Windows"),
    "programfiles": ("ProgramFiles", "C:\\Program Files"),
    "programfiles(x86)": ("ProgramFiles(x86)", "C:\\Program Files (x86)"),
}


def _table_section(system: str) -> str | None:
    if _is_windows(system):
        return "windows"
    if system == "darwin":
        return "macos"
    if system.startswith("linux"):
        return "linux"
    return None


@cache
def module_table() -> dict[str, tuple[ModuleEntry, ...]]:
    """modules.toml, validated (a malformed table is a packaging bug: RuntimeError)."""
    with _MODULES_TABLE.open("rb") as fh:
        data = tomllib.load(fh)
    table: dict[str, tuple[ModuleEntry, ...]] = {}
    for section, rows in data.items():
        if section not in _TABLE_SECTIONS or not isinstance(rows, list):
            raise RuntimeError(f"modules.toml: unexpected section {section!r}")
        entries: list[ModuleEntry] = []
        for row in rows:
            if not isinstance(row, dict) or set(row) - {"vendor", "name", "paths", "issuers"}:
                raise RuntimeError(f"modules.toml: bad entry in [{section}]: {row!r}")
            vendor, name = row.get("vendor"), row.get("name")
            paths, issuers = row.get("paths"), row.get("issuers", [])
            if not (
                isinstance(vendor, str)
                and isinstance(name, str)
                and isinstance(paths, list)
                and paths
                and all(isinstance(p, str) for p in paths)
                and isinstance(issuers, list)
                and all(isinstance(i, str) for i in issuers)
            ):
                raise RuntimeError(f"modules.toml: bad entry in [{section}]: {row!r}")
            entries.append(ModuleEntry(vendor, name, tuple(paths), tuple(issuers)))
        table[section] = tuple(entries)
    return table


def _expand(template: str, env: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        known = _WINDOWS_PLACEHOLDERS.get(match.group(1).lower())
        if known is None:
            raise RuntimeError(f"modules.toml: unknown placeholder {match.group(0)}")
        name, default = known
        return _env_get(env, name, windows=True) or default

    return _PLACEHOLDER.sub(value, template)


def discover_modules(
    *,
    system: str = sys.platform,
    fs: FileSystem = REAL_FS,
    env: Mapping[str, str] = os.environ,
) -> list[KnownModule]:
    """The installed, safe modules of the table, in table order (one per entry, no duplicates).

    A driver that is installed but fails check_module_path is skipped with a warning: it may be
    a planted library, and another entry may still work.
    """
    section = _table_section(system)
    if section is None:
        return []
    found: list[KnownModule] = []
    seen: set[str] = set()
    for entry in module_table().get(section, ()):
        for template in entry.paths:
            candidate = _expand(template, env) if section == "windows" else template
            if not fs.exists(candidate):
                continue
            try:
                resolved = check_module_path(candidate, system=system, fs=fs, env=env)
            except ConfigError as exc:
                log.warning("skipping PKCS#11 module %s: %s", candidate, exc.text.en)
                continue
            key = ntpath.normcase(resolved) if section == "windows" else resolved
            if key in seen:
                continue
            seen.add(key)
            found.append(KnownModule(entry.vendor, entry.name, resolved, entry.issuers))
            break
    return found


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
