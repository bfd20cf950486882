"""CSV uploads: a line of millions of separators is refused before csv builds it."""

from __future__ import annotations

import codecs
import io
import tracemalloc

from sqlalchemy.orm import Session
from support.platform_seed import Seed

from kyso.platform.records import csv_limits
from kyso.platform.records.importer import ImportReport, import_records, template_headers

HEADER = ",".join(template_headers("vi"))
ROW = "Nguyễn Thị Lan,17/05/1990,Nữ,079190123456,0912345678,,26740,1,15/09/2021,Pfizer,FK5618,"


def _import(session: Session, org: Seed, text: str) -> ImportReport:
    data = codecs.BOM_UTF8 + text.encode("utf-8")
    return import_records(
        session, io.BytesIO(data), "tiem.csv", org.station_ben_nghe, org.staff, dry_run=True
    )


def test_a_line_of_millions_of_separators_is_refused_with_flat_memory(
    session: Session, org: Seed
) -> None:
    """5 MB of commas on one line: before, a list of 5 million fields twice (~80 MB)."""
    text = f"{HEADER}\r\n{ROW}\r\n" + "," * (5 << 20) + "\r\n"
    tracemalloc.start()
    try:
        report = _import(session, org, text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak >> 20} MB allocated"
    assert [p.key for p in report.problems] == ["records.import_csv_line_too_long"]
    assert "dài hơn 65536 ký tự" in report.problems[0].text("vi")


def test_a_line_wider_than_the_limit_is_refused(session: Session, org: Seed) -> None:
    wide = ROW + ",x" * csv_limits.MAX_COLUMNS
    report = _import(session, org, f"{HEADER}\r\n{wide}\r\n")
    assert [p.key for p in report.problems] == ["records.import_csv_too_wide"]
    assert "more than 256 columns" in report.problems[0].text("en")
