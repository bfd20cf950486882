"""installer/windows_deps.py: Windows markers are judged for Windows, whatever pip judged on
Linux (the resolution itself runs in CI through `make windows-deps`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "installer" / "windows_deps.py"


@pytest.fixture(scope="module")
def windows_deps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("windows_deps", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entry(name: str, requires: list[str], extras: list[str] | None = None) -> dict[str, object]:
    entry: dict[str, object] = {
        "metadata": {"name": name, "version": "1", "requires_dist": requires}
    }
    if extras is not None:
        entry["requested_extras"] = extras
    return entry


def test_a_windows_only_requirement_that_pip_skipped_on_linux_is_found(
    windows_deps: ModuleType,
) -> None:
    # keyring's own metadata: what pip resolved on Linux with --platform win_amd64.
    resolved = {
        "keyring": _entry(
            "keyring",
            [
                'pywin32-ctypes>=0.2.0; sys_platform == "win32"',
                'SecretStorage>=3.2; sys_platform == "linux"',
                "jaraco.classes",
                'pytest>=6; extra == "test"',
            ],
        ),
        "secretstorage": _entry("SecretStorage", []),
        "jaraco-classes": _entry("jaraco.classes", []),
    }
    environment = windows_deps.windows_environment("3.11")
    assert windows_deps.missing_for_windows(resolved, environment) == ["pywin32-ctypes>=0.2.0"]


def test_requirements_of_requested_extras_count_and_python_version_markers_apply(
    windows_deps: ModuleType,
) -> None:
    resolved = {
        "kyso": _entry(
            "kyso",
            [
                'pefile>=2022; extra == "bundle" and sys_platform == "win32"',
                'tomli; python_version < "3.11"',
                'uvloop; sys_platform != "win32"',
            ],
            extras=["bundle"],
        )
    }
    assert windows_deps.missing_for_windows(resolved, windows_deps.windows_environment("3.11")) == [
        "pefile>=2022"
    ]
    assert "tomli" in windows_deps.missing_for_windows(
        resolved, windows_deps.windows_environment("3.10")
    )
