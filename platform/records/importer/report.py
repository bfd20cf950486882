"""The import's report: every problem and note with its row and column, in the file's order."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NoReturn

from kyso.platform.i18n import translate
from kyso.platform.records.importer.columns import COLUMNS


@dataclass(frozen=True)
class RowProblem:
    """One problem (or note) of the report: where it is and the text that says what to do."""

    row: int | None  # the spreadsheet's row number; None for the file as a whole
    field: str | None
    header: str | None  # the column's header as written in the file
    value: str | None
    key: str
    values: dict[str, Any] = dataclasses.field(default_factory=dict)

    def column(self, language: str) -> str:
        if self.header:
            return self.header
        if self.field:
            return translate(f"records.column_{self.field}", language)
        return ""

    def text(self, language: str) -> str:
        """``fields`` (column names) and ``*_key`` values (catalogue keys) are translated too."""
        values = dict(self.values)
        for name, value in self.values.items():
            if name == "fields":
                values[name] = ", ".join(translate(f"records.column_{n}", language) for n in value)
            elif name.endswith("_key"):
                values[name] = translate(value, language)
        return translate(self.key, language, **values)


@dataclass
class ImportReport:
    filename: str
    file_format: str | None = None  # "xlsx" or "csv"
    encoding: str | None = None  # for CSV: the encoding it was read with
    rows: int = 0  # data rows read (empty rows are not counted)
    people_created: int = 0
    people_existing: int = 0
    doses_created: int = 0
    doses_skipped: int = 0  # already recorded with the very same data
    problems: list[RowProblem] = dataclasses.field(default_factory=list)
    notes: list[RowProblem] = dataclasses.field(default_factory=list)
    imported: bool = False
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


class _FileRejected(Exception):
    """The file as a whole cannot be read; the report already says why."""


def _reject(report: ImportReport, key: str, **values: Any) -> NoReturn:
    report.problems.append(RowProblem(None, None, None, None, key, values))
    raise _FileRejected


_FIELD_ORDER = {column.field: index for index, column in enumerate(COLUMNS)}


def _position(entry: RowProblem) -> tuple[int, int]:
    return (entry.row or 0, _FIELD_ORDER.get(entry.field or "", -1))
