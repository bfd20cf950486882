"""Reference data: the 63 provinces, the demo areas, and vaccine products with their DCC codes.

The products are checked against the EU DCC value sets (vendored in
platform/passport/data/valuesets) and the vaccines of Decision 5772/QĐ-BYT, the provinces against
the province codes of Circular 07/2016/TT-BCA (both tables in tests/data/vn).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.platform_seed import Seed

from kyso.platform.models import Area, AreaLevel, VaccineProduct
from kyso.platform.records import reference_data
from kyso.platform.records.names import name_key

REPOSITORY = Path(__file__).resolve().parents[2]
VALUESETS = REPOSITORY / "platform" / "passport" / "data" / "valuesets"
VN = REPOSITORY / "tests" / "data" / "vn"


def _valueset(name: str) -> dict[str, Any]:
    values: dict[str, Any] = json.loads((VALUESETS / name).read_text(encoding="utf-8"))[
        "valueSetValues"
    ]
    return values


def _table(name: str) -> list[dict[str, str]]:
    with (VN / name).open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def _identity_doc_provinces() -> dict[str, str]:
    """ "001": "Hà Nội", ... (Appendix I of Circular 07/2016/TT-BCA)."""
    return {row["code"]: row["name"] for row in _table("province-codes.csv")}


def _plain(name: str) -> str:
    """Accent-free, without "Tỉnh"/"Thành phố"/"TP." and with a plain hyphen."""
    key = name_key(name.replace("–", "-").replace(" - ", "-"))
    return re.sub(r"^(tinh|thanh pho|tp\.)\s+", "", key)


def test_the_63_provinces_are_those_of_the_identity_number_rules() -> None:
    provinces = [a for a in reference_data.areas() if a.level is AreaLevel.PROVINCE]
    documented = _identity_doc_provinces()
    assert len(documented) == 63
    assert len(provinces) == 63
    assert {f"0{p.code}" for p in provinces} == set(documented)
    for province in provinces:
        assert re.fullmatch(r"\d{2}", province.code)
        assert province.name.startswith(("Tỉnh ", "Thành phố "))
        assert _plain(province.name) == _plain(documented[f"0{province.code}"]), province
    # Diacritics are there, not stripped.
    names = {p.code: p.name for p in provinces}
    assert names["79"] == "Thành phố Hồ Chí Minh"
    assert names["66"] == "Tỉnh Đắk Lắk"
    assert names["46"] == "Tỉnh Thừa Thiên Huế"


def test_demo_areas_form_a_tree_under_known_provinces() -> None:
    rows = reference_data.areas()
    by_code = {row.code: row for row in rows}
    assert len(by_code) == len(rows), "area codes must be unique"
    position = {row.code: i for i, row in enumerate(rows)}
    for row in rows:
        if row.level is AreaLevel.PROVINCE:
            assert row.parent_code is None
            continue
        parent = by_code[row.parent_code or ""]
        assert position[parent.code] < position[row.code], "parents come first"
        expected = AreaLevel.PROVINCE if row.level is AreaLevel.DISTRICT else AreaLevel.DISTRICT
        assert parent.level is expected
        assert re.fullmatch(r"\d{3}" if row.level is AreaLevel.DISTRICT else r"\d{5}", row.code)
    communes = {row.name for row in rows if row.parent_code == "760"}
    assert {"Phường Bến Nghé", "Phường Bến Thành"} <= communes
    assert by_code["26740"].name == "Phường Bến Nghé"
    assert by_code["26743"].name == "Phường Bến Thành"
    hanoi_districts = [r for r in rows if r.level is AreaLevel.DISTRICT and r.parent_code == "01"]
    assert len(hanoi_districts) >= 2
    rural = [r for r in rows if r.level is AreaLevel.COMMUNE and r.name.startswith("Xã ")]
    assert rural, "a rural province with communes (xã)"


def test_products_match_the_dcc_value_sets() -> None:
    products = _valueset("vaccine-medicinal-product.json")
    makers = _valueset("vaccine-mah-manf.json")
    prophylaxis = _valueset("vaccine-prophylaxis.json")
    diseases = _valueset("disease-agent-targeted.json")
    instructions = {
        entry["vaccine-code"]: entry
        for entry in _valueset("vaccine-encoding-instructions.json").values()
    }
    rows = reference_data.products()
    assert len({p.code for p in rows}) == len(rows)
    for product in rows:
        assert product.code in products, product.code
        assert product.manufacturer_code in makers, product.code
        assert prophylaxis[product.prophylaxis_code]["active"], product.code
        assert product.disease_code == "840539006"
        assert product.disease_code in diseases
        encoding = instructions[product.code]
        assert encoding["vaccine-manufacturer"] == product.manufacturer_code
        assert product.prophylaxis_code in encoding["sct-codes"]
        # The specific code where the instructions give one, not the generic "COVID-19 vaccine".
        specific = [c for c in encoding["sct-codes"] if c != "28531000087107"]
        if specific:
            assert product.prophylaxis_code in specific, product.code


def test_products_are_those_of_decision_5772() -> None:
    """The product/maker pairs of Decision 5772/QĐ-BYT, exactly."""
    expected = {
        "EU/1/20/1528": "ORG-100030215",
        "EU/1/20/1507": "ORG-100031184",
        "EU/1/21/1529": "ORG-100001699",
        "EU/1/20/1525": "ORG-100001417",
        "Sputnik-V": "Gamaleya-Research-Institute",
        "BBIBP-CorV": "ORG-100020693",
        "WIBP-CorV": "Sinopharm-WIBP",
        "Hayat-Vax": "ORG-100023050",
        "Abdala": "CIGB",
    }
    assert {row["mp"]: row["ma"] for row in _table("decision-5772-vaccines.csv")} == expected
    assert {p.code: p.manufacturer_code for p in reference_data.products()} == expected


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("Pfizer", "EU/1/20/1528"),
        ("pfizer-biontech", "EU/1/20/1528"),
        ("AstraZeneca", "EU/1/21/1529"),
        ("Vero Cell", "BBIBP-CorV"),
        ("VERO CELL VŨ HÁN", "WIBP-CorV"),
        ("moderna", "EU/1/20/1507"),
        ("eu/1/20/1525", "EU/1/20/1525"),
        ("Sputnik V", "Sputnik-V"),
    ],
)
def test_aliases_facilities_write(written: str, code: str) -> None:
    assert reference_data.product_aliases()[name_key(written)] == code


def test_covishield_is_not_taken_for_vaxzevria() -> None:
    assert name_key("Covishield") not in reference_data.product_aliases()


def test_loading_is_an_idempotent_upsert(session: Session) -> None:
    first = reference_data.load_reference_data(session)
    session.commit()
    assert first.areas_added == len(reference_data.areas())
    assert first.products_added == len(reference_data.products())
    second = reference_data.load_reference_data(session)
    assert second == reference_data.LoadSummary(0, 0, 0, 0)
    assert session.scalar(select(func.count()).select_from(Area)) == len(reference_data.areas())

    ben_nghe = session.scalar(select(Area).where(Area.code == "26740"))
    assert ben_nghe is not None
    assert ben_nghe.level is AreaLevel.COMMUNE
    district = session.get(Area, ben_nghe.parent_id)
    assert district is not None
    assert district.code == "760"
    province = session.get(Area, ben_nghe.province_id)
    assert province is not None
    assert province.code == "79"
    assert province.province_id == province.id
    assert district.province_id == province.id


def test_loading_corrects_changed_rows_and_keeps_existing_ids(session: Session, org: Seed) -> None:
    """The seeded organisation's areas and products are updated in place, never duplicated."""
    org.pfizer.prophylaxis_code = "J07BX03"  # deprecated code, as an old deployment had
    org.ben_nghe.name = "P. Bến Nghé"
    session.commit()
    summary = reference_data.load_reference_data(session)
    session.commit()
    assert summary.products_updated >= 1
    assert summary.areas_updated >= 1
    assert session.get(VaccineProduct, org.pfizer.id).prophylaxis_code == "1119349007"  # type: ignore[union-attr]
    assert session.get(Area, org.ben_nghe.id).name == "Phường Bến Nghé"  # type: ignore[union-attr]
    assert session.scalar(select(func.count()).where(Area.code == "26740")) == 1
    assert session.scalar(select(func.count()).where(VaccineProduct.code == "EU/1/20/1528")) == 1


def test_the_command(database_url: str, tmp_path: Path, session: Session) -> None:
    from click.testing import CliRunner

    from kyso.platform.cli import main

    env = {"DATABASE_URL": database_url, "KYSO_INSTANCE_PATH": str(tmp_path / "instance")}
    first = CliRunner().invoke(main, ["reference-data"], env=env)
    assert first.exit_code == 0, first.output
    assert f"areas: {len(reference_data.areas())} added" in first.output
    again = CliRunner().invoke(main, ["reference-data"], env=env)
    assert "areas: 0 added, 0 updated; vaccine products: 0 added, 0 updated" in again.output
    assert session.scalar(select(func.count()).select_from(VaccineProduct)) == len(
        reference_data.products()
    )
