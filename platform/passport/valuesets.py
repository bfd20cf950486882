"""The EU DCC value sets and the DCC JSON schema shipped with the platform.

The EU's files are vendored unmodified in ``data/`` (Apache-2.0; each folder has the origin's
LICENSE, a README naming the origin repository and commit, and a SHA256SUMS that
``tests/platform/test_vendored_data.py`` checks): ``valuesets/`` (eu-dcc-valuesets @ 60ea3d8),
``schema/DCC.combined-schema.json`` (eu-dcc-schema 1.3.3, what the platform issues against) and
``schema-history/<ver>/`` (the combined schema of every release 1.0.0 … 1.3.3, which the
verifier chooses from by the certificate's ``ver``).

``vaccine_codes`` decides the ``tg``/``vp``/``mp``/``ma`` of a dose from what the facility signed:
the product (``mp``) and maker (``ma``) must be codes of the value sets, the maker the one the
encoding instructions give for the product; ``vp`` is the signed code when it is an active
prophylaxis code the instructions list for the product, otherwise the product's specific code
from the instructions (records imported before the value sets were enforced carry ATC codes such
as ``J07BN01``, which no DCC verifier knows).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

__all__ = [
    "GENERIC_VACCINE",
    "CodeProblem",
    "VaccineCodes",
    "ValueSets",
    "historical_schema",
    "schema",
    "schema_versions",
    "value_sets",
]

GENERIC_VACCINE: Final = "28531000087107"  # "covid-19 vaccines": the fallback vp
COVID_19: Final = "840539006"

# Products whose primary series is one dose (sd of dose 1 is 1); the others have two.
SINGLE_DOSE_PRODUCTS: Final = frozenset({"EU/1/20/1525", "Sputnik-Light"})


class CodeProblem(ValueError):
    """A dose's codes cannot be written in a DCC. ``code`` names the passport text."""

    def __init__(self, code: str, detail: str, **values: str) -> None:
        super().__init__(detail)
        self.code = code
        self.values = values


@dataclass(frozen=True)
class VaccineCodes:
    tg: str
    vp: str
    mp: str
    ma: str


def _load(name: str) -> dict[str, Any]:
    data = resources.files("kyso.platform.passport").joinpath("data", "valuesets", name)
    loaded: dict[str, Any] = json.loads(data.read_text(encoding="utf-8"))
    return loaded


@dataclass(frozen=True)
class ValueSets:
    products: dict[str, dict[str, Any]]  # mp
    manufacturers: dict[str, dict[str, Any]]  # ma
    prophylaxis: dict[str, dict[str, Any]]  # vp
    diseases: dict[str, dict[str, Any]]  # tg
    countries: dict[str, dict[str, Any]]  # co
    # mp -> (ma, [sct codes]) from the encoding instructions
    instructions: dict[str, tuple[str, tuple[str, ...]]]

    def display(self, kind: str, code: str) -> str:
        """The value set's display name of ``code`` (the code itself when unknown)."""
        table: dict[str, dict[str, Any]] = getattr(self, kind)
        entry = table.get(code)
        return str(entry["display"]) if entry else code

    def vaccine_codes(
        self, *, disease: str, vaccine: str, product: str, manufacturer: str
    ) -> VaccineCodes:
        if disease not in self.diseases:
            raise CodeProblem("unknown_disease", f"tg {disease!r} is not COVID-19", value=disease)
        if product not in self.products:
            raise CodeProblem(
                "unknown_product", f"mp {product!r} is not in the value set", value=product
            )
        if manufacturer not in self.manufacturers:
            raise CodeProblem(
                "unknown_manufacturer",
                f"ma {manufacturer!r} is not in the value set",
                value=manufacturer,
            )
        instructed = self.instructions.get(product)
        if instructed is not None and instructed[0] != manufacturer:
            raise CodeProblem(
                "manufacturer_mismatch",
                f"ma {manufacturer!r} is not the maker of {product!r} ({instructed[0]})",
                value=manufacturer,
                product=product,
            )
        sct = instructed[1] if instructed is not None else ()
        if vaccine in sct and self.prophylaxis.get(vaccine, {}).get("active", False):
            vp = vaccine
        else:
            specific = [c for c in sct if c != GENERIC_VACCINE and c in self.prophylaxis]
            vp = specific[0] if specific else GENERIC_VACCINE
        return VaccineCodes(disease, vp, product, manufacturer)


@functools.cache
def value_sets() -> ValueSets:
    instructions = {
        entry["vaccine-code"]: (entry["vaccine-manufacturer"], tuple(entry["sct-codes"]))
        for entry in _load("vaccine-encoding-instructions.json")["valueSetValues"].values()
    }
    return ValueSets(
        products=_load("vaccine-medicinal-product.json")["valueSetValues"],
        manufacturers=_load("vaccine-mah-manf.json")["valueSetValues"],
        prophylaxis=_load("vaccine-prophylaxis.json")["valueSetValues"],
        diseases=_load("disease-agent-targeted.json")["valueSetValues"],
        countries=_load("country-2-codes.json")["valueSetValues"],
        instructions=instructions,
    )


@functools.cache
def schema() -> dict[str, Any]:
    """DCC.combined-schema.json (1.3.3): what every issued certificate must validate against."""
    data = resources.files("kyso.platform.passport").joinpath(
        "data", "schema", "DCC.combined-schema.json"
    )
    loaded: dict[str, Any] = json.loads(data.read_text(encoding="utf-8"))
    return loaded


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@functools.cache
def schema_versions() -> tuple[str, ...]:
    """The released DCC schema versions shipped in ``data/schema-history``, oldest first."""
    folder = resources.files("kyso.platform.passport").joinpath("data", "schema-history")
    found = [
        entry.name
        for entry in folder.iterdir()
        if entry.is_dir() and all(part.isdigit() for part in entry.name.split("."))
    ]
    return tuple(sorted(found, key=_version_key))


@functools.cache
def historical_schema(version: str) -> dict[str, Any]:
    """The combined schema of release ``version`` (``DGC.`` before 1.2.1, ``DCC.`` from it on).

    KeyError when ``version`` is not one of ``schema_versions()``."""
    if version not in schema_versions():
        raise KeyError(version)
    folder = resources.files("kyso.platform.passport").joinpath("data", "schema-history", version)
    for name in ("DCC.combined-schema.json", "DGC.combined-schema.json"):
        entry = folder.joinpath(name)
        if entry.is_file():
            loaded: dict[str, Any] = json.loads(entry.read_text(encoding="utf-8"))
            return loaded
    raise KeyError(version)
