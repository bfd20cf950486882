"""Checks on an uploaded .xlsx archive before openpyxl reads it (break 6: the shared-string bomb).

A .xlsx is a ZIP of XML parts. openpyxl keeps the whole shared-string table in memory, so a
390 KB file holding one 400 MB string took the server from 209 MB to 732 MB. Before any part is
handed to openpyxl, ``check_xlsx`` reads the ZIP directory and then streams every XML part once
through expat (constant memory), and refuses the file when:

- it has more than ``MAX_ENTRIES`` parts;
- a part inflates to more than ``MAX_PART_BYTES`` (the shared strings: ``MAX_SHARED_STRINGS_BYTES``)
  or all parts to more than ``MAX_TOTAL_BYTES`` (the sizes the ZIP directory declares; Python's
  zipfile never inflates an entry past its declared size, it stops with a CRC error);
- a part larger than ``RATIO_FLOOR_BYTES`` inflates more than ``MAX_RATIO`` times;
- one cell (a shared string, or a cell of a sheet) holds more than ``MAX_CELL_CHARS`` characters
  (Excel's own limit), or the cells hold more than ``MAX_TEXT_CHARS`` characters together;
- a sheet has a cell beyond column ``MAX_COLUMNS`` or a row beyond ``MAX_SHEET_ROWS`` (openpyxl
  pads every row to its last cell, and fills the gaps between rows);
- an XML part declares a DOCTYPE (entity expansion, external entities: a workbook never needs
  one) or is not well-formed XML.

The sizes leave room for the importer's 50,000 rows: such a sheet is ~20–50 MB of XML and its
shared strings ~10 MB.
"""

from __future__ import annotations

import zipfile
from typing import IO, Any, Final
from xml.parsers import expat

__all__ = [
    "MAX_CELL_CHARS",
    "MAX_COLUMNS",
    "MAX_ENTRIES",
    "MAX_PART_BYTES",
    "MAX_RATIO",
    "MAX_SHARED_STRINGS_BYTES",
    "MAX_SHEET_ROWS",
    "MAX_TEXT_CHARS",
    "MAX_TOTAL_BYTES",
    "XlsxRefused",
    "check_xlsx",
]

MAX_ENTRIES: Final = 1_000
MAX_PART_BYTES: Final = 128 * 1024 * 1024
MAX_SHARED_STRINGS_BYTES: Final = 32 * 1024 * 1024
MAX_TOTAL_BYTES: Final = 256 * 1024 * 1024
MAX_RATIO: Final = 100
RATIO_FLOOR_BYTES: Final = 1024 * 1024  # small parts may compress as well as they like
MAX_CELL_CHARS: Final = 32_767  # Excel's limit for one cell
MAX_TEXT_CHARS: Final = 32 * 1024 * 1024
# openpyxl yields every row padded to its last cell: one cell at column XFD in each of many rows
# makes 16,384 values a row, minutes of CPU for a small file. The template has 12 columns.
MAX_COLUMNS: Final = 256
MAX_SHEET_ROWS: Final = 200_000  # the importer takes 50,000 data rows
_CHUNK: Final = 1 << 16
# Elements holding one cell's text: a shared string item, a sheet's cell.
_CELLS: Final = frozenset({"si", "c"})


class XlsxRefused(Exception):
    """``key`` is the catalogue text (locales/records.toml) that says what to do."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def _megabytes(size: int) -> int:
    return size // (1024 * 1024)


def check_xlsx(stream: IO[bytes]) -> None:
    """XlsxRefused when the archive is beyond the limits; the stream is left at its start."""
    try:
        with zipfile.ZipFile(stream) as archive:
            entries = archive.infolist()
            _check_directory(entries)
            text = _TextCounter()
            for entry in entries:
                if entry.filename.endswith((".xml", ".rels", ".vml")):
                    _scan(archive, entry, text)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError) as exc:
        # RuntimeError: an encrypted entry; OSError/BadZipFile: a broken archive or a CRC error.
        raise XlsxRefused("records.import_unreadable_xlsx", detail=type(exc).__name__) from exc
    finally:
        stream.seek(0)


def _check_directory(entries: list[zipfile.ZipInfo]) -> None:
    if len(entries) > MAX_ENTRIES:
        raise XlsxRefused("records.import_xlsx_too_many_parts", limit=MAX_ENTRIES)
    total = 0
    for entry in entries:
        limit = (
            MAX_SHARED_STRINGS_BYTES
            if entry.filename.lower().endswith("sharedstrings.xml")
            else MAX_PART_BYTES
        )
        if entry.file_size > limit:
            raise XlsxRefused("records.import_xlsx_too_large", megabytes=_megabytes(limit))
        if entry.file_size > RATIO_FLOOR_BYTES and entry.file_size > MAX_RATIO * max(
            entry.compress_size, 1
        ):
            raise XlsxRefused("records.import_xlsx_compressed_too_much", ratio=MAX_RATIO)
        total += entry.file_size
        if total > MAX_TOTAL_BYTES:
            raise XlsxRefused(
                "records.import_xlsx_too_large", megabytes=_megabytes(MAX_TOTAL_BYTES)
            )


class _TextCounter:
    def __init__(self) -> None:
        self.total = 0


def _scan(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, text: _TextCounter) -> None:
    """Streams one XML part through expat, counting each cell's characters."""
    parser = expat.ParserCreate()
    depth = 0  # inside how many cell elements
    cell = 0

    def doctype(*_args: Any) -> None:
        raise XlsxRefused("records.import_unreadable_xlsx", detail="DOCTYPE")

    sheet = entry.filename.startswith("xl/worksheets/")
    row = 0  # the current row's number
    column = 0  # the current cell's column number

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal depth, cell, row, column
        local = name.rpartition(":")[2]
        if sheet and local == "row":
            row = _number(attributes.get("r")) or row + 1
            column = 0
            if row > MAX_SHEET_ROWS:
                raise XlsxRefused("records.import_xlsx_too_many_rows", limit=MAX_SHEET_ROWS)
        elif sheet and local == "c" and depth == 0:
            column = _column(attributes.get("r")) or column + 1
            if column > MAX_COLUMNS:
                raise XlsxRefused("records.import_xlsx_too_wide", limit=MAX_COLUMNS)
        if local in _CELLS:
            if depth == 0:
                cell = 0
            depth += 1

    def end(name: str) -> None:
        nonlocal depth
        if depth and name.rpartition(":")[2] in _CELLS:
            depth -= 1

    def characters(data: str) -> None:
        nonlocal cell
        if not depth:
            return
        cell += len(data)
        text.total += len(data)
        if cell > MAX_CELL_CHARS:
            raise XlsxRefused("records.import_xlsx_cell_too_long", limit=MAX_CELL_CHARS)
        if text.total > MAX_TEXT_CHARS:
            raise XlsxRefused("records.import_xlsx_too_much_text", limit=MAX_TEXT_CHARS)

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        with archive.open(entry) as part:
            while chunk := part.read(_CHUNK):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise XlsxRefused("records.import_unreadable_xlsx", detail="XML") from exc


def _number(text: str | None) -> int:
    return int(text) if text and text.isascii() and text.isdigit() else 0


def _column(reference: str | None) -> int:
    """The column number of a cell reference such as ``AB12``; 0 when there is none."""
    number = 0
    for letter in (reference or "").upper():
        if not "A" <= letter <= "Z":
            break
        number = number * 26 + ord(letter) - ord("A") + 1
        if number > MAX_COLUMNS:
            break
    return number
