"""deploy/systemd's units pass systemd's own checker (systemd-analyze verify)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/kyso/venv/bin/kyso-platform"


def test_the_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: scripts/system-deps.sh installs systemd")
    # systemd checks that ExecStart's program exists: point it at this checkout's.
    here = str(Path(sys.executable).with_name("kyso-platform"))
    names = []
    for unit in sorted(UNITS.iterdir()):
        name = unit.name.replace("@.service", "@1.service")
        (tmp_path / name).write_text(unit.read_text().replace(INSTALLED, here))
        names.append(f"./{name}")
    assert "./kyso-passport-worker@1.service" in names
    done = subprocess.run(
        [analyze, "verify", *names], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
