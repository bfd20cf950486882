"""The reference data vendored into the repository is what its origin published, and is complete.

Each vendored folder carries the origin's LICENSE, a README naming the origin repository and
commit, and a SHA256SUMS of its files recorded when they were copied: a file edited (a formatter,
a line-ending conversion, a hand fix), added or lost fails here. The runtime data must also be
package data, so that an installed platform finds it without the source tree.
"""

from __future__ import annotations

import glob
import hashlib
import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
RUNTIME = REPOSITORY / "platform" / "passport" / "data"
VENDORED = {
    RUNTIME / "schema": "ehn-dcc-development/eu-dcc-schema",
    RUNTIME / "schema-history": "ehn-dcc-development/eu-dcc-schema",
    RUNTIME / "valuesets": "ehn-dcc-development/eu-dcc-valuesets",
    REPOSITORY / "tests" / "data" / "dcc-testdata": "eu-digital-green-certificates/dgc-testdata",
}
ADDED_HERE = {"README.md", "SHA256SUMS"}


def _sums(folder: Path) -> dict[str, str]:
    sums = {}
    for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    return sums


def _files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in ADDED_HERE and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize(
    "folder", [*VENDORED, REPOSITORY / "tests" / "data" / "vn"], ids=lambda p: p.name
)
def test_every_vendored_file_is_the_recorded_one(folder: Path) -> None:
    sums = _sums(folder)
    assert set(sums) == _files(folder)
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize(("folder", "origin"), VENDORED.items(), ids=[p.name for p in VENDORED])
def test_every_vendored_folder_names_its_origin_and_licence(folder: Path, origin: str) -> None:
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert f"https://github.com/{origin}" in readme
    assert re.search(r"commit `[0-9a-f]{7,40}`", readme), folder


def test_the_conformance_vectors_are_all_there() -> None:
    testdata = REPOSITORY / "tests" / "data" / "dcc-testdata"
    vectors = sorted(testdata.glob("*/**/2DCode/raw/*.json"))
    assert len(vectors) == 461
    assert len({p.relative_to(testdata).parts[0] for p in vectors}) == 30  # 29 issuers and common/


def test_the_runtime_data_is_package_data() -> None:
    """Every runtime file matches a package-data pattern of pyproject.toml, expanded the way
    setuptools expands them (glob, recursive), and is found through importlib.resources."""
    pyproject = tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))
    source = REPOSITORY / "platform" / "passport"
    packaged = set()
    for name, patterns in pyproject["tool"]["setuptools"]["package-data"].items():
        if not name.startswith("kyso.platform.passport.data"):
            continue
        folder = REPOSITORY / "platform" / Path(*name.split(".")[2:])
        packaged |= {
            Path(found).relative_to(source).as_posix()
            for pattern in patterns
            for found in glob.glob(str(folder / pattern), recursive=True)
            if Path(found).is_file()
        }
    package = resources.files("kyso.platform.passport")
    for folder in ("schema", "schema-history", "valuesets"):
        for name in _files(RUNTIME / folder) | ADDED_HERE:
            relative = f"data/{folder}/{name}"
            assert relative in packaged, relative
            assert package.joinpath(relative).is_file(), relative
