"""No clipped text at 100 %, 125 % and 150 % scaling (and with large fonts), in both languages;
and the README's screenshots regenerate from a real window under Xvfb.

Qt reads QT_SCALE_FACTOR and QT_FONT_DPI once per process, so each case runs
scripts/screenshots.py in a process of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "screenshots.py"


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize("language", ["vi", "en"])
@pytest.mark.parametrize("font_dpi", ["96", "144"])
@pytest.mark.parametrize("scale", ["1", "1.25", "1.5"])
def test_no_clipped_text(tmp_path: Path, scale: str, font_dpi: str, language: str) -> None:
    done = run(
        ["--check-clipping", "--json", "--language", language],
        {"QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": scale, "QT_FONT_DPI": font_dpi},
        tmp_path,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Every window of the app was laid out and checked...
    assert set(report) == {
        "main-window",
        "consent-pin",
        "progress",
        "settings",
        "pairing",
        "result",
        "driver-waiting",
    }
    # ... and no label, button, field or box needs more room than it has.
    assert report == {name: [] for name in report}, report
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs Xvfb (make setup)")
def test_screenshots_regenerate_under_xvfb(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    done = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1280x1024x24",
            sys.executable,
            str(SCRIPT),
            "--out",
            str(tmp_path / "shots"),
            "--json",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shots = json.loads(done.stdout.strip().splitlines()[-1])
    assert [name for name, *_ in shots] == [
        "main-window",
        "consent-pin",
        "progress",
        "settings",
        "driver-waiting",
    ]
    for name, path, width, height in shots:
        image = QImage(path)
        assert Path(path).stat().st_size > 2000, name
        assert (image.width(), image.height()) == (width, height), name
        assert width >= 400, name
        assert height >= 100, name
        # A real rendering: many colours (text, frames, the progress bar), not a blank grab.
        colours = {image.pixel(x, y) for x in range(0, width, 7) for y in range(0, height, 7)}
        assert len(colours) > 20, name
    # The committed pictures are the ones this script makes (same windows, same sizes).
    for name, _, width, _height in shots:
        committed = QImage(str(ROOT / "docs" / "screenshots" / f"{name}.png"))
        assert not committed.isNull(), name
        assert abs(committed.width() - width) <= 40, name
