"""Importing vaccination records from a facility's spreadsheet (.xlsx or .csv).

What is accepted:

- Excel workbooks (.xlsx, .xlsm): the first worksheet. The old .xls format is refused with a
  message that says how to save the file as .xlsx.
- CSV text: UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8"), UTF-16 with a
  byte-order mark (Excel's "Unicode Text"), and otherwise Windows-1258 (Excel's "CSV" on a
  Vietnamese Windows). UTF-8 is tried first over the whole file; a file that is not valid UTF-8
  is read as Windows-1258. Comma, semicolon or tab separated (detected). Vietnamese text is
  NFC-normalised, so composed and decomposed diacritics compare equal. Legacy TCVN3/VNI font
  encodings cannot be told apart from Windows-1258 and are not supported.

One row is one dose. The header row (one of the first ten rows) names the columns, in
Vietnamese or English, in any order (``COLUMNS``; ``template_xlsx``/``template_csv`` give the
template). Rows of the same person — the same identity number, or the same name and birth date
when there is no number — become one person. A person already recorded (same identity number;
or, without a number, same name, birth date and gender with a dose in the importing facility's
signing unit) gets the new doses; their own data is never changed by an import. The report never
tells about people outside the importer's scope: a number recorded only by other signing units
gets the same report as a number never seen (see ``people._find_recorded``).

The whole file is checked first and written in one transaction only when every row is valid:
otherwise nothing is written and the report lists every problem with its row, column, what is
wrong and what to do. Nothing is dropped silently: ignored columns, leading zeros put back and a
dose already recorded with the very same data (skipped, not duplicated) are reported as notes.
"""

from __future__ import annotations

from kyso.platform.records.importer.columns import COLUMNS, MAX_ROWS, Column
from kyso.platform.records.importer.report import ImportReport, RowProblem
from kyso.platform.records.importer.run import import_records
from kyso.platform.records.importer.template import (
    template_csv,
    template_for,
    template_headers,
    template_xlsx,
)

__all__ = [
    "COLUMNS",
    "MAX_ROWS",
    "Column",
    "ImportReport",
    "RowProblem",
    "import_records",
    "template_csv",
    "template_for",
    "template_headers",
    "template_xlsx",
]
