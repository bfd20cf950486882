"""The invalid-people list as an .xlsx workbook, written with constant memory.

openpyxl's write-only mode streams rows into the sheet's XML part on disk (inline strings, no
shared-string table kept in memory) and zips the parts at ``save``; the rows come from
``stats.service.export_rows``, a server-side cursor. Memory therefore does not grow with the
number of people (bench/export_invalid.py measures it).

Headers are in the user's language (Vietnamese by default, as Appendix 03 has them).
Text that would read as a formula ("=…") is stored as text, and characters XML cannot carry are
dropped, so the file opens cleanly in Excel and LibreOffice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from kyso.platform.i18n import translate
from kyso.platform.models import VerificationStatus
from kyso.platform.registry.status import detail_text, status_hint, status_label
from kyso.platform.stats.service import ExportRow, group_of

# (catalogue key, column width)
COLUMNS: tuple[tuple[str, int], ...] = (
    ("stats.col_index", 7),
    ("stats.col_person_id", 10),
    ("records.column_full_name", 26),
    ("records.column_birth_date", 12),
    ("records.column_gender", 8),
    ("records.column_identity_number", 16),
    ("records.column_phone", 13),
    ("records.column_address", 28),
    ("stats.col_area", 22),  # the commune's name, so not "Mã xã"
    ("stats.col_group", 26),
    ("stats.col_reason", 30),
    ("stats.col_mismatch", 50),
    ("records.column_dose_number", 8),
    ("records.column_vaccinated_on", 12),
    ("stats.col_product", 26),
    ("records.column_lot", 12),
    ("stats.col_facility", 30),
)
DATE_FORMAT = "DD/MM/YYYY"
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def headers(lang: str) -> list[str]:
    return [translate(key, lang) for key, _ in COLUMNS]


class _Cells:
    """Cell factories for one sheet: dates formatted, text kept as text."""

    def __init__(self, sheet: WriteOnlyWorksheet) -> None:
        self.sheet = sheet

    def text(self, value: str | None) -> Any:
        if value is None:
            return None
        cleaned = _ILLEGAL.sub("", value)
        if cleaned.startswith("="):
            cell = WriteOnlyCell(self.sheet, cleaned)
            cell.data_type = "s"  # a name or an address, never a formula
            return cell
        return cleaned

    def day(self, value: date | None) -> Any:
        if value is None:
            return None
        # A date at midnight: what openpyxl's type hints accept, the same number in the sheet.
        cell = WriteOnlyCell(self.sheet, datetime(value.year, value.month, value.day))
        cell.number_format = DATE_FORMAT
        return cell


def _mismatch(status: str, detail: Any, lang: str) -> str:
    explained = detail_text(status, detail, lang)
    if explained:
        return explained
    return status_hint(status, lang) or ""


def write_invalid_xlsx(rows: Iterable[ExportRow], path: Path, lang: str) -> int:
    """Write the workbook to ``path``; returns the number of data rows."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=translate("stats.sheet_title", lang)[:31])
    for index, (_, width) in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "C2"
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDE7F3")
    wrap = Alignment(wrap_text=True, vertical="top")
    header_cells = []
    for title in headers(lang):
        cell = WriteOnlyCell(sheet, title)
        cell.font = bold
        cell.fill = fill
        cell.alignment = wrap
        header_cells.append(cell)
    sheet.append(header_cells)

    cells = _Cells(sheet)
    gender_text = {g: translate(f"registry.gender_{g}", lang) for g in ("male", "female")}
    group_text: dict[str, str] = {}
    label_text: dict[str, str] = {}
    count = 0
    for row in rows:
        count += 1
        if row.status not in label_text:
            label_text[row.status] = status_label(row.status, lang)
            group = group_of(VerificationStatus(row.status))
            group_text[row.status] = translate(f"stats.group_{group.value}", lang) if group else ""
        sheet.append(
            [
                count,
                row.person_id,
                cells.text(row.full_name),
                cells.day(row.birth_date),
                gender_text.get(row.gender, row.gender),
                cells.text(row.identity_number),
                cells.text(row.phone),
                cells.text(row.address),
                cells.text(row.area),
                group_text[row.status],
                label_text[row.status],
                cells.text(_mismatch(row.status, row.detail, lang)),
                row.dose_number,
                cells.day(row.vaccinated_on),
                cells.text(row.product),
                cells.text(row.lot),
                cells.text(row.facility),
            ]
        )
    workbook.save(path)
    return count
