"""Reference data shipped with the platform: administrative areas and vaccine products.

The files live in ``platform/data`` (see its README): ``provinces.csv`` (the 63 provinces of
2022), ``areas.csv`` (the districts and communes the demo uses — not a national gazetteer) and
``vaccines.toml`` (the products of Decision 5772 with their EU DCC codes). Loading is an upsert
by code, so it can run on every deployment and after every update of the files.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.models import Area, AreaLevel, VaccineProduct
from kyso.platform.records.names import name_key

DATA = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class AreaRow:
    code: str
    name: str
    level: AreaLevel
    parent_code: str | None


@dataclass(frozen=True)
class ProductRow:
    code: str
    name: str
    manufacturer_code: str
    prophylaxis_code: str
    disease_code: str
    aliases: tuple[str, ...]
    demo_lots: tuple[str, ...]
    demo_interval_days: int
    demo_share: float


@dataclass(frozen=True)
class LoadSummary:
    areas_added: int
    areas_updated: int
    products_added: int
    products_updated: int


def read_toml(name: str) -> dict[str, Any]:
    with (DATA / name).open("rb") as fh:
        return tomllib.load(fh)


def _read_csv(name: str) -> Iterator[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


@cache
def areas() -> tuple[AreaRow, ...]:
    """Provinces first, then districts, then communes: parents always precede children."""
    provinces = [
        AreaRow(row["code"], row["name"], AreaLevel.PROVINCE, None)
        for row in _read_csv("provinces.csv")
    ]
    others = [
        AreaRow(row["code"], row["name"], AreaLevel(row["level"]), row["parent_code"])
        for row in _read_csv("areas.csv")
    ]
    order = {AreaLevel.DISTRICT: 0, AreaLevel.COMMUNE: 1}
    others.sort(key=lambda row: order[row.level])
    return (*provinces, *others)


@cache
def products() -> tuple[ProductRow, ...]:
    return tuple(
        ProductRow(
            code=entry["code"],
            name=entry["name"],
            manufacturer_code=entry["manufacturer"],
            prophylaxis_code=entry["prophylaxis"],
            disease_code=entry["disease"],
            aliases=tuple(entry.get("aliases", ())),
            demo_lots=tuple(entry.get("demo_lots", ())),
            demo_interval_days=int(entry.get("demo_interval_days", 28)),
            demo_share=float(entry.get("demo_share", 0)),
        )
        for entry in read_toml("vaccines.toml")["product"]
    )


@cache
def product_aliases() -> dict[str, str]:
    """Accent- and case-free alias -> product code, for what facilities type in spreadsheets."""
    found: dict[str, str] = {}
    for product in products():
        for alias in (product.code, product.name, *product.aliases):
            found[name_key(alias)] = product.code
    return found


def load_reference_data(session: Session) -> LoadSummary:
    """Insert or update every area and product of the shipped files (the caller commits)."""
    existing = {area.code: area for area in session.scalars(select(Area))}
    added = updated = 0
    for row in areas():
        parent = existing[row.parent_code] if row.parent_code else None
        parent_id = parent.id if parent else None
        area = existing.get(row.code)
        if area is None:
            area = Area(code=row.code, name=row.name, level=row.level, parent_id=parent_id)
            session.add(area)
            session.flush()  # the id links children and, for a province, itself
            area.province_id = parent.province_id if parent else area.id
            existing[row.code] = area
            added += 1
            continue
        wanted = (row.name, row.level, parent_id, parent.province_id if parent else area.id)
        if (area.name, area.level, area.parent_id, area.province_id) != wanted:
            area.name, area.level, area.parent_id, area.province_id = wanted
            updated += 1
    session.flush()

    known = {p.code: p for p in session.scalars(select(VaccineProduct))}
    products_added = products_updated = 0
    for entry in products():
        values = {
            "name": entry.name,
            "manufacturer_code": entry.manufacturer_code,
            "prophylaxis_code": entry.prophylaxis_code,
            "disease_code": entry.disease_code,
        }
        product = known.get(entry.code)
        if product is None:
            session.add(VaccineProduct(code=entry.code, **values))
            products_added += 1
        elif any(getattr(product, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(product, key, value)
            products_updated += 1
    session.flush()
    return LoadSummary(added, updated, products_added, products_updated)
