"""Break 6: an .xlsx whose shared strings inflate to hundreds of MB is refused before openpyxl.

The bombs are generated here: a real workbook written by openpyxl whose shared-string part is
replaced by one streamed, highly compressible string.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy.orm import Session
from support.platform_seed import Seed

from kyso.platform.records import xlsx_limits
from kyso.platform.records.importer import import_records, template_headers

MARK = "BOMB-STRING"
ROW = [MARK, "17/05/1990", "Nữ", "079190123456", "0912345678", "", "26740", "1", "15/09/2021"]


def _workbook() -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(template_headers("vi"))
    sheet.append([*ROW, "Pfizer", "FK5618", ""])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
SHARED_STRINGS = (
    f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN}" count="1" uniqueCount="1">'
    f"<si><t>{MARK}</t></si></sst>"
).encode()


def _with_shared_string(
    target: Path | io.BytesIO, text_chunks: Iterable[bytes], *, extra: int = 0
) -> None:
    """The workbook with its name cell moved to a shared-string table (as Excel writes it; this
    openpyxl writes inline strings), that string being ``text_chunks``, streamed."""
    source = zipfile.ZipFile(io.BytesIO(_workbook()))
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename == "xl/worksheets/sheet1.xml":
                inline = f'<c r="A2" t="inlineStr"><is><t>{MARK}</t></is></c>'.encode()
                assert inline in data
                data = data.replace(inline, b'<c r="A2" t="s"><v>0</v></c>')
            elif entry.filename == "[Content_Types].xml":
                data = data.replace(
                    b"</Types>",
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
                )
            elif entry.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(
                    b"</Relationships>",
                    f'<Relationship Id="rIdS" Type="{RELATIONSHIPS}/sharedStrings" '
                    f'Target="sharedStrings.xml"/></Relationships>'.encode(),
                )
            out.writestr(entry.filename, data)
        before, _, after = SHARED_STRINGS.partition(MARK.encode())
        with out.open("xl/sharedStrings.xml", "w", force_zip64=True) as part:
            part.write(before)
            for chunk in text_chunks:
                part.write(chunk)
            part.write(after)
        for number in range(extra):
            out.writestr(f"customXml/item{number}.xml", b"<a/>")


def _bomb(path: Path, megabytes: int) -> Path:
    _with_shared_string(path, (b"A" * (1 << 20) for _ in range(megabytes)))
    return path


def _refusal(data: bytes) -> str:
    with pytest.raises(xlsx_limits.XlsxRefused) as refused:
        xlsx_limits.check_xlsx(io.BytesIO(data))
    return refused.value.key


CHILD = """
import json, resource, sys
from kyso.platform.records.importer import reading
from kyso.platform.records.importer.report import ImportReport, _FileRejected
report = ImportReport(filename="bomb.xlsx")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(sys.argv[1], "rb") as stream:
    try:
        reading._find_header(reading._xlsx_rows(stream, report), report)
    except _FileRejected:
        pass
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"keys": [p.key for p in report.problems], "growth_kb": after - before}))
"""


@pytest.mark.slow
def test_the_400_mb_shared_string_bomb_is_refused_with_flat_memory(tmp_path: Path) -> None:
    """The file of break 6 (one 400 MB shared string, ~400 KB on disk), read in a child process
    so that its peak RSS is its own: the import refuses it and grows by less than 40 MB (before
    the fix openpyxl took over 500 MB)."""
    bomb = _bomb(tmp_path / "bomb.xlsx", 400)
    assert bomb.stat().st_size < 1_000_000
    finished = subprocess.run(
        [sys.executable, "-c", CHILD, str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ},
    )
    answer = json.loads(finished.stdout)
    assert answer["keys"] == ["records.import_xlsx_too_large"]
    assert answer["growth_kb"] < 40 * 1024


def test_the_import_report_says_what_to_do(session: Session, org: Seed, tmp_path: Path) -> None:
    report = import_records(
        session,
        _bomb(tmp_path / "bomb.xlsx", 40).open("rb"),
        "tiem.xlsx",
        org.station_ben_nghe,
        org.staff,
    )
    assert not report.ok
    assert [p.key for p in report.problems] == ["records.import_xlsx_too_large"]
    assert "lớn hơn 32 MB" in report.problems[0].text("vi")
    assert "Split the data into smaller files" in report.problems[0].text("en")


def test_a_highly_compressed_part_within_the_sizes_is_refused(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "ratio.xlsx", 8)  # 8 MB of one letter: ~8 KB compressed
    assert _refusal(bomb.read_bytes()) == "records.import_xlsx_compressed_too_much"


def test_a_cell_longer_than_excel_allows_is_refused() -> None:
    # 40,000 varied characters: small, not compressible enough to trip the ratio.
    text = "".join(f"{n:05d} " for n in range(6700)).encode()
    buffer = io.BytesIO()
    _with_shared_string(buffer, [text])
    assert len(text) > xlsx_limits.MAX_CELL_CHARS
    assert _refusal(buffer.getvalue()) == "records.import_xlsx_cell_too_long"


def test_too_many_parts_are_refused() -> None:
    buffer = io.BytesIO()
    _with_shared_string(buffer, [b"Nguyen Thi Lan"], extra=xlsx_limits.MAX_ENTRIES)
    assert _refusal(buffer.getvalue()) == "records.import_xlsx_too_many_parts"


def test_an_ordinary_workbook_passes_the_checks() -> None:
    """The limits leave room for the template filled with many rows."""
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(template_headers("vi"))
    for number in range(5000):
        sheet.append([f"Nguyễn Văn {number}", *ROW[1:], "Pfizer", f"FK{number}", ""])
    buffer = io.BytesIO()
    workbook.save(buffer)
    xlsx_limits.check_xlsx(buffer)
    assert buffer.tell() == 0


def _sheet_with(cells: Iterable[tuple[int, int]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(template_headers("vi"))
    sheet.append([*ROW, "Pfizer", "FK5618", ""])
    for row, column in cells:
        sheet.cell(row=row, column=column, value="x")
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_a_sheet_wider_than_the_limit_is_refused_quickly(session: Session, org: Seed) -> None:
    """openpyxl pads each row to its last cell: one cell at column XFD in each of 2,000 rows is
    32 million values to walk. Refused from the sheet's XML instead."""
    data = _sheet_with((row, 16_384) for row in range(3, 2_003))
    started = time.monotonic()
    report = import_records(session, io.BytesIO(data), "tiem.xlsx", org.station_ben_nghe, org.staff)
    assert time.monotonic() - started < 5
    assert [p.key for p in report.problems] == ["records.import_xlsx_too_wide"]
    assert "sau cột thứ 256" in report.problems[0].text("vi")


def test_a_sheet_reaching_past_the_row_limit_is_refused() -> None:
    data = _sheet_with([(xlsx_limits.MAX_SHEET_ROWS + 1, 1)])
    assert _refusal(data) == "records.import_xlsx_too_many_rows"
