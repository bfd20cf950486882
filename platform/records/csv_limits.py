"""Bounds on an uploaded CSV file, applied while the importer streams it.

``csv.reader`` builds each record whole before the importer sees it: 20 MB of commas on one line
(the upload limit) is a list of 20 million fields, about 320 MB with the importer's copy, and
tens of millions of steps for the unnamed-column check. Lines are therefore handed to the reader
only up to ``MAX_LINE_CHARS``, and a record of more than ``MAX_COLUMNS`` fields is refused. A real
record of the template is well under 1,000 characters and has 12 fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, Any, Final

from kyso.platform.records.xlsx_limits import MAX_COLUMNS

__all__ = ["MAX_COLUMNS", "MAX_LINE_CHARS", "CsvRefused", "bounded_lines", "check_width"]

MAX_LINE_CHARS: Final = 64 * 1024


class CsvRefused(Exception):
    """``key`` is the catalogue text (locales/records.toml) that says what to do."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def bounded_lines(text: IO[str]) -> Iterator[str]:
    """The lines of ``text`` (opened with ``newline=""``), refusing one over MAX_LINE_CHARS."""
    while line := text.readline(MAX_LINE_CHARS + 1):
        if len(line) > MAX_LINE_CHARS:
            raise CsvRefused("records.import_csv_line_too_long", limit=MAX_LINE_CHARS)
        yield line


def check_width(values: Sequence[object]) -> None:
    if len(values) > MAX_COLUMNS:
        raise CsvRefused("records.import_csv_too_wide", limit=MAX_COLUMNS)
