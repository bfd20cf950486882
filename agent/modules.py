"""Which token drivers are installed: the data-driven table ``modules.toml`` and the disk.

Without a configured module, the agent picks the first installed driver of the table whose
path passes ``check_module_path``.
"""

from __future__ import annotations

import logging
import ntpath
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kyso.agent.errors import ConfigError
from kyso.agent.fs import REAL_FS, FileSystem, env_get, is_windows
from kyso.agent.module_path import check_module_path

log = logging.getLogger(__name__)

_MODULES_TABLE = Path(__file__).with_name("modules.toml")


@dataclass(frozen=True)
class KnownModule:
    """An installed token driver from the table: who makes it, what the officer sees, its path."""

    vendor: str
    name: str
    path: str  # resolved and checked by check_module_path
    issuers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModuleEntry:
    """One row of modules.toml, before looking at the disk."""

    vendor: str
    name: str
    paths: tuple[str, ...]
    issuers: tuple[str, ...] = ()


_TABLE_SECTIONS = {"windows", "linux", "macos"}
_PLACEHOLDER = re.compile(r"%([^%]*)%")
_WINDOWS_PLACEHOLDERS = {
    "systemroot": ("SystemRoot", "C:\\Windows"),
    "programfiles": ("ProgramFiles", "C:\\Program Files"),
    "programfiles(x86)": ("ProgramFiles(x86)", "C:\\Program Files (x86)"),
}


def _table_section(system: str) -> str | None:
    if is_windows(system):
        return "windows"
    if system == "darwin":
        return "macos"
    if system.startswith("linux"):
        return "linux"
    return None


@cache
def module_table() -> dict[str, tuple[ModuleEntry, ...]]:
    """modules.toml, validated (a malformed table is a packaging bug: RuntimeError)."""
    with _MODULES_TABLE.open("rb") as fh:
        data = tomllib.load(fh)
    table: dict[str, tuple[ModuleEntry, ...]] = {}
    for section, rows in data.items():
        if section not in _TABLE_SECTIONS or not isinstance(rows, list):
            raise RuntimeError(f"modules.toml: unexpected section {section!r}")
        entries: list[ModuleEntry] = []
        for row in rows:
            if not isinstance(row, dict) or set(row) - {"vendor", "name", "paths", "issuers"}:
                raise RuntimeError(f"modules.toml: bad entry in [{section}]: {row!r}")
            vendor, name = row.get("vendor"), row.get("name")
            paths, issuers = row.get("paths"), row.get("issuers", [])
            if not (
                isinstance(vendor, str)
                and isinstance(name, str)
                and isinstance(paths, list)
                and paths
                and all(isinstance(p, str) for p in paths)
                and isinstance(issuers, list)
                and all(isinstance(i, str) for i in issuers)
            ):
                raise RuntimeError(f"modules.toml: bad entry in [{section}]: {row!r}")
            entries.append(ModuleEntry(vendor, name, tuple(paths), tuple(issuers)))
        table[section] = tuple(entries)
    return table


def _expand(template: str, env: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        known = _WINDOWS_PLACEHOLDERS.get(match.group(1).lower())
        if known is None:
            raise RuntimeError(f"modules.toml: unknown placeholder {match.group(0)}")
        name, default = known
        return env_get(env, name, windows=True) or default

    return _PLACEHOLDER.sub(value, template)


def discover_modules(
    *,
    system: str = sys.platform,
    fs: FileSystem = REAL_FS,
    env: Mapping[str, str] = os.environ,
) -> list[KnownModule]:
    """The installed, safe modules of the table, in table order (one per entry, no duplicates).

    A driver that is installed but fails check_module_path is skipped with a warning: it may be
    a planted library, and another entry may still work.
    """
    section = _table_section(system)
    if section is None:
        return []
    found: list[KnownModule] = []
    seen: set[str] = set()
    for entry in module_table().get(section, ()):
        for template in entry.paths:
            candidate = _expand(template, env) if section == "windows" else template
            if not fs.exists(candidate):
                continue
            try:
                resolved = check_module_path(candidate, system=system, fs=fs, env=env)
            except ConfigError as exc:
                log.warning("skipping PKCS#11 module %s: %s", candidate, exc.text.en)
                continue
            key = ntpath.normcase(resolved) if section == "windows" else resolved
            if key in seen:
                continue
            seen.add(key)
            found.append(KnownModule(entry.vendor, entry.name, resolved, entry.issuers))
            break
    return found
