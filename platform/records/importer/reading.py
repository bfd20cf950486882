"""Reading the file: .xlsx or CSV told apart, the CSV's encoding and delimiter, the header row.
Rows are streamed, never held as a whole sheet."""

from __future__ import annotations

import codecs
import csv
import io
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO, Any

import openpyxl

from kyso.platform.records import csv_limits, xlsx_limits
from kyso.platform.records.importer.columns import _HEADERS, HEADER_SEARCH_ROWS, _header_key
from kyso.platform.records.importer.report import ImportReport, _reject


def _sniff_format(stream: IO[bytes], filename: str, report: ImportReport) -> str:
    head = stream.read(4096)
    stream.seek(0)
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        _reject(report, "records.import_old_xls")
    if filename.lower().endswith((".xls", ".xlsx", ".xlsm", ".ods", ".numbers")):
        _reject(report, "records.import_unreadable_xlsx")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        _reject(report, "records.import_unknown_format")
    return "csv"


def _xlsx_rows(stream: IO[bytes], report: ImportReport) -> Iterator[tuple[int, list[Any]]]:
    try:
        xlsx_limits.check_xlsx(stream)  # sizes, ratios, cell lengths: before openpyxl reads it
    except xlsx_limits.XlsxRefused as refused:
        _reject(report, refused.key, **refused.values)
    try:
        workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        _reject(report, "records.import_unreadable_xlsx", detail=type(exc).__name__)
    try:
        sheet = workbook.worksheets[0]
        sheet.reset_dimensions()  # some writers declare a wrong size: read what is there
        for number, values in enumerate(sheet.iter_rows(min_row=1, values_only=True), 1):
            yield number, list(values)
    finally:
        workbook.close()


def _encoding(stream: IO[bytes]) -> str:
    head = stream.read(4)
    stream.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := stream.read(1 << 20):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return "utf-8"
    except UnicodeDecodeError:
        return "cp1258"
    finally:
        stream.seek(0)


def _csv_rows(stream: IO[bytes], report: ImportReport) -> Iterator[tuple[int, list[Any]]]:
    encoding = _encoding(stream)
    report.encoding = encoding
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    try:
        delimiter = _delimiter(text.read(64 * 1024))
        text.seek(0)
        lines = csv_limits.bounded_lines(text)
        for number, values in enumerate(csv.reader(lines, delimiter=delimiter), 1):
            csv_limits.check_width(values)
            yield number, [value if value.strip() else None for value in values]
    except csv_limits.CsvRefused as refused:
        _reject(report, refused.key, **refused.values)
    except UnicodeDecodeError:
        _reject(report, "records.import_encoding")
    except csv.Error as exc:
        _reject(report, "records.import_unreadable_csv", detail=str(exc))
    finally:
        text.detach()


def _delimiter(sample: str) -> str:
    """Comma, semicolon or tab: whichever splits a first line into the most known headers."""
    lines = sample.splitlines()[:HEADER_SEARCH_ROWS]

    def known(delimiter: str) -> int:
        return max(
            (
                sum(_header_key(cell) in _HEADERS for cell in line.split(delimiter))
                for line in lines
            ),
            default=0,
        )

    return max(",;\t", key=known)  # ties: the first, a comma


def _find_header(
    rows: Iterator[tuple[int, list[Any]]], report: ImportReport
) -> tuple[int, dict[int, str], list[Any]]:
    """The header row: the first of the first rows that names at least three known columns."""
    for _ in range(HEADER_SEARCH_ROWS):
        found = next(rows, None)
        if found is None:
            break
        number, values = found
        fields = {
            index: _HEADERS.get(_header_key(str(value)))
            for index, value in enumerate(values)
            if value is not None
        }
        if sum(1 for f in fields.values() if f) >= 3:
            return number, {i: f for i, f in fields.items() if f}, values
    _reject(report, "records.import_no_header")


def _spooled(file: IO[bytes]) -> IO[bytes]:
    copy = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - returned open
    shutil.copyfileobj(file, copy)
    copy.seek(0)
    return copy
