"""``import_records``: every check in order, then the write and the audit event."""

from __future__ import annotations

from datetime import date
from typing import IO

from openpyxl.utils import get_column_letter
from sqlalchemy.orm import Session

from kyso.platform.auth.service import audit
from kyso.platform.models import (
    Facility,
    User,
)
from kyso.platform.records import rules
from kyso.platform.records.importer.columns import COLUMNS, MAX_ROWS
from kyso.platform.records.importer.people import (
    _check_rows_agree,
    _find_recorded,
    _Group,
    _group,
    _new_doses,
)
from kyso.platform.records.importer.reading import (
    _csv_rows,
    _find_header,
    _sniff_format,
    _spooled,
    _xlsx_rows,
)
from kyso.platform.records.importer.report import (
    ImportReport,
    RowProblem,
    _FileRejected,
    _position,
    _reject,
)
from kyso.platform.records.importer.rows import _Reporter, _Resolver, _Row, _RowReader
from kyso.platform.records.importer.writing import _write
from kyso.platform.records.service import may_record_at


def import_records(
    session: Session,
    file: IO[bytes],
    filename: str,
    facility: Facility,
    user: User | None,
    *,
    dry_run: bool = False,
    max_rows: int = MAX_ROWS,
    today: date | None = None,
    ip: str | None = None,
) -> ImportReport:
    """Check the whole file, then write it in the caller's transaction only if all of it is valid.

    ``facility`` is the facility entering the records (and where a dose was given when the row
    does not say); ``user`` None means IT at the command line. With ``dry_run`` the file is only
    checked. Nothing is committed here: the caller commits, also a rejected import's audit event.
    """
    report = ImportReport(filename=filename, dry_run=dry_run)
    plan = _plan(session, file, facility, user, report, max_rows, today or rules.today_in_vietnam())
    report.problems.sort(key=_position)
    report.notes.sort(key=_position)
    target = f"facility:{facility.code}"
    if not report.ok:
        if not dry_run:
            audit(
                session,
                "records.import_rejected",
                user,
                target=target,
                ip=ip,
                filename=filename,
                rows=report.rows,
                problems=len(report.problems),
            )
        return report
    # A person outside the importer's scope counts as new to it, as an unknown number would.
    report.people_created = sum(1 for group, _ in plan if group.person is None or group.quiet)
    report.people_existing = sum(
        1 for group, new in plan if group.person is not None and not group.quiet and new
    )
    report.doses_created = sum(len(new) for _, new in plan)
    if dry_run:
        return report
    _write(session, plan, facility, user)
    report.imported = True
    audit(
        session,
        "records.import",
        user,
        target=target,
        ip=ip,
        filename=filename,
        rows=report.rows,
        people_created=report.people_created,
        people_existing=report.people_existing,
        doses_created=report.doses_created,
        doses_skipped=report.doses_skipped,
        # For administrators: people another unit recorded who got doses from this import.
        people_outside_scope=sum(1 for group, new in plan if group.quiet and new),
    )
    return report


def _plan(
    session: Session,
    file: IO[bytes],
    facility: Facility,
    user: User | None,
    report: ImportReport,
    max_rows: int,
    today: date,
) -> list[tuple[_Group, list[_Row]]]:
    """Every check, in order; what to write is only used when the report has no problem."""
    if not may_record_at(session, user, facility):
        report.problems.append(
            RowProblem(None, None, None, facility.code, "records.import_not_allowed")
        )
        return []
    try:
        rows, out = _read(session, file, facility, user, report, max_rows, today)
    except _FileRejected:
        return []
    if not rows:
        report.problems.append(RowProblem(None, None, None, None, "records.import_empty"))
        return []
    groups = _group(rows)
    for group in groups:
        _check_rows_agree(group, out)
    _find_recorded(session, groups, facility, user, out)
    return [(group, _new_doses(group, out)) for group in groups]


def _read(
    session: Session,
    file: IO[bytes],
    facility: Facility,
    user: User | None,
    report: ImportReport,
    max_rows: int,
    today: date,
) -> tuple[list[_Row], _Reporter]:
    """Every data row of the file, read and checked one by one (the file is streamed)."""
    stream = file if file.seekable() else _spooled(file)
    report.file_format = _sniff_format(stream, report.filename, report)
    source = (
        _xlsx_rows(stream, report) if report.file_format == "xlsx" else _csv_rows(stream, report)
    )
    header_row, columns, header_values = _find_header(source, report)
    headers: dict[str, str] = {}
    for index, fld in columns.items():
        text = str(header_values[index]).strip()
        if fld in headers:
            report.problems.append(
                RowProblem(header_row, fld, text, None, "records.import_duplicate_column")
            )
        headers[fld] = text
    for column in COLUMNS:
        if column.required and column.field not in headers:
            report.problems.append(
                RowProblem(header_row, column.field, None, None, "records.import_missing_column")
            )
    ignored = {
        index: str(value).strip()
        for index, value in enumerate(header_values)
        if value is not None and index not in columns and str(value).strip()
    }
    for text in ignored.values():
        report.notes.append(
            RowProblem(header_row, None, text, None, "records.import_unknown_column")
        )
    if not report.ok:
        raise _FileRejected
    out = _Reporter(report, headers)
    reader = _RowReader(columns, _Resolver(session, user), facility, out, today)
    rows: list[_Row] = []
    unnamed: dict[int, int] = {}  # column index -> first row with data under no header
    for number, values in source:
        for index, value in enumerate(values):
            if value is not None and index not in columns and index not in ignored:
                unnamed.setdefault(index, number)
        row = reader.read(number, values)
        if row is None:
            continue
        report.rows += 1
        if report.rows > max_rows:
            _reject(report, "records.import_too_many_rows", limit=max_rows)
        rows.append(row)
    for index, number in unnamed.items():
        report.notes.append(
            RowProblem(
                number, None, get_column_letter(index + 1), None, "records.import_unnamed_column"
            )
        )
    return rows, out
