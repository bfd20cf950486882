"""bench/load_national.py's verdict: which phase judges which of issue 16's bars (no server)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "load_national.py"


@pytest.fixture(scope="module")
def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_national", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOOD: dict[str, Any] = {
    "signed_per_s": 1200.0,
    "prepare_p95_ms": 800.0,
    "errors": 0,
    "throttled": 0,
    "lookups_per_s": 110.0,
    "qr_per_s": 110.0,
}


def outcomes(load: ModuleType, phase: str, **figures: Any) -> dict[str, str]:
    return {bar: outcome for bar, outcome, _ in load.verdict(phase, **{**GOOD, **figures})}


def test_the_officers_phase_judges_doses_prepare_and_errors_not_lookups(load: ModuleType) -> None:
    assert outcomes(load, "officers", lookups_per_s=10.0, qr_per_s=10.0) == {
        load.DOSES_BAR: "meets",
        load.PREPARE_BAR: "meets",
        load.ERRORS_BAR: "meets",
        load.LOOKUPS_BAR: "(MISS)",  # 10/s of background citizens: reported, not judged
    }
    missed = outcomes(load, "officers", signed_per_s=999.0, prepare_p95_ms=1001.0, throttled=1)
    assert missed[load.DOSES_BAR] == missed[load.PREPARE_BAR] == missed[load.ERRORS_BAR] == "MISS"
    assert outcomes(load, "officers", prepare_p95_ms=0.0)[load.PREPARE_BAR] == "MISS"  # none ran


def test_the_citizens_phase_judges_lookups_with_their_qr_and_errors(load: ModuleType) -> None:
    assert outcomes(load, "citizens", signed_per_s=0.0, prepare_p95_ms=0.0) == {
        load.DOSES_BAR: "(MISS)",
        load.PREPARE_BAR: "(MISS)",
        load.ERRORS_BAR: "meets",
        load.LOOKUPS_BAR: "meets",
    }
    assert outcomes(load, "citizens", qr_per_s=99.0)[load.LOOKUPS_BAR] == "MISS"
    assert outcomes(load, "citizens", errors=1)[load.ERRORS_BAR] == "MISS"


def test_the_mix_reports_every_bar_and_judges_none(load: ModuleType) -> None:
    lines = load.verdict("all", **{**GOOD, "signed_per_s": 500.0})
    assert {bar: outcome for bar, outcome, _ in lines} == {
        load.DOSES_BAR: "(MISS)",
        load.PREPARE_BAR: "(meets)",
        load.ERRORS_BAR: "(meets)",
        load.LOOKUPS_BAR: "(meets)",
    }
    notes = {bar: note for bar, _, note in lines}
    assert "same 2 CPUs" in notes[load.DOSES_BAR]
    assert notes[load.DOSES_BAR].endswith("judged by --phase officers")
    assert notes[load.LOOKUPS_BAR].endswith("judged by --phase citizens")
    assert notes[load.ERRORS_BAR].endswith("judged by --phase officers and --phase citizens")
