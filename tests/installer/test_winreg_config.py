"""Machine settings from HKLM\\Software\\Kyso\\Agent (what the MSI's silent install writes),
read through a registry described in the test, with the machine file's rules on Windows."""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kyso.agent.config import ConfigError, load_config
from kyso.agent.winreg_config import KEY, pem_from_value

ORIGIN = "https://tiemchung.example.vn"
MODULE = "C:\\Windows\\System32\\vnptca_p11_v8.dll"
WIN_ENV = {
    "ProgramData": "C:\\ProgramData",
    "APPDATA": "C:\\Users\\officer\\AppData\\Roaming",
    "LOCALAPPDATA": "C:\\Users\\officer\\AppData\\Local",
}
# On Linux, the Windows path of the machine file is a file name with backslashes in the cwd.
MACHINE_FILE = "C:\\ProgramData\\Kyso\\agent.toml"
USER_FILE = "C:\\Users\\officer\\AppData\\Roaming\\Kyso\\agent.toml"


class FakeRegistry:
    """HKEY_LOCAL_MACHINE as a dictionary of keys; ``error`` makes reading fail."""

    def __init__(self, keys: Mapping[str, Mapping[str, object]], error: OSError | None = None):
        self.keys = keys
        self.error = error
        self.read: list[str] = []

    def values(self, key: str) -> Mapping[str, object] | None:
        self.read.append(key)
        if self.error is not None:
            raise self.error
        return self.keys.get(key)


def _public_key(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> tuple[str, str]:
    """(PEM, base64 body on one line) of the key's SubjectPublicKeyInfo."""
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode(), base64.b64encode(der).decode()


# Tests that write the Windows-named files: on Windows those would be the real ones.
writes_windows_files = pytest.mark.skipif(
    sys.platform == "win32", reason="would write the real %ProgramData% and %APPDATA% files"
)


@pytest.fixture
def windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _load(registry: FakeRegistry, **kw: object):  # type: ignore[no-untyped-def]
    return load_config(system="win32", env=WIN_ENV, registry=registry, **kw)  # type: ignore[arg-type]


def test_silent_install_settings(windows: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    _pem, body = _public_key(private)
    registry = FakeRegistry(
        {KEY: {"PlatformOrigin": ORIGIN, "PlatformKey": body, "Pkcs11Module": MODULE}}
    )
    config = _load(registry)
    assert registry.read == [KEY]
    assert [o.origin for o in config.origins] == [ORIGIN]
    assert config.origins[0].manifest_key.public_numbers() == private.public_key().public_numbers()
    assert config.pkcs11_module == MODULE
    assert "pkcs11_module" in config.machine_locked  # the officer cannot change it


def test_pem_with_line_breaks_and_origin_in_another_case(windows: Path) -> None:
    pem, _body = _public_key(ec.generate_private_key(ec.SECP256R1()))
    registry = FakeRegistry(
        {KEY: {"PlatformOrigin": "HTTPS://TiemChung.Example.VN:443", "PlatformKey": pem}}
    )
    config = _load(registry)
    assert [o.origin for o in config.origins] == [ORIGIN]  # as the browser sends it
    assert config.pkcs11_module is None


def test_empty_values_mean_not_set(windows: Path) -> None:
    registry = FakeRegistry({KEY: {"PlatformOrigin": "", "PlatformKey": "", "Pkcs11Module": ""}})
    config = _load(registry)
    assert config.origins == ()
    assert config.pkcs11_module is None
    assert config.machine_locked == frozenset()
    assert _load(FakeRegistry({})).origins == ()  # no key at all


@writes_windows_files
def test_merged_with_the_machine_file(windows: Path) -> None:
    file_pem, _ = _public_key(ec.generate_private_key(ec.SECP256R1()))
    _, body = _public_key(ec.generate_private_key(ec.SECP256R1()))
    (windows / MACHINE_FILE).write_text(
        f'[[origins]]\norigin = "https://other.example.vn"\nmanifest_key = """{file_pem}"""\n',
        encoding="utf-8",
    )
    config = _load(FakeRegistry({KEY: {"PlatformOrigin": ORIGIN, "PlatformKey": body}}))
    assert [o.origin for o in config.origins] == ["https://other.example.vn", ORIGIN]

    (windows / MACHINE_FILE).write_text(
        f'[[origins]]\norigin = "{ORIGIN}"\nmanifest_key = """{file_pem}"""\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        _load(FakeRegistry({KEY: {"PlatformOrigin": ORIGIN, "PlatformKey": body}}))
    assert caught.value.message_id == "config.origin_duplicate"


@writes_windows_files
def test_module_in_the_file_and_the_registry(windows: Path) -> None:
    (windows / MACHINE_FILE).write_text(
        'pkcs11_module = "C:\\\\Windows\\\\System32\\\\eTPKCS11.dll"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        _load(FakeRegistry({KEY: {"Pkcs11Module": MODULE}}))
    assert caught.value.message_id == "winreg.module_twice"
    assert "eTPKCS11.dll" in caught.value.text.en
    assert MODULE in caught.value.text.vi


@writes_windows_files
def test_officer_choice_does_not_override_the_registry(windows: Path) -> None:
    (windows / USER_FILE).write_text(
        '[officer]\npkcs11_module = "C:\\\\Windows\\\\System32\\\\eTPKCS11.dll"\n',
        encoding="utf-8",
    )
    config = _load(FakeRegistry({KEY: {"Pkcs11Module": MODULE}}))
    assert config.pkcs11_module == MODULE


@pytest.mark.parametrize(
    ("values", "message_id"),
    [
        ({"PlatformOrigin": ORIGIN}, "winreg.origin_without_key"),
        ({"PlatformKey": "MFkw"}, "winreg.origin_without_key"),
        ({"PlatformOrigin": ORIGIN, "PlatformKey": "not a key"}, "config.manifest_key_invalid"),
        ({"Pkcs11Module": "vnptca_p11_v8.dll"}, "winreg.module_relative"),
        ({"Pkcs11Module": 1}, "winreg.not_text"),
        ({"PlatformOrigin": "https://*.example.vn", "PlatformKey": "x"}, "config.origin_wildcard"),
    ],
)
def test_wrong_values_are_errors(windows: Path, values: dict[str, object], message_id: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(FakeRegistry({KEY: values}))
    assert caught.value.message_id == message_id


def test_rsa_key_is_refused(windows: Path) -> None:
    _, body = _public_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(ConfigError) as caught:
        _load(FakeRegistry({KEY: {"PlatformOrigin": ORIGIN, "PlatformKey": body}}))
    assert caught.value.message_id == "config.manifest_key_not_p256"


def test_unreadable_key(windows: Path) -> None:
    registry = FakeRegistry({}, error=PermissionError(5, "Access is denied"))
    with pytest.raises(ConfigError) as caught:
        _load(registry)
    assert caught.value.message_id == "winreg.unreadable"
    assert "Access is denied" in caught.value.text.en


def test_not_read_with_an_explicit_file_or_off_windows(windows: Path) -> None:
    registry = FakeRegistry({KEY: {"PlatformOrigin": ORIGIN}})  # would be an error if read
    explicit = windows / "dev.toml"
    explicit.write_text("", encoding="utf-8")
    assert _load(registry, machine_path=explicit).origins == ()
    assert load_config(system="linux", env={"HOME": str(windows)}, registry=registry).origins == ()
    assert registry.read == []


def test_pem_from_a_one_line_body() -> None:
    pem, body = _public_key(ec.generate_private_key(ec.SECP256R1()))
    assert pem_from_value(body) == pem
    assert pem_from_value(pem) == pem
    assert pem_from_value(" ".join(pem.splitlines())) == pem
