"""The officer's settings: the [officer] table, machine locks, atomic writes, module checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kyso.agent.config import ConfigError, load_config
from kyso.agent.settings import SettingsError, SettingsStore, UserSettings


def _load(tmp_path: Path, machine: str | None = None):  # type: ignore[no-untyped-def]
    machine_path = None
    if machine is not None:
        machine_path = tmp_path / "machine.toml"
        machine_path.write_text(machine, encoding="utf-8")
    return load_config(machine_path, tmp_path / "user" / "agent.toml", env={"HOME": str(tmp_path)})


def test_save_then_load_round_trip(tmp_path: Path, softhsm_module: str) -> None:
    store = SettingsStore(_load(tmp_path))
    assert store.machine_locked == frozenset()
    chosen = UserSettings("en", False, False, 48000, softhsm_module)
    config = store.save(chosen)
    assert (config.language, config.port, config.pkcs11_module) == ("en", 48000, softhsm_module)
    reloaded = _load(tmp_path)
    assert SettingsStore(reloaded).current() == chosen
    text = (tmp_path / "user" / "agent.toml").read_text(encoding="utf-8")
    assert "[officer]" in text
    assert not [p for p in (tmp_path / "user").iterdir() if p.name.startswith(".agent.")]


def test_machine_settings_lock_port_and_module(tmp_path: Path, softhsm_module: str) -> None:
    config = _load(tmp_path, f'port = 50001\npkcs11_module = "{softhsm_module}"\n')
    store = SettingsStore(config)
    assert store.machine_locked == frozenset({"port", "pkcs11_module"})
    with pytest.raises(SettingsError) as info:
        store.save(UserSettings("vi", True, True, 50002, softhsm_module))
    assert info.value.reason == "locked"
    assert "quản trị viên" in info.value.text.vi
    # The language stays the officer's to choose; the locked fields are not written.
    store.save(UserSettings("en", True, True, 50001, softhsm_module))
    text = (tmp_path / "user" / "agent.toml").read_text(encoding="utf-8")
    assert "port" not in text
    assert "pkcs11_module" not in text
    assert _load(tmp_path, f'port = 50001\npkcs11_module = "{softhsm_module}"\n').language == "en"


def test_officer_table_ignored_where_the_machine_decides(tmp_path: Path) -> None:
    user = tmp_path / "user" / "agent.toml"
    user.parent.mkdir()
    user.write_text("[officer]\nport = 50009\n", encoding="utf-8")
    assert _load(tmp_path, "port = 50001\n").port == 50001
    assert _load(tmp_path).port == 50009


def test_user_module_must_be_in_an_admin_folder(tmp_path: Path) -> None:
    planted = tmp_path / "evil-pkcs11.so"
    planted.write_bytes(b"\x7fELF")
    store = SettingsStore(_load(tmp_path))
    with pytest.raises(ConfigError) as info:
        store.save(UserSettings("vi", True, True, 47321, str(planted)))
    assert info.value.message_id == "config.module_unsafe"
    assert not (tmp_path / "user" / "agent.toml").exists()


@pytest.mark.parametrize(
    ("table", "message_id"),
    [
        ("[officer]\nport = 80\n", "config.out_of_range"),
        ('[officer]\npkcs11_module = "relative.so"\n', "config.module_relative"),
        ("[officer]\nbatch_cap = 10\n", "config.unknown_key"),
        ("port = 50000\n", "config.machine_key_in_user_file"),
    ],
)
def test_bad_officer_table(tmp_path: Path, table: str, message_id: str) -> None:
    user = tmp_path / "user" / "agent.toml"
    user.parent.mkdir()
    user.write_text(table, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        _load(tmp_path)
    assert info.value.message_id == message_id


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (UserSettings("fr", True, True, 47321, None), "language"),
        (UserSettings("vi", True, True, 80, None), "port"),
    ],
)
def test_invalid_values_refused(tmp_path: Path, settings: UserSettings, reason: str) -> None:
    with pytest.raises(SettingsError) as info:
        SettingsStore(_load(tmp_path)).save(settings)
    assert info.value.reason == reason


def test_write_failure_is_explained(tmp_path: Path) -> None:
    config = _load(tmp_path)
    (tmp_path / "user").write_text("a file where the folder should be", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        SettingsStore(config).save(UserSettings("en", True, True, 47321, None))
    assert info.value.reason == "write_failed"
    assert str(tmp_path / "user" / "agent.toml") in info.value.text.en


@pytest.fixture
def softhsm_module() -> str:
    from kyso.agent.config import check_module_path
    from kyso.agent.token.softhsm import find_module

    return check_module_path(find_module())
