"""The Windows-only paths, tested on Linux through their adapters (issue 18).

Each Windows API the agent calls sits behind a small adapter; here the adapters run against
reference models of those APIs (tests/support/fake_winreg.py, fake_advapi32.py) that keep what
Windows does and what is easy to get wrong: registry views and access rights, case-insensitive
names, the errors winreg raises, Win32 error codes, LocalFree of every buffer. The module
discovery and self-test exit codes go through their real interfaces.
"""

from __future__ import annotations

import base64
import ntpath
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.fake_advapi32 import (
    ADMINISTRATORS,
    OFFICER,
    SYSTEM,
    TRUSTED_INSTALLER,
    FakeWindowsSecurity,
)
from support.fake_winreg import (
    HKEY_CURRENT_USER,
    HKEY_LOCAL_MACHINE,
    REG_DWORD,
    REG_EXPAND_SZ,
    REG_SZ,
    FakeWinreg,
    all_closed,
)

from kyso.agent import modules as agent_modules
from kyso.agent.autostart import AUTOSTART_FLAG, RUN_KEY, VALUE_NAME, WindowsRunKey
from kyso.agent.config import ConfigError, load_config
from kyso.agent.fs import RealFileSystem, WindowsFileOwners, owner_is_administrator
from kyso.agent.modules import discover_modules, module_table
from kyso.agent.winreg_config import KEY, WindowsRegistry, registry_settings

ORIGIN = "https://tiemchung.example.vn"
MODULE = "C:\\Windows\\System32\\vnptca_p11_v8.dll"
WIN_ENV = {
    "SystemRoot": "C:\\Windows",
    "ProgramFiles": "C:\\Program Files",
    "ProgramFiles(x86)": "C:\\Program Files (x86)",
    "ProgramData": "C:\\ProgramData",
    "APPDATA": "C:\\Users\\officer\\AppData\\Roaming",
    "LOCALAPPDATA": "C:\\Users\\officer\\AppData\\Local",
}
MACHINE_FILE = "C:\\ProgramData\\Kyso\\agent.toml"


def _key_body() -> str:
    der = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode()


# --- the model itself: it must refuse what Windows refuses ---------------------------------


def test_the_registry_model_enforces_rights_views_and_names() -> None:
    reg = FakeWinreg(administrator=False)
    with pytest.raises(PermissionError):  # a standard user cannot create HKLM keys
        reg.CreateKeyEx(HKEY_LOCAL_MACHINE, KEY, 0, reg.KEY_SET_VALUE)
    reg.put(HKEY_LOCAL_MACHINE, KEY, "PlatformOrigin", ORIGIN)
    with pytest.raises(PermissionError):  # nor write to one that exists
        reg.OpenKey(HKEY_LOCAL_MACHINE, KEY, 0, reg.KEY_SET_VALUE)
    with reg.OpenKey(HKEY_LOCAL_MACHINE, KEY.upper(), 0, reg.KEY_READ) as key:
        assert reg.QueryValueEx(key, "platformorigin") == (ORIGIN, REG_SZ)
        with pytest.raises(PermissionError):  # a read handle cannot write
            reg.SetValueEx(key, "x", 0, REG_SZ, "y")
    with pytest.raises(OSError, match="handle is invalid"):  # a closed handle
        reg.QueryValueEx(key, "PlatformOrigin")
    with pytest.raises(FileNotFoundError):  # the 32-bit view is another key
        reg.OpenKey(HKEY_LOCAL_MACHINE, KEY, 0, reg.KEY_READ | reg.KEY_WOW64_32KEY)
    with reg.CreateKeyEx(HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
        with pytest.raises(ValueError, match="convert"):  # REG_DWORD takes an int
            reg.SetValueEx(key, "n", 0, REG_DWORD, "1")
        with pytest.raises(PermissionError):  # opened to write only
            reg.QueryValueEx(key, "n")


# --- HKLM machine settings (winreg_config.WindowsRegistry) ----------------------------------


def test_the_msi_settings_are_read_from_the_64_bit_view_and_every_handle_is_closed() -> None:
    body = _key_body()
    for process_bits in (64, 32):  # a 32-bit Python would be redirected without KEY_WOW64_64KEY
        reg = FakeWinreg(process_bits=process_bits)
        reg.put(HKEY_LOCAL_MACHINE, KEY, "PlatformOrigin", ORIGIN)
        reg.put(HKEY_LOCAL_MACHINE, KEY, "PlatformKey", body)
        reg.put(HKEY_LOCAL_MACHINE, KEY, "Pkcs11Module", MODULE)
        settings = registry_settings(WindowsRegistry(reg))
        assert [o.origin for o in settings["origins"]] == [ORIGIN]
        assert settings["pkcs11_module"] == MODULE
        assert reg.opened
        assert all_closed(reg)


def test_settings_in_the_32_bit_view_only_are_not_machine_settings() -> None:
    # A 32-bit installer would write under WOW6432Node; the Kyso MSI is 64-bit and the agent
    # reads the 64-bit view only, so such values are ignored rather than half-trusted.
    reg = FakeWinreg()
    reg.put(HKEY_LOCAL_MACHINE, KEY, "Pkcs11Module", MODULE, bits=32)
    assert reg.stored(HKEY_LOCAL_MACHINE, "Software\\WOW6432Node\\Kyso\\Agent")
    assert WindowsRegistry(reg).values(KEY) is None
    assert registry_settings(WindowsRegistry(reg)) == {}


def test_value_names_are_case_insensitive_as_in_the_registry() -> None:
    # A group policy preference or reg.exe may write the names in another case.
    reg = FakeWinreg()
    reg.put(HKEY_LOCAL_MACHINE, KEY, "PLATFORMORIGIN", ORIGIN)
    reg.put(HKEY_LOCAL_MACHINE, KEY, "platformkey", _key_body())
    reg.put(HKEY_LOCAL_MACHINE, KEY, "pkcs11module", MODULE)
    settings = registry_settings(WindowsRegistry(reg))
    assert [o.origin for o in settings["origins"]] == [ORIGIN]
    assert settings["pkcs11_module"] == MODULE


def test_an_expandable_module_path_is_expanded() -> None:
    reg = FakeWinreg(environment={"SystemRoot": "D:\\WINNT"})
    reg.put(
        HKEY_LOCAL_MACHINE,
        KEY,
        "Pkcs11Module",
        "%SystemRoot%\\System32\\vnptca_p11_v8.dll",
        REG_EXPAND_SZ,
    )
    settings = registry_settings(WindowsRegistry(reg))
    assert settings["pkcs11_module"] == "D:\\WINNT\\System32\\vnptca_p11_v8.dll"


def test_a_number_where_text_belongs_and_an_unreadable_key_are_errors() -> None:
    reg = FakeWinreg()
    reg.put(HKEY_LOCAL_MACHINE, KEY, "Pkcs11Module", 1, REG_DWORD)
    with pytest.raises(ConfigError) as caught:
        registry_settings(WindowsRegistry(reg))
    assert caught.value.message_id == "winreg.not_text"

    denied = FakeWinreg()
    denied.put(HKEY_LOCAL_MACHINE, KEY, "PlatformOrigin", ORIGIN)
    denied.deny_read(HKEY_LOCAL_MACHINE, KEY)
    with pytest.raises(ConfigError) as caught:
        registry_settings(WindowsRegistry(denied))
    assert caught.value.message_id == "winreg.unreadable"
    assert "Access is denied" in caught.value.text.en
    assert all_closed(denied)


def test_no_key_means_no_machine_settings() -> None:
    assert WindowsRegistry(FakeWinreg()).values(KEY) is None


def test_off_windows_the_real_registry_is_an_error_not_a_guess() -> None:
    if sys.platform == "win32":
        pytest.skip("this is Windows")
    with pytest.raises(OSError, match="on Windows only"):
        WindowsRegistry().values(KEY)


# --- the officer's start-at-login entry (autostart.WindowsRunKey) ---------------------------


def test_the_run_entry_as_a_standard_user() -> None:
    reg = FakeWinreg(administrator=False)
    command = [r"C:\Program Files\Kyso\kyso-agent.exe", AUTOSTART_FLAG]
    entry = WindowsRunKey(command, winreg=reg)
    assert not entry.enabled()  # no Run key yet: not an error
    entry.set(True)
    stored = reg.stored(HKEY_CURRENT_USER, RUN_KEY)
    assert stored == {VALUE_NAME: (r'"C:\Program Files\Kyso\kyso-agent.exe" --autostart', REG_SZ)}
    assert entry.enabled()
    entry.set(False)
    entry.set(False)  # removing what is not there is fine
    assert not entry.enabled()
    assert reg.stored(HKEY_CURRENT_USER, RUN_KEY) == {}
    assert all_closed(reg)


def test_the_machine_wide_run_entry_is_not_the_officers_choice() -> None:
    # The MSI may register Kyso in HKLM\...\Run for every user; the Settings option shows and
    # changes only the officer's own entry (a login launch with --autostart then decides).
    reg = FakeWinreg()
    reg.put(HKEY_LOCAL_MACHINE, RUN_KEY, VALUE_NAME, '"C:\\Program Files\\Kyso\\kyso-agent.exe"')
    entry = WindowsRunKey(["kyso-agent.exe", AUTOSTART_FLAG], winreg=reg)
    assert not entry.enabled()
    entry.set(True)
    entry.set(False)
    assert reg.stored(HKEY_LOCAL_MACHINE, RUN_KEY)  # untouched: a user could not change it


def test_an_empty_or_unreadable_run_entry_is_off() -> None:
    reg = FakeWinreg()
    reg.put(HKEY_CURRENT_USER, RUN_KEY, VALUE_NAME, "")
    assert not WindowsRunKey(["kyso-agent.exe"], winreg=reg).enabled()
    locked = FakeWinreg()
    locked.put(HKEY_CURRENT_USER, RUN_KEY, VALUE_NAME, "kyso-agent.exe --autostart")
    locked.deny_read(HKEY_CURRENT_USER, RUN_KEY)
    assert not WindowsRunKey(["kyso-agent.exe"], winreg=locked).enabled()


# --- who owns the machine file (fs.WindowsFileOwners, ctypes) -------------------------------


@pytest.mark.parametrize(
    ("owner", "trusted"),
    [
        (ADMINISTRATORS, True),
        (SYSTEM, True),
        (OFFICER, False),  # any user may create files under %ProgramData%
        (TRUSTED_INSTALLER, False),  # not who installs Kyso: refused rather than guessed
        (None, False),  # the security cannot be read: refused
    ],
)
def test_the_owner_read_through_advapi32(owner: str | None, trusted: bool) -> None:
    security = FakeWindowsSecurity({MACHINE_FILE: owner})
    owners = WindowsFileOwners(security.advapi32, security.kernel32)
    if owner is None:
        with pytest.raises(OSError, match="Windows error 5"):
            owners.owner_sid(MACHINE_FILE)
    else:
        assert owners.owner_sid(MACHINE_FILE.upper()) == owner  # NTFS names: any case
    assert owner_is_administrator(MACHINE_FILE, owners) is trusted
    assert security.leaks() == []  # every buffer Windows allocated is given back
    if owner is not None:
        assert sorted(security.freed) == [
            "SID string",
            "SID string",
            "security descriptor",
            "security descriptor",
        ]


def test_a_missing_file_has_no_owner() -> None:
    security = FakeWindowsSecurity({})
    owners = WindowsFileOwners(security.advapi32, security.kernel32)
    with pytest.raises(OSError, match="Windows error 2"):
        owners.owner_sid(MACHINE_FILE)
    assert security.leaks() == []


writes_windows_files = pytest.mark.skipif(
    sys.platform == "win32", reason="would write the real %ProgramData% file"
)


@writes_windows_files
@pytest.mark.parametrize(("owner", "loads"), [(ADMINISTRATORS, True), (OFFICER, False)])
def test_the_machine_file_counts_only_when_administrators_own_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str, loads: bool
) -> None:
    # On Linux the Windows path is a file name with backslashes in the current folder.
    monkeypatch.chdir(tmp_path)
    (tmp_path / MACHINE_FILE).write_text("batch_cap = 500\n", encoding="utf-8")
    security = FakeWindowsSecurity({MACHINE_FILE: owner})
    fs = RealFileSystem(WindowsFileOwners(security.advapi32, security.kernel32))
    registry = WindowsRegistry(FakeWinreg())

    def load() -> object:
        return load_config(system="win32", env=WIN_ENV, fs=fs, registry=registry)

    if loads:
        assert load().batch_cap == 500  # type: ignore[attr-defined]
    else:
        with pytest.raises(ConfigError) as caught:
            load()
        assert caught.value.message_id == "config.machine_config_not_admin"
    assert security.leaks() == []


# --- where the Vietnamese CAs' drivers are looked for (modules.discover_modules) ------------


class _System32:
    """A Windows disk holding exactly the given files (case-insensitive), all admin-owned."""

    def __init__(self, *files: str) -> None:
        self.files = {ntpath.normcase(f) for f in files}

    def exists(self, path: str) -> bool:
        return ntpath.normcase(path) in self.files

    isfile = exists

    def realpath(self, path: str) -> str:
        return path

    def owner_is_administrator(self, path: str) -> bool:
        return True

    def lstat(self, path: str) -> object:
        raise AssertionError("no lstat on Windows")

    def readlink(self, path: str) -> str:
        raise AssertionError("no readlink on Windows")


_WINDOWS_ROWS = [
    pytest.param(entry, path, id=f"{entry.name}:{ntpath.basename(path)}")
    for entry in module_table()["windows"]
    for path in entry.paths
]


@pytest.mark.parametrize(("entry", "template"), _WINDOWS_ROWS)
def test_every_known_driver_path_is_found_alone(
    entry: agent_modules.ModuleEntry, template: str
) -> None:
    installed = agent_modules._expand(template, WIN_ENV)
    found = discover_modules(system="win32", fs=_System32(installed), env=WIN_ENV)  # type: ignore[arg-type]
    assert [(m.name, m.vendor, m.path) for m in found] == [(entry.name, entry.vendor, installed)]


def test_the_vietnamese_cas_come_first_and_each_in_its_own_row() -> None:
    names = [entry.name for entry in module_table()["windows"]]
    assert names[:4] == ["VNPT-CA", "Viettel-CA", "BKAV-CA", "FPT-CA"]
    issuers = {entry.name: entry.issuers for entry in module_table()["windows"]}
    for ca in ("VNPT-CA", "Viettel-CA", "BKAV-CA", "FPT-CA"):
        assert ca in issuers[ca]


@pytest.mark.parametrize("ca", ["VNPT-CA", "Viettel-CA", "BKAV-CA", "FPT-CA"])
def test_a_32_bit_copy_in_syswow64_is_not_loaded_by_the_64_bit_agent(ca: str) -> None:
    entry = next(e for e in module_table()["windows"] if e.name == ca)
    system32 = agent_modules._expand(entry.paths[0], WIN_ENV)
    wow64 = system32.replace("\\System32\\", "\\SysWOW64\\")
    assert discover_modules(system="win32", fs=_System32(wow64), env=WIN_ENV) == []  # type: ignore[arg-type]
