"""Config files, origin allowlist (threat 1) and PKCS#11 module safety (threat 4).

Windows paths are checked on Linux through a fake filesystem; the POSIX rules are checked both on
the real disk (/tmp, the installed SoftHSM) and on a fake one for owners and links that a test
running as root cannot create.
"""

from __future__ import annotations

import hashlib
import ntpath
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kyso.agent import config as cfg
from kyso.agent import i18n, module_path
from kyso.agent import modules as agent_modules
from kyso.agent.config import (
    AgentConfig,
    AllowedOrigin,
    ConfigError,
    FileStat,
    check_module_path,
    discover_modules,
    load_config,
    normalise_origin,
    resolve_module,
)

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@contextmanager
def config_error(name: str) -> Iterator[pytest.ExceptionInfo[ConfigError]]:
    """Expect a ConfigError with this message, both languages filled in."""
    with pytest.raises(ConfigError) as info:
        yield info
    assert info.value.message_id == f"config.{name}", str(info.value)
    text = info.value.text
    assert text.vi
    assert text.en
    assert "—" not in text.vi + text.en, "a placeholder was not filled"


def pem(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


P256 = ec.generate_private_key(ec.SECP256R1()).public_key()
P256_OTHER = ec.generate_private_key(ec.SECP256R1()).public_key()
ALLOWED = "https://allowed.example"
TIEMCHUNG = "https://tiemchung.example.vn"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def origins_toml(*entries: tuple[str, str]) -> str:
    return "".join(
        f'[[origins]]\norigin = "{origin}"\nmanifest_key = """\n{key}"""\n\n'
        for origin, key in entries
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A Linux environment whose per-user folders are inside tmp_path."""
    return {"HOME": str(tmp_path / "home")}


@pytest.fixture
def no_user_file(tmp_path: Path) -> Path:
    return tmp_path / "missing-user.toml"


def load(machine: Path | None, user: Path | None, env: dict[str, str]) -> AgentConfig:
    return load_config(machine, user, env=env, system="linux")


# ---------------------------------------------------------------------------------------------
# Fake filesystems
# ---------------------------------------------------------------------------------------------

DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o644
LINK = stat.S_IFLNK | 0o777


class FakePosixFS:
    """Paths -> (owner, mode[, link target]); parents must be listed explicitly."""

    def __init__(self, entries: Mapping[str, tuple[int, int] | tuple[int, int, str]]) -> None:
        self.entries: dict[str, tuple[int, int] | tuple[int, int, str]] = {"/": (0, DIR), **entries}

    def _get(self, path: str) -> tuple[int, int] | tuple[int, int, str]:
        try:
            return self.entries[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    def lstat(self, path: str) -> FileStat:
        entry = self._get(path)
        return FileStat(uid=entry[0], mode=entry[1])

    def readlink(self, path: str) -> str:
        entry = self._get(path)
        assert len(entry) == 3
        return entry[2]

    def owner_is_administrator(self, path: str) -> bool:
        return self._get(path)[0] == 0

    def realpath(self, path: str) -> str:
        return self._resolve(path)

    def _resolve(self, path: str, depth: int = 0) -> str:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        current = "/"
        while parts:
            name = parts.pop(0)
            if name == "..":
                current = os.path.dirname(current)
                continue
            candidate = os.path.join(current, name)
            entry = self.entries.get(candidate)
            if entry is not None and len(entry) == 3 and depth < 50:
                target = entry[2]
                base = "/" if target.startswith("/") else current
                resolved = self._resolve(os.path.join(base, target), depth + 1)
                current = resolved
                continue
            current = candidate
        return current

    def exists(self, path: str) -> bool:
        return self._resolve(path) in self.entries

    def isfile(self, path: str) -> bool:
        entry = self.entries.get(self._resolve(path))
        return entry is not None and stat.S_ISREG(entry[1])


def posix_tree(*files: str, owner: int = 0) -> dict[str, tuple[int, int]]:
    """Root-owned 755 folders down to each file (0644, given owner)."""
    entries: dict[str, tuple[int, int]] = {}
    for path in files:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            entries["/" + "/".join(parts[:i])] = (0, DIR)
        entries[path] = (owner, FILE)
    return entries


class FakeWindowsFS:
    """Files of a Windows disk (case-insensitive) and optional symlinks/junctions."""

    def __init__(
        self,
        files: list[str],
        links: dict[str, str] | None = None,
        user_owned: frozenset[str] = frozenset(),
    ) -> None:
        self.files = {ntpath.normcase(f) for f in files}
        self.links = {ntpath.normcase(k): v for k, v in (links or {}).items()}
        self.user_owned = {ntpath.normcase(f) for f in user_owned}

    def owner_is_administrator(self, path: str) -> bool:
        return ntpath.normcase(path) not in self.user_owned

    def realpath(self, path: str) -> str:
        return self.links.get(ntpath.normcase(path), path)

    def exists(self, path: str) -> bool:
        key = ntpath.normcase(path)
        return key in self.files or key in self.links

    def isfile(self, path: str) -> bool:
        return ntpath.normcase(path) in self.files or (
            ntpath.normcase(self.realpath(path)) in self.files
        )

    def lstat(self, path: str) -> FileStat:
        raise AssertionError("no lstat on Windows")

    def readlink(self, path: str) -> str:
        raise AssertionError("no readlink on Windows")


WIN_ENV = {
    "SystemRoot": "C:\\Windows",
    "ProgramFiles": "C:\\Program Files",
    "ProgramFiles(x86)": "C:\\Program Files (x86)",
    "APPDATA": "C:\\Users\\x\\AppData\\Roaming",
    "LOCALAPPDATA": "C:\\Users\\x\\AppData\\Local",
    "ProgramData": "C:\\ProgramData",
    "USERPROFILE": "C:\\Users\\x",
}


def win_check(path: str, fs: FakeWindowsFS, env: dict[str, str] = WIN_ENV) -> str:
    return check_module_path(path, system="win32", fs=fs, env=env)


# ---------------------------------------------------------------------------------------------
# Files, defaults and layering
# ---------------------------------------------------------------------------------------------


def test_defaults_when_no_file_exists(env: dict[str, str], no_user_file: Path) -> None:
    if cfg.default_machine_config_path("linux").exists():
        pytest.skip("this machine has a real /etc/kyso/agent.toml")
    config = load(None, no_user_file, env)
    assert config.port == 47321
    assert config.batch_cap == 3000
    assert config.max_connections == 8
    assert config.max_message_bytes == 1024 * 1024
    assert config.manifest_max_lifetime_seconds == 3600
    assert config.pkcs11_module is None
    assert config.origins == ()
    assert config.language == "vi"
    assert config.start_at_login is True
    assert config.listen_at_launch is True
    assert config.machine_config_path == Path("/etc/kyso/agent.toml")
    assert config.user_config_path == no_user_file
    assert config.state_dir == Path(env["HOME"], ".local/state/kyso")
    assert not config.state_dir.exists(), "loading must not create the state folder"
    assert config.origin(ALLOWED) is None


def test_explicit_machine_file_must_exist(tmp_path: Path, env: dict[str, str]) -> None:
    with config_error("file_missing") as info:
        load(tmp_path / "nope.toml", None, env)
    assert "nope.toml" in info.value.text.en


def test_machine_file_values(tmp_path: Path, env: dict[str, str], no_user_file: Path) -> None:
    machine = write(
        tmp_path / "agent.toml",
        "port = 50000\nbatch_cap = 1000\nmax_connections = 4\nmax_message_bytes = 2097152\n"
        'manifest_max_lifetime_seconds = 600\npkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"\n'
        + origins_toml((TIEMCHUNG, pem(P256)), ("http://127.0.0.1:8080", pem(P256_OTHER))),
    )
    config = load(machine, no_user_file, env)
    assert (config.port, config.batch_cap, config.max_connections) == (50000, 1000, 4)
    assert config.max_message_bytes == 2097152
    assert config.manifest_max_lifetime_seconds == 600
    assert config.pkcs11_module == "/usr/lib/softhsm/libsofthsm2.so"
    assert [o.origin for o in config.origins] == [TIEMCHUNG, "http://127.0.0.1:8080"]
    assert config.origins[0].manifest_key.public_numbers() == P256.public_numbers()
    assert config.machine_config_path == machine


def test_user_file_overrides_machine_defaults(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(
        tmp_path / "machine.toml",
        'language = "en"\nstart_at_login = false\nlisten_at_launch = false\nport = 50001\n',
    )
    user = write(tmp_path / "user.toml", 'language = "vi"\nlisten_at_launch = true\n')
    config = load(machine, user, env)
    assert config.language == "vi"  # the user's choice wins
    assert config.listen_at_launch is True
    assert config.start_at_login is False  # machine default kept
    assert config.port == 50001


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("port = 50000", "port"),
        ("batch_cap = 10", "batch_cap"),
        ("max_connections = 100", "max_connections"),
        ("max_message_bytes = 100000", "max_message_bytes"),
        ('pkcs11_module = "/tmp/evil.so"', "pkcs11_module"),
        ("manifest_max_lifetime_seconds = 86400", "manifest_max_lifetime_seconds"),
        ('[[origins]]\norigin = "https://evil.example"\nmanifest_key = "x"', "origins"),
    ],
)
def test_user_file_cannot_set_machine_settings(
    tmp_path: Path, env: dict[str, str], line: str, key: str
) -> None:
    user = write(tmp_path / "user.toml", f'language = "en"\n{line}\n')
    with config_error("machine_key_in_user_file") as info:
        load(None, user, env)
    assert info.value.values["setting"] == key
    assert key in info.value.text.vi
    assert key in info.value.text.en
    assert str(user) in info.value.text.en


@pytest.mark.parametrize("where", ["machine", "user"])
def test_unknown_key_names_key_and_file(tmp_path: Path, env: dict[str, str], where: str) -> None:
    path = write(tmp_path / f"{where}.toml", "port_number = 1\n")
    with config_error("unknown_key") as info:
        if where == "machine":
            load(path, None, env)
        else:
            load(None, path, env)
    assert "port_number" in info.value.text.en
    assert str(path) in info.value.text.vi


def test_unknown_key_in_origin_entry(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(
        tmp_path / "m.toml",
        origins_toml((TIEMCHUNG, pem(P256))) + 'path = "/sign"\n',
    )
    with config_error("unknown_key") as info:
        load(machine, None, env)
    assert "origins[1].path" in info.value.text.en


def test_unknown_table_is_unknown_key(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(tmp_path / "m.toml", "[server]\nport = 1\n")
    with config_error("unknown_key") as info:
        load(machine, None, env)
    assert info.value.values["setting"] == "server"


@pytest.mark.parametrize(
    ("text", "error", "key"),
    [
        ('port = "47321"', "not_integer", "port"),
        ("port = true", "not_integer", "port"),
        ("port = 4.5", "not_integer", "port"),
        ("port = 80", "out_of_range", "port"),
        ("port = 70000", "out_of_range", "port"),
        ("batch_cap = 3001", "out_of_range", "batch_cap"),
        ("batch_cap = 0", "out_of_range", "batch_cap"),
        ("max_connections = 0", "out_of_range", "max_connections"),
        ("max_message_bytes = 10", "out_of_range", "max_message_bytes"),
        ("manifest_max_lifetime_seconds = -1", "out_of_range", "manifest_max_lifetime_seconds"),
        ('start_at_login = "yes"', "not_boolean", "start_at_login"),
        ("listen_at_launch = 1", "not_boolean", "listen_at_launch"),
        ("language = 1", "not_string", "language"),
        ("pkcs11_module = 1", "not_string", "pkcs11_module"),
    ],
)
def test_wrong_types_and_ranges(
    tmp_path: Path, env: dict[str, str], text: str, error: str, key: str
) -> None:
    machine = write(tmp_path / "m.toml", text + "\n")
    with config_error(error) as info:
        load(machine, None, env)
    assert info.value.values["setting"] == key


def test_batch_cap_bounds_are_the_protocol_maximum(tmp_path: Path, env: dict[str, str]) -> None:
    assert load(write(tmp_path / "a.toml", "batch_cap = 3000\n"), None, env).batch_cap == 3000
    assert load(write(tmp_path / "b.toml", "batch_cap = 1\n"), None, env).batch_cap == 1


def test_language_must_be_vi_or_en(tmp_path: Path, env: dict[str, str]) -> None:
    user = write(tmp_path / "u.toml", 'language = "fr"\n')
    with config_error("language_invalid"):
        load(None, user, env)


def test_relative_module_path_refused_at_load(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(tmp_path / "m.toml", 'pkcs11_module = "libsofthsm2.so"\n')
    with config_error("module_relative") as info:
        load(machine, None, env)
    assert "libsofthsm2.so" in info.value.text.vi
    assert info.value.text.vi.startswith("Đường dẫn module PKCS#11 phải là đường dẫn tuyệt đối")


def test_origins_must_be_tables(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(tmp_path / "m.toml", f'origins = ["{TIEMCHUNG}"]\n')
    with config_error("origins_not_list"):
        load(machine, None, env)


def test_origin_entry_needs_a_key(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(tmp_path / "m.toml", f'[[origins]]\norigin = "{TIEMCHUNG}"\n')
    with config_error("origin_field_missing") as info:
        load(machine, None, env)
    assert info.value.values["field"] == "manifest_key"


def test_bad_toml_names_file_and_line(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(tmp_path / "m.toml", "port = 47321\n\nbatch_cap = = 3\n")
    with config_error("toml_invalid") as info:
        load(machine, None, env)
    assert info.value.values["line"] == 3
    assert str(machine) in info.value.text.en
    assert "3" in info.value.text.vi


def test_unterminated_string_is_reported(tmp_path: Path, env: dict[str, str]) -> None:
    user = write(tmp_path / "u.toml", 'language = "vi\n')
    with config_error("toml_invalid") as info:
        load(None, user, env)
    assert info.value.values["line"] == 1


def test_invalid_utf8_is_bad_toml(tmp_path: Path, env: dict[str, str]) -> None:
    machine = tmp_path / "m.toml"
    machine.write_bytes(b'port = 47321\nlanguage = "\xff"\n')
    with config_error("toml_invalid") as info:
        load(machine, None, env)
    assert info.value.values["line"] == 2


def test_default_paths_per_system() -> None:
    linux_env = {"HOME": "/home/cb"}
    assert cfg.default_machine_config_path("linux", linux_env) == Path("/etc/kyso/agent.toml")
    assert cfg.default_user_config_path("linux", linux_env) == Path(
        "/home/cb/.config/kyso/agent.toml"
    )
    assert cfg.default_state_dir("linux", linux_env) == Path("/home/cb/.local/state/kyso")
    xdg = {**linux_env, "XDG_CONFIG_HOME": "/x/conf", "XDG_STATE_HOME": "/x/state"}
    assert cfg.default_user_config_path("linux", xdg) == Path("/x/conf/kyso/agent.toml")
    assert cfg.default_state_dir("linux", xdg) == Path("/x/state/kyso")
    relative = {**linux_env, "XDG_CONFIG_HOME": "conf", "XDG_STATE_HOME": "state"}
    assert cfg.default_user_config_path("linux", relative) == Path(
        "/home/cb/.config/kyso/agent.toml"
    )
    assert cfg.default_state_dir("linux", relative) == Path("/home/cb/.local/state/kyso")

    win = {k.upper(): v for k, v in WIN_ENV.items()}  # Windows names are case-insensitive
    assert str(cfg.default_machine_config_path("win32", win)) == "C:\\ProgramData\\Kyso\\agent.toml"
    assert str(cfg.default_user_config_path("win32", win)) == (
        "C:\\Users\\x\\AppData\\Roaming\\Kyso\\agent.toml"
    )
    assert str(cfg.default_state_dir("win32", win)) == "C:\\Users\\x\\AppData\\Local\\Kyso"

    mac = {"HOME": "/Users/cb"}
    assert cfg.default_machine_config_path("darwin", mac) == Path(
        "/Library/Application Support/Kyso/agent.toml"
    )
    assert cfg.default_user_config_path("darwin", mac) == Path(
        "/Users/cb/Library/Application Support/Kyso/agent.toml"
    )


def test_state_dir_override(tmp_path: Path, env: dict[str, str], no_user_file: Path) -> None:
    machine = write(tmp_path / "m.toml", "")
    config = load_config(machine, no_user_file, env=env, system="linux", state_dir=tmp_path / "s")
    assert config.state_dir == tmp_path / "s"
    assert not (tmp_path / "s").exists()


def test_default_machine_file_must_be_admin_owned(tmp_path: Path) -> None:
    # /etc/kyso/agent.toml owned by a user (uid 1000): anyone running as that user could add an
    # origin, so the agent refuses it.
    fs = FakePosixFS(posix_tree("/etc/kyso/agent.toml", owner=1000))
    with config_error("machine_config_unsafe") as info:
        load_config(None, tmp_path / "u.toml", env={"HOME": str(tmp_path)}, system="linux", fs=fs)
    assert info.value.values["folder"] == "/etc/kyso/agent.toml"
    writable = posix_tree("/etc/kyso/agent.toml")
    writable["/etc/kyso"] = (0, stat.S_IFDIR | 0o777)
    with config_error("machine_config_unsafe"):
        load_config(
            None,
            tmp_path / "u.toml",
            env={"HOME": str(tmp_path)},
            system="linux",
            fs=FakePosixFS(writable),
        )


# ---------------------------------------------------------------------------------------------
# Origins (threat 1)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("https://tiemchung.example.vn", "https://tiemchung.example.vn"),
        ("HTTPS://TiemChung.Example.VN", "https://tiemchung.example.vn"),
        ("https://tiemchung.example.vn:443", "https://tiemchung.example.vn"),
        ("https://tiemchung.example.vn:8443", "https://tiemchung.example.vn:8443"),
        ("https://tiemchung.example.vn:08443", "https://tiemchung.example.vn:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:80", "http://localhost"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
        ("https://[2001:DB8:0:0:1:0:0:1]", "https://[2001:db8::1:0:0:1]"),
        ("https://192.0.2.10:443", "https://192.0.2.10"),
        ("https://xn--timchng-kya0120e.vn", "https://xn--timchng-kya0120e.vn"),
        ("https://XN--TIMCHNG-KYA0120E.vn", "https://xn--timchng-kya0120e.vn"),
    ],
)
def test_origin_normalisation(given: str, normalised: str) -> None:
    assert normalise_origin(given) == normalised
    assert normalise_origin(normalised) == normalised


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("", "origin_invalid"),
        ("null", "origin_invalid"),
        ("tiemchung.example.vn", "origin_invalid"),
        (" https://tiemchung.example.vn", "origin_invalid"),
        ("https://tiemchung.example.vn\n", "origin_invalid"),
        ("https://", "origin_invalid"),
        ("https://tiemchung.example.vn/", "origin_has_path"),
        ("https://tiemchung.example.vn/ky-so", "origin_has_path"),
        ("https://tiemchung.example.vn?x=1", "origin_has_path"),
        ("https://tiemchung.example.vn#x", "origin_has_path"),
        ("https://tiemchung.example.vn\\", "origin_has_path"),
        ("https://user:pw@tiemchung.example.vn", "origin_has_userinfo"),
        ("https://*.example.vn", "origin_wildcard"),
        ("*", "origin_invalid"),
        ("https://tiêmchủng.vn", "origin_not_ascii"),
        ("http://tiemchung.example.vn", "origin_scheme"),
        ("ws://tiemchung.example.vn", "origin_scheme"),
        ("file://", "origin_invalid"),
        ("https://tiemchung.example.vn:", "origin_port"),
        ("https://tiemchung.example.vn:0", "origin_port"),
        ("https://tiemchung.example.vn:65536", "origin_port"),
        ("https://tiemchung.example.vn:44a", "origin_port"),
        ("https://tiemchung.example.vn.", "origin_host"),
        ("https://tiemchung..vn", "origin_host"),
        ("https://-tiemchung.vn", "origin_host"),
        ("https://tiem_chung.vn", "origin_host"),
        ("https://127.1", "origin_host"),
        ("https://0x7f.0.0.1", "origin_host"),
        ("https://example.123", "origin_host"),
        ("https://[fe80::1%25eth0]", "origin_host"),
        ("https://[::1", "origin_host"),
        ("https://[::1]x", "origin_invalid"),
        ("https://xn--999999999999.vn", "origin_host"),
        ("https://xn--ab-.vn", "origin_host"),
    ],
)
def test_origin_refused(given: str, error: str) -> None:
    with config_error(error):
        normalise_origin(given)


@pytest.mark.parametrize("origin", ["http://127.0.0.1", "http://localhost:3000", "http://[::1]"])
def test_http_allowed_for_loopback(origin: str) -> None:
    assert normalise_origin(origin) == origin


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.2",
        "http://192.168.1.10",
        "http://localhost.evil.example",
        "http://[::2]",
        "http://tiemchung.example.vn",
    ],
)
def test_http_refused_elsewhere(origin: str) -> None:
    with config_error("origin_scheme"):
        normalise_origin(origin)


@pytest.fixture
def allowlist(tmp_path: Path, env: dict[str, str]) -> AgentConfig:
    machine = write(
        tmp_path / "m.toml",
        origins_toml(
            ("HTTPS://Allowed.Example:443", pem(P256)),
            (TIEMCHUNG, pem(P256_OTHER)),
            ("http://localhost:8000", pem(P256)),
        ),
    )
    return load(machine, None, env)


def test_exact_origin_matches(allowlist: AgentConfig) -> None:
    allowed = allowlist.origin(ALLOWED)
    assert allowed is not None
    assert allowed.origin == ALLOWED
    assert allowed.manifest_key.public_numbers() == P256.public_numbers()
    other = allowlist.origin(TIEMCHUNG)
    assert other is not None
    assert other.manifest_key.public_numbers() == P256_OTHER.public_numbers()
    assert allowlist.origin("http://localhost:8000") is not None


@pytest.mark.parametrize(
    "header",
    [
        "https://evil.example",
        "",
        "null",
        "http://allowed.example",  # http variant of an https origin
        "https://allowed.example:8443",  # other port
        "https://allowed.example:443",  # browsers never send the default port
        "https://allowed.example.evil.example",
        "https://evil-allowed.example",
        "https://sub.allowed.example",
        "https://xn--llowed-9ua.example",  # punycode look-alike (éllowed)
        "https://аllowed.example",  # Cyrillic а, not normalised by the agent
        "https://allowed.example/",  # trailing slash
        "https://ALLOWED.EXAMPLE",
        "HTTPS://allowed.example",
        " https://allowed.example",
        "https://allowed.example ",
        "https://allowed.example.",
        "wss://allowed.example",
        "https://tiemchung.example.vn:443",
        "http://localhost:8001",
        "http://127.0.0.1:8000",  # same machine, other name: another origin
        "https://allowed.example, https://evil.example",
    ],
)
def test_lookalike_origins_do_not_match(allowlist: AgentConfig, header: str) -> None:
    assert allowlist.origin(header) is None


def test_duplicate_origins_refused(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(
        tmp_path / "m.toml",
        origins_toml((TIEMCHUNG, pem(P256)), ("HTTPS://tiemchung.example.vn:443", pem(P256))),
    )
    with config_error("origin_duplicate") as info:
        load(machine, None, env)
    assert info.value.values["origin"] == TIEMCHUNG


def test_invalid_origin_in_file_names_the_file(tmp_path: Path, env: dict[str, str]) -> None:
    machine = write(tmp_path / "m.toml", origins_toml(("https://*.example.vn", pem(P256))))
    with config_error("origin_wildcard") as info:
        load(machine, None, env)
    assert str(machine) in info.value.text.en


# ---------------------------------------------------------------------------------------------
# Manifest keys
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (ec.generate_private_key(ec.SECP384R1()).public_key(), "secp384r1"),
        (ec.generate_private_key(ec.SECP256K1()).public_key(), "secp256k1"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), "RSA"),
        (ed25519.Ed25519PrivateKey.generate().public_key(), "Ed25519"),
    ],
)
def test_non_p256_key_refused(
    tmp_path: Path,
    env: dict[str, str],
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey,
    kind: str,
) -> None:
    machine = write(tmp_path / "m.toml", origins_toml((TIEMCHUNG, pem(key))))
    with config_error("manifest_key_not_p256") as info:
        load(machine, None, env)
    assert kind in info.value.text.en
    assert TIEMCHUNG in info.value.text.vi


@pytest.mark.parametrize(
    "text",
    [
        "not a key",
        "",
        pem(P256).replace("PUBLIC KEY", "RSA PUBLIC KEY"),
        pem(P256) + pem(P256_OTHER),
        pem(P256).replace("A", "*", 3),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
)
def test_unreadable_key_refused(tmp_path: Path, env: dict[str, str], text: str) -> None:
    machine = write(tmp_path / "m.toml", origins_toml((TIEMCHUNG, text)))
    with config_error("manifest_key_invalid"):
        load(machine, None, env)


def test_fingerprint_is_sha256_of_der_spki() -> None:
    allowed = AllowedOrigin.create(TIEMCHUNG, pem(P256))
    der = P256.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert allowed.manifest_key_fingerprint == hashlib.sha256(der).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", allowed.manifest_key_fingerprint)


def test_allowed_origin_normalises_and_checks_in_code() -> None:
    allowed = AllowedOrigin("HTTPS://TiemChung.Example.VN:443", P256)
    assert allowed.origin == TIEMCHUNG
    assert allowed == AllowedOrigin.create(TIEMCHUNG, P256)
    assert hash(allowed) == hash(AllowedOrigin(TIEMCHUNG, P256))
    assert allowed != AllowedOrigin(TIEMCHUNG, P256_OTHER)
    with config_error("manifest_key_not_p256"):
        AllowedOrigin(TIEMCHUNG, ec.generate_private_key(ec.SECP384R1()).public_key())
    with config_error("origin_has_path"):
        AllowedOrigin(TIEMCHUNG + "/", P256)


def test_config_is_frozen(allowlist: AgentConfig) -> None:
    with pytest.raises(AttributeError):
        allowlist.port = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# check_module_path on the real disk (POSIX)
# ---------------------------------------------------------------------------------------------


def test_relative_module_refused() -> None:
    with config_error("module_not_absolute"):
        check_module_path("libsofthsm2.so", system="linux")
    with config_error("module_not_absolute"):
        check_module_path("./lib/libsofthsm2.so", system="linux")


def test_module_in_tmp_refused() -> None:
    fd, name = tempfile.mkstemp(suffix=".so", dir="/tmp")
    os.close(fd)
    try:
        with config_error("module_unsafe") as info:
            check_module_path(name, system="linux")
        assert info.value.values["folder"] == "/tmp"
    finally:
        os.unlink(name)


def test_module_in_fresh_tmp_folder_refused() -> None:
    # A private 0700 folder with a root-owned 0644 file (the test runs as root): still refused,
    # because /tmp on the way is world-writable.
    folder = tempfile.mkdtemp(dir="/tmp")
    try:
        module = Path(folder, "libevil.so")
        module.write_bytes(b"\x7fELF")
        module.chmod(0o644)
        with config_error("module_unsafe") as info:
            check_module_path(str(module), system="linux")
        assert info.value.values["folder"] == "/tmp"
    finally:
        shutil.rmtree(folder)


def test_module_through_tmp_symlink_refused() -> None:
    real = "/usr/lib/softhsm/libsofthsm2.so"
    if not os.path.exists(real):
        pytest.skip("SoftHSM2 not installed")
    folder = tempfile.mkdtemp(dir="/tmp")
    try:
        link = Path(folder, "libsofthsm2.so")
        link.symlink_to(real)
        with config_error("module_unsafe"):
            check_module_path(str(link), system="linux")
    finally:
        shutil.rmtree(folder)


def test_missing_module_and_folder_refused() -> None:
    with config_error("module_missing"):
        check_module_path("/usr/lib/kyso-no-such-module.so", system="linux")
    with config_error("module_not_file"):
        check_module_path("/usr/lib", system="linux")


@pytest.mark.parametrize(
    "path",
    ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"],
)
def test_root_owned_installed_module_accepted(path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} not installed")
    resolved = os.path.realpath(path)
    st = os.stat(resolved)
    if st.st_uid != 0 or st.st_mode & 0o022:
        pytest.skip("the installed module is not root-owned here")
    assert check_module_path(path, system="linux") == resolved


# ---------------------------------------------------------------------------------------------
# check_module_path on a fake POSIX disk
# ---------------------------------------------------------------------------------------------

SOFTHSM = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"


def test_fake_posix_accepts_root_owned_chain() -> None:
    fs = FakePosixFS(posix_tree(SOFTHSM))
    assert check_module_path(SOFTHSM, system="linux", fs=fs) == SOFTHSM
    dotted = "/usr/lib/../lib/./x86_64-linux-gnu/softhsm/libsofthsm2.so"
    assert check_module_path(dotted, system="linux", fs=fs) == SOFTHSM


@pytest.mark.parametrize(
    ("change", "folder"),
    [
        ({SOFTHSM: (1000, FILE)}, SOFTHSM),  # file owned by a user
        ({SOFTHSM: (0, stat.S_IFREG | 0o666)}, SOFTHSM),  # world-writable file
        ({SOFTHSM: (0, stat.S_IFREG | 0o664)}, SOFTHSM),  # group-writable file
        ({"/usr/lib": (0, stat.S_IFDIR | 0o775)}, "/usr/lib"),  # group-writable folder
        ({"/usr": (0, stat.S_IFDIR | 0o1777)}, "/usr"),  # sticky world-writable, like /tmp
        ({"/usr/lib/x86_64-linux-gnu": (1000, DIR)}, "/usr/lib/x86_64-linux-gnu"),
    ],
)
def test_fake_posix_refuses_writable_chain(change: dict[str, tuple[int, int]], folder: str) -> None:
    entries = {**posix_tree(SOFTHSM), **change}
    with config_error("module_unsafe") as info:
        check_module_path(SOFTHSM, system="linux", fs=FakePosixFS(entries))
    assert info.value.values["folder"] == folder


def test_fake_posix_root_dir_writable_refused() -> None:
    fs = FakePosixFS(posix_tree(SOFTHSM))
    fs.entries["/"] = (0, stat.S_IFDIR | 0o777)
    with config_error("module_unsafe") as info:
        check_module_path(SOFTHSM, system="linux", fs=fs)
    assert info.value.values["folder"] == "/"


def test_fake_posix_follows_root_owned_links() -> None:
    entries: dict[str, tuple[int, int] | tuple[int, int, str]] = {**posix_tree(SOFTHSM)}
    entries["/usr/lib/softhsm"] = (0, DIR)
    entries["/usr/lib/softhsm/libsofthsm2.so"] = (
        0,
        LINK,
        "../x86_64-linux-gnu/softhsm/libsofthsm2.so",
    )
    fs = FakePosixFS(entries)
    assert check_module_path("/usr/lib/softhsm/libsofthsm2.so", system="linux", fs=fs) == SOFTHSM


def test_fake_posix_link_owned_by_user_refused() -> None:
    entries: dict[str, tuple[int, int] | tuple[int, int, str]] = {**posix_tree(SOFTHSM)}
    entries["/usr/lib/libp11.so"] = (1000, LINK, SOFTHSM)
    with config_error("module_unsafe") as info:
        check_module_path("/usr/lib/libp11.so", system="linux", fs=FakePosixFS(entries))
    assert info.value.values["folder"] == "/usr/lib/libp11.so"


def test_fake_posix_link_into_home_refused() -> None:
    # A root-owned link in a root-owned folder, but pointing into a user's home: the user can
    # replace the target at will.
    entries: dict[str, tuple[int, int] | tuple[int, int, str]] = {
        **posix_tree(SOFTHSM),
        "/home": (0, DIR),
        "/home/cb": (1000, stat.S_IFDIR | 0o700),
        "/home/cb/libevil.so": (1000, FILE),
        "/usr/lib/libp11.so": (0, LINK, "/home/cb/libevil.so"),
    }
    with config_error("module_unsafe") as info:
        check_module_path("/usr/lib/libp11.so", system="linux", fs=FakePosixFS(entries))
    assert info.value.values["folder"] == "/home/cb"


def test_fake_posix_intermediate_link_folder_checked() -> None:
    # /usr/lib/a -> /opt/b/link2 -> /usr/lib/x86_64-linux-gnu/...: /opt/b is user-writable and
    # appears in neither the given path nor the resolved one.
    entries: dict[str, tuple[int, int] | tuple[int, int, str]] = {
        **posix_tree(SOFTHSM),
        "/opt": (0, DIR),
        "/opt/b": (0, stat.S_IFDIR | 0o777),
        "/opt/b/link2": (0, LINK, SOFTHSM),
        "/usr/lib/a.so": (0, LINK, "/opt/b/link2"),
    }
    with config_error("module_unsafe") as info:
        check_module_path("/usr/lib/a.so", system="linux", fs=FakePosixFS(entries))
    assert info.value.values["folder"] == "/opt/b"


def test_fake_posix_link_loop_refused() -> None:
    entries: dict[str, tuple[int, int] | tuple[int, int, str]] = {
        "/usr": (0, DIR),
        "/usr/a.so": (0, LINK, "/usr/b.so"),
        "/usr/b.so": (0, LINK, "/usr/a.so"),
    }
    with config_error("module_link_loop"):
        check_module_path("/usr/a.so", system="linux", fs=FakePosixFS(entries))


def test_fake_posix_file_used_as_folder_is_missing() -> None:
    fs = FakePosixFS(posix_tree(SOFTHSM))
    with config_error("module_missing"):
        check_module_path(SOFTHSM + "/..", system="linux", fs=fs)


# ---------------------------------------------------------------------------------------------
# check_module_path for Windows (fake disk)
# ---------------------------------------------------------------------------------------------

VNPT = "C:\\Windows\\System32\\vnptca_p11_v8.dll"
OPENSC_WIN = "C:\\Program Files\\OpenSC Project\\OpenSC\\pkcs11\\opensc-pkcs11.dll"
X86_DRIVER = "C:\\Program Files (x86)\\Vendor\\p11.dll"


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        (VNPT, VNPT),
        ("c:\\windows\\system32\\VNPTCA_P11_V8.DLL", "c:\\windows\\system32\\VNPTCA_P11_V8.DLL"),
        ("C:/Windows/System32/vnptca_p11_v8.dll", VNPT),
        (OPENSC_WIN, OPENSC_WIN),
        (X86_DRIVER, X86_DRIVER),
        ("C:\\Windows\\SysWOW64\\eps2003csp11.dll", "C:\\Windows\\SysWOW64\\eps2003csp11.dll"),
    ],
)
def test_windows_protected_folders_accepted(given: str, resolved: str) -> None:
    fs = FakeWindowsFS([VNPT, OPENSC_WIN, X86_DRIVER, "C:\\Windows\\SysWOW64\\eps2003csp11.dll"])
    assert win_check(given, fs) == resolved


@pytest.mark.parametrize(
    "path",
    [
        "C:\\Users\\x\\AppData\\Roaming\\Kyso\\evil.dll",
        "C:\\Users\\x\\AppData\\Local\\Temp\\evil.dll",
        "C:\\Windows\\..\\Users\\x\\evil.dll",
        "C:\\Windows\\System32\\..\\..\\Users\\x\\evil.dll",
        "C:\\Temp\\evil.dll",
        "C:\\evil.dll",
        "C:\\Windows\\evil.dll",  # only System32 / SysWOW64 under %SystemRoot%
        "C:\\Windows\\Temp\\evil.dll",
        "C:\\Windows\\Tasks\\evil.dll",
        "C:\\Windows\\System32\\spool\\drivers\\color\\evil.dll",
        "C:\\Windows\\System32\\Tasks\\evil.dll",
        "C:\\Windows\\System32\\com\\dmp\\evil.dll",
        "C:\\Windows\\SysWOW64\\FxsTmp\\evil.dll",
        "C:\\Program Files Evil\\evil.dll",
        "C:\\ProgramData\\evil.dll",
        "D:\\Windows\\System32\\evil.dll",
        "C:\\Program Files",
    ],
)
def test_windows_user_writable_folders_refused(path: str) -> None:
    fs = FakeWindowsFS([path, ntpath.normpath(path)])
    with config_error("module_windows_location") as info:
        win_check(path, fs)
    assert "System32" in info.value.text.en


@pytest.mark.parametrize(
    "path",
    [
        "\\\\server\\share\\evil.dll",
        "//server/share/evil.dll",
        "\\\\?\\C:\\Windows\\System32\\vnptca_p11_v8.dll",
        "\\\\.\\C:\\Windows\\System32\\vnptca_p11_v8.dll",
        "\\\\?\\UNC\\server\\share\\evil.dll",
    ],
)
def test_windows_unc_refused(path: str) -> None:
    with config_error("module_unc"):
        win_check(path, FakeWindowsFS([VNPT]))


@pytest.mark.parametrize(
    "path", ["evil.dll", "C:evil.dll", "\\Windows\\System32\\vnptca_p11_v8.dll", ""]
)
def test_windows_relative_refused(path: str) -> None:
    with config_error("module_not_absolute"):
        win_check(path, FakeWindowsFS([VNPT]))


def test_windows_link_out_of_system32_refused() -> None:
    # A symlink/junction inside System32 that leads to a user folder: judged by its target.
    fs = FakeWindowsFS(
        ["C:\\Users\\x\\evil.dll"],
        links={"C:\\Windows\\System32\\p11.dll": "C:\\Users\\x\\evil.dll"},
    )
    with config_error("module_windows_location") as info:
        win_check("C:\\Windows\\System32\\p11.dll", fs)
    assert info.value.values["path"] == "C:\\Users\\x\\evil.dll"


def test_windows_realpath_to_network_refused() -> None:
    fs = FakeWindowsFS([], links={VNPT: "\\\\?\\UNC\\server\\share\\evil.dll"})
    with config_error("module_unc"):
        win_check(VNPT, fs)


def test_windows_extended_prefix_from_realpath_accepted() -> None:
    fs = FakeWindowsFS([VNPT], links={VNPT: "\\\\?\\" + VNPT})
    assert win_check(VNPT, fs) == VNPT


def test_windows_missing_and_streams() -> None:
    with config_error("module_missing"):
        win_check(VNPT, FakeWindowsFS([]))
    with config_error("module_not_file"):
        win_check(VNPT + ":evil", FakeWindowsFS([VNPT]))


def test_windows_roots_follow_environment() -> None:
    env = {**WIN_ENV, "SystemRoot": "D:\\WINNT", "ProgramFiles": "E:\\Apps"}
    fs = FakeWindowsFS(["D:\\WINNT\\System32\\x.dll", "E:\\Apps\\V\\x.dll", VNPT])
    assert win_check("D:\\WINNT\\System32\\x.dll", fs, env) == "D:\\WINNT\\System32\\x.dll"
    assert win_check("E:\\Apps\\V\\x.dll", fs, env) == "E:\\Apps\\V\\x.dll"
    with config_error("module_windows_location"):
        win_check(VNPT, fs, env)


def test_windows_relative_environment_root_ignored() -> None:
    env = {**WIN_ENV, "ProgramFiles": "Users\\x"}
    with config_error("module_windows_location"):
        win_check("C:\\Program Files\\x.dll", FakeWindowsFS(["C:\\Program Files\\x.dll"]), env)


# ---------------------------------------------------------------------------------------------
# Discovery and resolution
# ---------------------------------------------------------------------------------------------


def test_module_table_is_well_formed() -> None:
    table = cfg.module_table()
    assert set(table) == {"windows", "linux", "macos"}
    names = [e.name for e in table["windows"]]
    for expected in ("VNPT-CA", "Viettel-CA", "BKAV-CA", "FPT-CA"):
        assert expected in names
    all_windows_files = {ntpath.basename(p).lower() for e in table["windows"] for p in e.paths}
    assert {"etpkcs11.dll", "eps2003csp11.dll", "bit4xpki.dll"} <= all_windows_files
    assert any("Ban Cơ yếu Chính phủ" in e.name for e in table["windows"])
    for entry in table["windows"]:
        assert entry.vendor
        assert entry.name
        assert entry.paths
        for template in entry.paths:
            expanded = agent_modules._expand(template, WIN_ENV)
            assert "%" not in expanded
            assert module_path._windows_allowed(
                ntpath.normpath(expanded), module_path._windows_roots(WIN_ENV)
            )
    for section in ("linux", "macos"):
        for entry in table[section]:
            assert entry.paths
            assert all(p.startswith("/") for p in entry.paths)


def test_discovery_on_windows_picks_installed_vn_drivers_in_table_order() -> None:
    fs = FakeWindowsFS(
        [
            "C:\\Windows\\System32\\eTPKCS11.dll",
            "C:\\Windows\\System32\\viettel-ca_v5.dll",
            "C:\\Windows\\System32\\vnpt-ca_csp11.dll",
            "C:\\Windows\\System32\\vnptca_p11_v8.dll",
            "C:\\Windows\\System32\\eps2003csp11.dll",
            "C:\\Users\\x\\AppData\\Local\\evil\\vnptca_p11_v10.dll",  # not in the table's paths
        ]
    )
    found = discover_modules(system="win32", fs=fs, env=WIN_ENV)
    assert [m.name for m in found] == [
        "VNPT-CA",
        "Viettel-CA",
        "SafeNet eToken (token Ban Cơ yếu Chính phủ)",
        "Feitian ePass2003",
    ]
    assert found[0].path == "C:\\Windows\\System32\\vnptca_p11_v8.dll"  # newest of the two
    assert found[1].path == "C:\\Windows\\System32\\viettel-ca_v5.dll"
    assert found[2].issuers == ("Ban Cơ yếu Chính phủ (VGCA)",)


def test_discovery_expands_placeholders_from_environment() -> None:
    env = {**WIN_ENV, "SYSTEMROOT": "D:\\WINNT", "PROGRAMFILES": "E:\\Apps"}
    del env["SystemRoot"], env["ProgramFiles"]
    fs = FakeWindowsFS(
        [
            "D:\\WINNT\\System32\\BkavCA.dll",
            "E:\\Apps\\OpenSC Project\\OpenSC\\pkcs11\\opensc-pkcs11.dll",
        ]
    )
    found = discover_modules(system="win32", fs=fs, env=env)
    assert [(m.name, m.path) for m in found] == [
        ("BKAV-CA", "D:\\WINNT\\System32\\BkavCA.dll"),
        ("OpenSC", "E:\\Apps\\OpenSC Project\\OpenSC\\pkcs11\\opensc-pkcs11.dll"),
    ]


def test_discovery_skips_unsafe_links_on_windows() -> None:
    fs = FakeWindowsFS(
        ["C:\\Users\\x\\evil.dll", "C:\\Windows\\System32\\viettel-ca_v6.dll"],
        links={"C:\\Windows\\System32\\vnptca_p11_v10.dll": "C:\\Users\\x\\evil.dll"},
    )
    found = discover_modules(system="win32", fs=fs, env=WIN_ENV)
    assert [m.name for m in found] == ["Viettel-CA"]


def test_discovery_on_linux_resolves_and_deduplicates() -> None:
    opensc = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
    entries: dict[str, tuple[int, int] | tuple[int, int, str]] = {
        **posix_tree(SOFTHSM, opensc),
        "/usr/lib/softhsm": (0, DIR),
        "/usr/lib/softhsm/libsofthsm2.so": (0, LINK, "../x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    }
    found = discover_modules(system="linux", fs=FakePosixFS(entries), env={})
    assert [(m.name, m.path) for m in found] == [("SoftHSM 2", SOFTHSM), ("OpenSC", opensc)]


def test_discovery_on_linux_skips_user_owned_install() -> None:
    entries = posix_tree("/usr/local/lib/softhsm/libsofthsm2.so")
    entries["/usr/local"] = (1000, DIR)  # e.g. a user-owned prefix
    assert discover_modules(system="linux", fs=FakePosixFS(entries), env={}) == []


def test_discovery_on_real_machine_finds_only_safe_modules() -> None:
    for module in discover_modules(system="linux"):
        assert check_module_path(module.path, system="linux") == module.path


def test_unknown_system_has_no_table() -> None:
    assert discover_modules(system="freebsd14", fs=FakePosixFS({}), env={}) == []


def test_resolve_prefers_configured_module() -> None:
    fs = FakeWindowsFS([VNPT, OPENSC_WIN])
    config = AgentConfig(pkcs11_module=OPENSC_WIN)
    assert resolve_module(config, system="win32", fs=fs, env=WIN_ENV) == OPENSC_WIN
    assert resolve_module(AgentConfig(), system="win32", fs=fs, env=WIN_ENV) == VNPT


def test_resolve_refuses_unsafe_configured_module_without_fallback() -> None:
    # An installed driver exists, but the administrator's choice is unsafe: refuse to start.
    fs = FakeWindowsFS([VNPT, "C:\\Users\\x\\evil.dll"])
    config = AgentConfig(pkcs11_module="C:\\Users\\x\\evil.dll")
    with config_error("module_windows_location"):
        resolve_module(config, system="win32", fs=fs, env=WIN_ENV)


def test_resolve_refuses_tmp_module_on_real_disk(tmp_path: Path, env: dict[str, str]) -> None:
    fd, name = tempfile.mkstemp(suffix=".so", dir="/tmp")
    os.close(fd)
    try:
        machine = write(tmp_path / "m.toml", f'pkcs11_module = "{name}"\n')
        config = load(machine, None, env)
        assert config.pkcs11_module == name  # as configured; the check is at resolution
        with config_error("module_unsafe"):
            resolve_module(config, system="linux")
    finally:
        os.unlink(name)


def test_resolve_with_nothing_installed_says_what_to_do() -> None:
    with config_error("no_module") as info:
        resolve_module(AgentConfig(), system="win32", fs=FakeWindowsFS([]), env=WIN_ENV)
    assert "trình điều khiển" in info.value.text.vi
    assert "driver" in info.value.text.en
    assert str(info.value).startswith(info.value.text.vi)  # Vietnamese first


# ---------------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------------


def test_config_texts_have_both_languages_and_same_placeholders() -> None:
    texts = {k: v for k, v in i18n.catalogue().items() if k.startswith("config.")}
    assert len(texts) > 20
    for key, text in texts.items():
        assert text.vi.strip(), key
        assert text.en.strip(), key
        assert set(re.findall(r"{(\w+)}", text.vi)) == set(re.findall(r"{(\w+)}", text.en)), key
        assert text.vi != text.en, key


class _NoRegistry:
    def values(self, key: str) -> dict[str, object] | None:
        return None


@pytest.mark.parametrize("planted", [True, False])
def test_windows_machine_file_must_be_owned_by_an_administrator(planted: bool) -> None:
    """Users may create %ProgramData%\\Kyso\\agent.toml where it is missing: such a file,
    owned by the user, would tell the agent whom to trust. It is refused, the agent stops."""
    machine = "C:\\ProgramData\\Kyso\\agent.toml"
    fs = FakeWindowsFS([machine], user_owned=frozenset({machine}) if planted else frozenset())
    if planted:
        with pytest.raises(cfg.ConfigError) as info:
            cfg.load_config(system="win32", env=WIN_ENV, fs=fs, registry=_NoRegistry())
        assert info.value.message_id == "config.machine_config_not_admin"
        assert "icacls" in info.value.text.vi
    else:
        cfg.load_config(system="win32", env=WIN_ENV, fs=fs, registry=_NoRegistry())
