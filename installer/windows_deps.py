"""Resolves the agent's whole dependency set for Windows, from Linux, before any Windows build.

    .venv/bin/python installer/windows_deps.py          (or: make windows-deps; CI runs it)

For each supported Python version, pip resolves ``kyso[agent,bundle]`` for ``win_amd64`` with
``--only-binary=:all:``: a dependency (or a new version of one) without a Windows wheel fails
here, on the Linux CI, instead of on the officers' installer build.

pip evaluates environment markers for the machine it runs on, not for ``--platform``: a
requirement such as keyring's ``pywin32-ctypes; sys_platform == "win32"`` would be skipped. So
the script reads the resolved distributions' own requirements from pip's report, evaluates their
markers for Windows, and resolves again with whatever Windows-only requirement was missing, until
nothing is. It prints one line per Python version and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# The Python versions the MSI may be built with (the Windows workflow uses the first).
PYTHONS = ("3.11", "3.12", "3.13")
TARGET = "kyso[agent,bundle]"


def windows_environment(python: str) -> dict[str, str]:
    """Marker variables of a 64-bit CPython ``python`` on Windows."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "nt",
        "platform_machine": "AMD64",
        "platform_python_implementation": "CPython",
        "platform_release": "10",
        "platform_system": "Windows",
        "platform_version": "10.0.19045",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "win32",
    }


def applies(marker: Marker | None, environment: dict[str, str], extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""}))


def resolve(python: str, requirements: list[str]) -> dict[str, dict[str, object]]:
    """pip's dry-run resolution for win_amd64: {canonical name: report entry}."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        done = subprocess.run(  # noqa: S603 - our own pip, with arguments built here
            [
                sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                "--ignore-installed", "--target", str(Path(scratch) / "target"),
                "--platform", "win_amd64", "--python-version", python,
                "--implementation", "cp", "--only-binary=:all:",
                "--report", str(report), *requirements,
            ],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise RuntimeError("\n".join(lines[-8:]) or f"pip exited with {done.returncode}")
        entries = json.loads(report.read_text())["install"]
    return {canonicalize_name(e["metadata"]["name"]): e for e in entries}


def missing_for_windows(
    resolved: dict[str, dict[str, object]], environment: dict[str, str]
) -> list[str]:
    """Requirements that apply on Windows but that pip (judging markers on Linux) left out."""
    wanted: dict[str, set[str]] = {}
    for entry in resolved.values():
        metadata = entry["metadata"]
        assert isinstance(metadata, dict)
        extras = set(entry.get("requested_extras") or ())  # type: ignore[call-overload]
        for text in metadata.get("requires_dist", ()):
            requirement = Requirement(text)
            if applies(requirement.marker, environment, extras):
                name = canonicalize_name(requirement.name)
                if name not in resolved:
                    requirement.marker = None
                    wanted.setdefault(str(requirement), set())
    return sorted(wanted)


def check(python: str) -> list[str]:
    """The distributions of the Windows resolution for ``python``; raises on failure."""
    environment = windows_environment(python)
    requirements = [f"{ROOT}[agent,bundle]"]
    for _round in range(5):
        resolved = resolve(python, requirements)
        extra = missing_for_windows(resolved, environment)
        if not extra:
            return sorted(
                f"{e['metadata']['name']}=={e['metadata']['version']}"  # type: ignore[index]
                for name, e in resolved.items()
                if name != "kyso"
            )
        requirements += extra
    raise RuntimeError(f"Windows-only requirements keep appearing: {extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="versions (default: all supported)")
    parser.add_argument("--verbose", action="store_true", help="list every distribution")
    args = parser.parse_args(argv)
    failures = 0
    for python in args.python or PYTHONS:
        try:
            distributions = check(python)
        except RuntimeError as exc:
            failures += 1
            print(f"FAIL Python {python} win_amd64: {TARGET} cannot be installed from wheels:")
            print("     " + str(exc).replace("\n", "\n     "))
            continue
        print(f"ok   Python {python} win_amd64: {len(distributions)} wheels for {TARGET}")
        if args.verbose:
            for line in distributions:
                print(f"     {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
