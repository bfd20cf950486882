"""``make demo``'s banner (issue 17): the accounts listed as accounts, the people counted by
what the registry check found, read from the demo database on every start, cold or warm."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = 40
INFO: dict[str, object] = {
    "port": 47321,
    "token_label": "Kyso Demo Token",
    "pin": "123456",
    "certificates": {"org-rsa": "ab" * 32},
}


@pytest.fixture
def demo_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("KYSO_DEMO_DIR", str(tmp_path / "demo-data"))
    spec = importlib.util.spec_from_file_location("kyso_demo_script", ROOT / "scripts/demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _platform(tmp_path: Path, *args: str) -> None:
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path / 'kyso.db'}",
        KYSO_INSTANCE_PATH=str(tmp_path / "instance"),
    )
    subprocess.run(
        [sys.executable, "-m", "kyso.platform.cli", *args], env=env, check=True, capture_output=True
    )


def _accounts_block(text: str) -> list[str]:
    block = text.split("Demo accounts", 1)[1].split("\n\n", 1)[0]
    return [line for line in block.splitlines()[2:] if line.strip()]


def test_banner_on_a_cold_then_a_warm_demo_directory(
    tmp_path: Path, demo_script: ModuleType
) -> None:
    _platform(tmp_path, "db", "upgrade")
    _platform(tmp_path, "demo-data", "--people", str(PEOPLE), "--seed", "1")
    url = f"sqlite:///{tmp_path / 'kyso.db'}"

    cold = demo_script.banner(INFO, demo_script.read_summary(url), "1A2B")
    # Only accounts under "Demo accounts": no generator statistics such as "identity number
    # none: 2549" (which meant valid numbers), each demo account once, with its role.
    assert "identity number none" not in cold
    rows = _accounts_block(cold)
    assert len(rows) == 9
    assert all(len(row.split()) >= 3 for row in rows)
    assert any(row.split()[:2] == ["kyduyet.bennghe", "signing_officer"] for row in rows)
    assert "password kyso-demo-2022" in cold
    assert f"Demo people: {PEOPLE}," in cold
    # the serial in the one format of every page, quoted where a command takes it
    assert "Officer certificate:  serial 1A 2B (" in cold
    assert "revoke --dir" in cold
    assert ' "1A 2B"\n' in cold
    assert "verified (can be signed)" not in cold  # nobody is checked before verification

    # Warm start: the data is there and has been verified since; the banner says so now.
    with sqlite3.connect(tmp_path / "kyso.db") as db:
        changed = db.execute(
            "UPDATE people SET verification_status = 'verified' "
            "WHERE verification_status = 'pending'"
        ).rowcount
    assert changed > 0
    warm = demo_script.banner(INFO, demo_script.read_summary(url), "1A2B")
    assert _accounts_block(warm) == rows
    assert f"{changed:>7,}  verified (can be signed)" in warm
    assert "not checked yet" not in warm
