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
gets the same report as a number never seen (see ``_find_recorded``).

The whole file is checked first and written in one transaction only when every row is valid:
otherwise nothing is written and the report lists every problem with its row, column, what is
wrong and what to do. Nothing is dropped silently: ignored columns, leading zeros put back and a
dose already recorded with the very same data (skipped, not duplicated) are reported as notes.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any, NoReturn

import openpyxl
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.auth.service import audit
from kyso.platform.i18n import translate
from kyso.platform.inputs import is_number, parse_date
from kyso.platform.models import (
    Area,
    Dose,
    Facility,
    Gender,
    Person,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.records import csv_limits, rules, xlsx_limits
from kyso.platform.records.bulk import insert_doses, insert_people
from kyso.platform.records.names import name_key
from kyso.platform.records.reference_data import product_aliases
from kyso.platform.records.service import may_record_at, recording_facilities
from kyso.platform.registry.identity import check_identity

MAX_ROWS = 50_000
HEADER_SEARCH_ROWS = 10
_CHUNK = 500  # identifiers per IN (...) query


@dataclass(frozen=True)
class Column:
    field: str
    headers: tuple[str, ...]  # the template's Vietnamese and English headers first
    required: bool


COLUMNS: tuple[Column, ...] = (
    Column(rules.FULL_NAME, ("Họ và tên", "Full name", "Họ tên", "Name"), True),
    Column(rules.BIRTH_DATE, ("Ngày sinh", "Date of birth", "Birth date", "DOB"), True),
    Column(rules.GENDER, ("Giới tính", "Gender", "Sex"), True),
    Column(
        rules.IDENTITY_NUMBER,
        (
            "Số CCCD/Định danh",
            "Identity number",
            "Số CCCD",
            "CCCD",
            "Số định danh",
            "Mã định danh",
            "Số CCCD/CMND",
            "CCCD/CMND",
            "Số CMND",
            "CMND",
            "ID number",
        ),
        False,
    ),
    Column(rules.PHONE, ("Số điện thoại", "Phone number", "Phone", "Điện thoại", "SĐT"), False),
    Column(rules.ADDRESS, ("Địa chỉ", "Address"), False),
    Column(
        rules.AREA, ("Mã xã", "Commune code", "Mã xã/phường", "Mã phường/xã", "Area code"), False
    ),
    Column(rules.DOSE_NUMBER, ("Mũi số", "Dose number", "Mũi tiêm", "Mũi", "Dose"), True),
    Column(rules.VACCINATED_ON, ("Ngày tiêm", "Vaccination date", "Date of vaccination"), True),
    Column(
        rules.PRODUCT,
        (
            "Mã vắc xin/Tên vắc xin",
            "Vaccine",
            "Mã vắc xin",
            "Tên vắc xin",
            "Vắc xin",
            "Loại vắc xin",
            "Vaccine code",
            "Vaccine product",
        ),
        True,
    ),
    Column(rules.LOT, ("Số lô", "Lot number", "Lot", "Lô"), True),
    Column(rules.FACILITY, ("Mã cơ sở tiêm", "Facility code", "Cơ sở tiêm", "Mã cơ sở"), False),
)


def _header_key(text: str) -> str:
    key = name_key(re.sub(r'\(.*?\)|[*:"\ufeff]', " ", text))
    return re.sub(r"\s*/\s*", "/", key)


_HEADERS = {_header_key(h): column.field for column in COLUMNS for h in column.headers}


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


@dataclass(slots=True)
class _Row:
    number: int
    full_name: str | None = None
    birth_date: date | None = None
    gender: Gender | None = None
    identity_number: str | None = None
    phone: str | None = None
    address: str | None = None
    area_id: int | None = None
    dose_number: int | None = None
    vaccinated_on: date | None = None
    product_id: int | None = None
    lot: str | None = None
    facility_id: int | None = None
    valid: bool = True


# ---------------------------------------------------------------------------------- reading


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


def _reject(report: ImportReport, key: str, **values: Any) -> NoReturn:
    report.problems.append(RowProblem(None, None, None, None, key, values))
    raise _FileRejected


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


# ---------------------------------------------------------------------------------- cells


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return rules.display_date(value)
    return rules.clean_text(str(value))


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError("not a date")
    text = value.strip()
    # "17/05/1990 00:00:00" from spreadsheets that keep a midnight time with dates.
    text = re.sub(r"[ T]0?0:00(:00(\.0+)?)?$", "", text)
    parsed = parse_date(text)  # four-digit years only: a century is never guessed
    if parsed is None:
        raise ValueError("not a date")
    return parsed


_GENDERS = {
    "nam": Gender.MALE,
    "male": Gender.MALE,
    "m": Gender.MALE,
    "trai": Gender.MALE,
    "nu": Gender.FEMALE,
    "female": Gender.FEMALE,
    "f": Gender.FEMALE,
    "gai": Gender.FEMALE,
}


class _Resolver:
    """Codes in the file -> database ids, each looked up once."""

    def __init__(self, session: Session, user: User | None) -> None:
        self.session = session
        self.user = user
        self._facilities: dict[str, Facility | None] = {}
        self._allowed: dict[int, bool] = {}
        self._areas: dict[str, int | None] = {}
        products = list(session.scalars(select(VaccineProduct)))
        by_code = {p.code: p.id for p in products}
        self._products: dict[str, int] = {}
        for alias, code in product_aliases().items():
            if code in by_code:
                self._products[alias] = by_code[code]
        for p in products:
            self._products[name_key(p.code)] = p.id
            self._products[name_key(p.name)] = p.id

    def product(self, text: str) -> int | None:
        return self._products.get(name_key(text))

    def facility(self, code: str) -> Facility | None:
        if code not in self._facilities:
            self._facilities[code] = self.session.scalar(
                select(Facility).where(Facility.code == code)
            )
        return self._facilities[code]

    def allowed(self, facility: Facility) -> bool:
        if facility.id not in self._allowed:
            self._allowed[facility.id] = may_record_at(self.session, self.user, facility)
        return self._allowed[facility.id]

    def area(self, code: str) -> int | None:
        if code not in self._areas:
            self._areas[code] = self.session.scalar(select(Area.id).where(Area.code == code))
        return self._areas[code]


class _Reporter:
    """Files problems and notes under the row and the column as the file names it."""

    def __init__(self, report: ImportReport, headers: dict[str, str]) -> None:
        self.report = report
        self.headers = headers

    def _entry(
        self, row: int, fld: str, value: Any, key: str, values: dict[str, Any]
    ) -> RowProblem:
        return RowProblem(row, fld, self.headers.get(fld), _text(_display(value)), key, values)

    def problem(self, row: _Row, fld: str, cell: Any, key: str, **values: Any) -> None:
        row.valid = False
        self.report.problems.append(self._entry(row.number, fld, cell, key, values))

    def note(self, row: int, fld: str, cell: Any, key: str, **values: Any) -> None:
        self.report.notes.append(self._entry(row, fld, cell, key, values))


def _display(value: Any) -> Any:
    if isinstance(value, Gender):
        return {Gender.MALE: "Nam", Gender.FEMALE: "Nữ"}[value]
    return value


class _RowReader:
    """Turns one spreadsheet row into a ``_Row``, reporting every problem of every cell."""

    def __init__(
        self,
        columns: dict[int, str],
        resolver: _Resolver,
        facility: Facility,
        out: _Reporter,
        today: date,
    ) -> None:
        self.columns = columns
        self.resolver = resolver
        self.facility = facility
        self.out = out
        self.today = today
        self._unreadable: set[str] = set()

    def _problem(self, row: _Row, fld: str, cell: Any, key: str, **values: Any) -> None:
        self._unreadable.add(fld)
        self.out.problem(row, fld, cell, key, **values)

    def read(self, number: int, values: list[Any]) -> _Row | None:
        """The row, or None when it is empty (blank rows are not data)."""
        cells = {
            fld: values[index]
            for index, fld in self.columns.items()
            if index < len(values) and values[index] is not None
        }
        if not any(_text(v) for v in cells.values()):
            return None
        self._unreadable = set()
        row = _Row(number)
        row.full_name = _text(cells.get(rules.FULL_NAME))
        row.birth_date = self._date(row, rules.BIRTH_DATE, cells.get(rules.BIRTH_DATE))
        self._gender(row, cells.get(rules.GENDER))
        raw_id = cells.get(rules.IDENTITY_NUMBER)
        row.identity_number = rules.clean_identity(
            self._zero_padded(row, rules.IDENTITY_NUMBER, raw_id, {11: 12, 8: 9})
        )
        row.phone = rules.clean_phone(
            self._zero_padded(row, rules.PHONE, cells.get(rules.PHONE), {9: 10, 10: 11})
        )
        row.address = _text(cells.get(rules.ADDRESS))
        self._area(row, cells.get(rules.AREA))
        row.dose_number = self._dose_number(row, cells.get(rules.DOSE_NUMBER))
        row.vaccinated_on = self._date(row, rules.VACCINATED_ON, cells.get(rules.VACCINATED_ON))
        row.lot = _text(cells.get(rules.LOT))
        self._product(row, cells.get(rules.PRODUCT))
        self._facility(row, cells.get(rules.FACILITY))

        found = rules.check_person(
            row.full_name,
            row.birth_date,
            row.gender,
            row.identity_number,
            row.phone,
            row.address,
            self.today,
        )
        # A dose is not compared with a birth date that is wrong itself.
        birth_ok = not any(p.field == rules.BIRTH_DATE for p in found)
        found += rules.check_dose(
            row.dose_number,
            row.vaccinated_on,
            row.lot,
            row.birth_date if birth_ok else None,
            self.today,
        )
        for p in found:
            if p.field not in self._unreadable:  # reported once, as unreadable
                self.out.problem(row, p.field, cells.get(p.field), p.key, **p.values)
        if row.valid and row.identity_number:
            self._identity_note(row, raw_id)
        return row

    def _zero_padded(self, row: _Row, fld: str, value: Any, lengths: dict[int, int]) -> str | None:
        """A number a spreadsheet stored as a number lost its leading zero: put it back, say so."""
        text = _text(value)
        if (
            text is None
            or not is_number(text, 12)
            or text.startswith("0")
            or len(text) not in lengths
        ):
            return text
        fixed = text.zfill(lengths[len(text)])
        self.out.note(row.number, fld, value, "records.import_leading_zero", fixed=fixed)
        return fixed

    def _identity_note(self, row: _Row, raw: Any) -> None:
        """Imported all the same, but the facility should know before verification says so."""
        check = check_identity(row.identity_number, row.birth_date, row.gender)
        if check.status is VerificationStatus.OLD_ID_ONLY:
            self.out.note(row.number, rules.IDENTITY_NUMBER, raw, "records.import_identity_old")
        elif check.status is VerificationStatus.WRONG_FORMAT:
            rule = check.rule.value if check.rule else "length"
            self.out.note(
                row.number,
                rules.IDENTITY_NUMBER,
                raw,
                "records.import_identity_format",
                rule_key=f"records.identity_rule_{rule}",
            )

    def _date(self, row: _Row, fld: str, value: Any) -> date | None:
        if value is None:
            return None
        try:
            return _date(value)
        except ValueError:
            self._problem(row, fld, value, "records.date_unreadable")
            return None

    def _gender(self, row: _Row, value: Any) -> None:
        text = _text(value)
        if text is None:
            return
        row.gender = _GENDERS.get(name_key(text))
        if row.gender is None:
            self._problem(row, rules.GENDER, text, "records.gender_unknown")

    def _dose_number(self, row: _Row, value: Any) -> int | None:
        if value is None:
            return None
        match = re.fullmatch(r"(?:mui so|mui|dose)?\s*(\d{1,3})", name_key(_text(value) or ""))
        if match is None or (isinstance(value, float) and not value.is_integer()):
            self._problem(
                row, rules.DOSE_NUMBER, value, "records.dose_number_invalid", max=rules.MAX_DOSES
            )
            return None
        return int(match.group(1))

    def _product(self, row: _Row, value: Any) -> None:
        text = _text(value)
        if text is None:
            self._problem(row, rules.PRODUCT, None, "records.product_required")
            return
        row.product_id = self.resolver.product(text)
        if row.product_id is None:
            self._problem(row, rules.PRODUCT, text, "records.product_unknown")

    def _facility(self, row: _Row, value: Any) -> None:
        code = _text(value)
        if code is None:
            row.facility_id = self.facility.id
            return
        found = self.resolver.facility(code)
        if found is None:
            self._problem(row, rules.FACILITY, code, "records.facility_unknown", value=code)
        elif not self.resolver.allowed(found):
            self._problem(row, rules.FACILITY, code, "records.facility_not_allowed", value=code)
        else:
            row.facility_id = found.id

    def _area(self, row: _Row, value: Any) -> None:
        code = _text(value)
        if code is None:
            return
        if isinstance(value, int | float) and code.isdigit():
            code = code.zfill(5)  # a commune code typed into a number cell
        row.area_id = self.resolver.area(code)
        if row.area_id is None:
            self._problem(row, rules.AREA, code, "records.area_unknown", value=code)


# ---------------------------------------------------------------------------------- people


@dataclass
class _Group:
    """The rows of one person, and the person once found in the database."""

    rows: list[_Row]
    person: Person | None = None
    existing: dict[int, Dose] = dataclasses.field(
        default_factory=dict
    )  # dose number -> recorded dose
    person_id: int | None = None  # of the person this import creates
    # Linked to a person outside the importer's scope: reported as a new person.
    quiet: bool = False

    @property
    def first(self) -> _Row:
        return self.rows[0]

    def value(self, fld: str) -> Any:
        """The first value any row gives (rows agree, or a problem has been reported)."""
        return next((getattr(r, fld) for r in self.rows if getattr(r, fld) is not None), None)


# Person fields every row of a person must agree on; the optional ones may be left blank.
_PERSON_FIELDS = (rules.FULL_NAME, rules.BIRTH_DATE, rules.GENDER)
_OPTIONAL_FIELDS = {rules.PHONE: rules.PHONE, rules.ADDRESS: rules.ADDRESS, "area_id": rules.AREA}


def _group(rows: Iterable[_Row]) -> list[_Group]:
    """Same identity number, else same name and birth date: the same person."""
    by_key: dict[tuple[Any, ...], _Group] = {}
    for row in rows:
        if row.identity_number:
            key: tuple[Any, ...] = ("id", row.identity_number)
        elif row.full_name and row.birth_date:
            key = ("name", name_key(row.full_name), row.birth_date)
        else:
            key = ("row", row.number)
        by_key.setdefault(key, _Group([])).rows.append(row)
    # A row that leaves the number out joins the one numbered person of its name and birth date.
    numbered: dict[tuple[Any, ...], list[_Group]] = {}
    for key, group in by_key.items():
        if key[0] == "id" and group.first.full_name and group.first.birth_date:
            named = (name_key(group.first.full_name), group.first.birth_date)
            numbered.setdefault(named, []).append(group)
    for key in [k for k in by_key if k[0] == "name"]:
        candidates = numbered.get(key[1:], [])
        if len(candidates) == 1:
            candidates[0].rows.extend(by_key.pop(key).rows)
            candidates[0].rows.sort(key=lambda r: r.number)
    return list(by_key.values())


def _check_rows_agree(group: _Group, out: _Reporter) -> None:
    """The rows of one person must agree on the person and never repeat a dose number."""
    seen: dict[str, tuple[Any, int]] = {}
    doses: dict[int, int] = {}
    for row in group.rows:
        for fld, column in [(f, f) for f in _PERSON_FIELDS] + list(_OPTIONAL_FIELDS.items()):
            value = getattr(row, fld)
            if value is None:
                continue
            first = seen.setdefault(fld, (value, row.number))
            if first[0] != value:
                out.problem(row, column, value, "records.import_person_conflict", other=first[1])
        if row.dose_number is not None:
            other = doses.setdefault(row.dose_number, row.number)
            if other != row.number:
                out.problem(
                    row,
                    rules.DOSE_NUMBER,
                    row.dose_number,
                    "records.import_dose_repeated",
                    number=row.dose_number,
                    other=other,
                )


def _find_recorded(
    session: Session, groups: list[_Group], facility: Facility, user: User | None, out: _Reporter
) -> None:
    """Link each group to the person already recorded, if there is exactly one.

    The report says nothing about people outside the importer's scope (no dose of theirs at a
    facility the user records for): whether a number is recorded elsewhere, and with which
    name, birth date or gender, is not the importer's to learn. Such a person gets the new
    doses only when the identity agrees and the doses fit (``_fits_quietly``); otherwise the
    import records a person of its own, as it would for a number never seen. Either way the
    report, dry run or not, is the one an unknown number gives.
    """
    numbered = {g.first.identity_number: g for g in groups if g.first.identity_number}
    found: dict[str, list[Person]] = {}
    for chunk in _chunks(list(numbered)):
        for person in session.scalars(select(Person).where(Person.identity_number.in_(chunk))):
            found.setdefault(person.identity_number or "", []).append(person)
    scope = recording_facilities(session, user)
    facilities: dict[int, set[int]] = {}  # person id -> facilities of their doses
    first: dict[int, int] = {}  # person id -> facility of their first recorded dose
    people_ids = [p.id for people in found.values() for p in people]
    for chunk in _chunks(people_ids):
        doses_of = (
            select(Dose.person_id, Dose.facility_id)
            .where(Dose.person_id.in_(chunk))
            .order_by(Dose.id)
        )
        for person_id, facility_id in session.execute(doses_of):
            facilities.setdefault(person_id, set()).add(facility_id)
            first.setdefault(person_id, facility_id)
    for number, people in found.items():
        numbered_group = numbered[number]
        ours = [p for p in people if scope is None or facilities.get(p.id, set()) & scope]
        if len(ours) > 1:
            for row in numbered_group.rows:
                out.problem(row, rules.IDENTITY_NUMBER, number, "records.import_person_ambiguous")
        elif ours:
            keeps = scope is None or first.get(ours[0].id) in scope
            _link(numbered_group, ours[0], out, notes=keeps)
        else:
            same = [
                p
                for p in people
                if all(
                    numbered_group.value(fld) in (None, getattr(p, fld)) for fld in _PERSON_FIELDS
                )
            ]
            if len(same) == 1:
                numbered_group.person = same[0]
                numbered_group.quiet = True

    # Without a number only a person this signing unit vaccinated is the same person: a name
    # and a birth date are not unique in a country of a hundred million.
    named = {
        (name_key(g.first.full_name), g.first.birth_date): g
        for g in groups
        if not g.first.identity_number and g.first.full_name and g.first.birth_date
    }
    unit = select(Facility.id).where(Facility.signing_unit_id == facility.signing_unit_id)
    vaccinated_here = select(Dose.person_id).where(Dose.facility_id.in_(unit))
    matches: dict[tuple[str, date], list[Person]] = {}
    for chunk in _chunks(sorted({key for key, _ in named})):
        query = select(Person).where(
            Person.name_key.in_(chunk),
            Person.identity_number.is_(None),
            Person.id.in_(vaccinated_here),
        )
        for person in session.scalars(query):
            group = named.get((person.name_key, person.birth_date))
            if group and (person.full_name, person.gender) == (
                group.first.full_name,
                group.first.gender,
            ):
                matches.setdefault((person.name_key, person.birth_date), []).append(person)
    for key, people in matches.items():
        if len(people) > 1:
            for row in named[key].rows:
                out.problem(row, rules.FULL_NAME, row.full_name, "records.import_person_ambiguous")
        else:
            _link(named[key], people[0], out)

    linked = {g.person.id: g for g in groups if g.person is not None}
    for chunk in _chunks(list(linked)):
        for dose in session.scalars(select(Dose).where(Dose.person_id.in_(chunk))):
            linked[dose.person_id].existing[dose.dose_number] = dose
    for group in groups:
        if group.quiet and not _fits_quietly(group):
            group.person, group.quiet, group.existing = None, False, {}


def _fits_quietly(group: _Group) -> bool:
    """Whether the rows add to a person outside the importer's scope without a problem that
    would tell about their recorded doses: no dose number recorded already, no order problem."""
    dated = [(n, d.vaccinated_on) for n, d in group.existing.items()]
    for row in group.rows:
        if row.dose_number is None or row.vaccinated_on is None:
            continue
        if row.dose_number in group.existing:
            return False
        if rules.check_dose_order(row.dose_number, row.vaccinated_on, dated):
            return False
    return True


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _link(group: _Group, person: Person, out: _Reporter, *, notes: bool = True) -> None:
    """The import adds doses to a recorded person; it never edits the person.

    ``notes`` False: another unit recorded the person first and keeps their phone, address and
    area (``records.service.keeps_person``); the report does not compare them.
    """
    differs = [
        fld for fld in _PERSON_FIELDS if group.value(fld) not in (None, getattr(person, fld))
    ]
    if differs:
        for row in group.rows:
            out.problem(
                row,
                differs[0],
                getattr(row, differs[0]),
                "records.import_person_differs",
                fields=differs,
            )
        return
    group.person = person
    if not notes:
        return
    for fld, column in _OPTIONAL_FIELDS.items():
        value = group.value(fld)
        if value is not None and value != getattr(person, fld):
            out.note(group.first.number, column, value, "records.import_person_kept")


def _new_doses(group: _Group, out: _Reporter) -> list[_Row]:
    """The rows whose dose is not recorded yet; an identical recorded dose is skipped."""
    new: list[_Row] = []
    for row in group.rows:
        if row.dose_number is None or not row.valid:
            continue
        recorded = group.existing.get(row.dose_number)
        if recorded is None:
            new.append(row)
        elif (recorded.vaccinated_on, recorded.product_id, recorded.lot, recorded.facility_id) == (
            row.vaccinated_on,
            row.product_id,
            row.lot,
            row.facility_id,
        ):
            out.report.doses_skipped += 1
            out.note(
                row.number,
                rules.DOSE_NUMBER,
                row.dose_number,
                "records.import_dose_already_recorded",
                number=row.dose_number,
            )
        else:
            out.problem(
                row,
                rules.DOSE_NUMBER,
                row.dose_number,
                "records.import_dose_conflicts",
                number=row.dose_number,
            )
    # Each order problem once: on the later dose, or on the new one when the other is recorded.
    dated = [
        (r.dose_number, r.vaccinated_on, True) for r in new if r.dose_number and r.vaccinated_on
    ]
    dated += [(n, d.vaccinated_on, False) for n, d in group.existing.items()]
    for row in new:
        if row.vaccinated_on is None or row.dose_number is None:
            continue
        number = row.dose_number
        others = [(n, on) for n, on, is_new in dated if n < number or (n > number and not is_new)]
        problems = rules.check_dose_order(number, row.vaccinated_on, others)
        if problems:
            out.problem(
                row, rules.VACCINATED_ON, row.vaccinated_on, problems[0].key, **problems[0].values
            )
    return new


# ---------------------------------------------------------------------------------- service


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


_FIELD_ORDER = {column.field: index for index, column in enumerate(COLUMNS)}


def _position(entry: RowProblem) -> tuple[int, int]:
    return (entry.row or 0, _FIELD_ORDER.get(entry.field or "", -1))


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


def _spooled(file: IO[bytes]) -> IO[bytes]:
    copy = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - returned open
    shutil.copyfileobj(file, copy)
    copy.seek(0)
    return copy


def _write(
    session: Session, plan: list[tuple[_Group, list[_Row]]], facility: Facility, user: User | None
) -> None:
    """Bulk inserts: a 10,000-row file is a few statements, not 30,000 ORM objects."""
    fresh = [group for group, new in plan if group.person is None and new]
    ids = insert_people(
        session,
        [
            {
                "full_name": group.first.full_name,
                "birth_date": group.first.birth_date,
                "gender": group.first.gender,
                "identity_number": group.first.identity_number,
                "phone": group.value(rules.PHONE),
                "address": group.value(rules.ADDRESS),
                "area_id": group.value("area_id"),
            }
            for group in fresh
        ],
    )
    for group, person_id in zip(fresh, ids, strict=True):
        group.person_id = person_id
    insert_doses(
        session,
        [
            {
                "person_id": group.person.id if group.person else group.person_id,
                "product_id": row.product_id,
                "lot": row.lot,
                "vaccinated_on": row.vaccinated_on,
                "dose_number": row.dose_number,
                "facility_id": row.facility_id,
                "created_by_facility_id": facility.id,
                "created_by_user_id": user.id if user else None,
            }
            for group, new in plan
            for row in new
        ],
    )
    # Recorded people loaded above must not show stale dose lists to the rest of the request.
    for group, new in plan:
        if group.person is not None and new:
            session.expire(group.person, ["doses"])


# ---------------------------------------------------------------------------------- templates


def template_headers(language: str = "vi") -> list[str]:
    """The template's header row: Vietnamese, or English (both are accepted on import)."""
    return [column.headers[1 if language == "en" else 0] for column in COLUMNS]


def template_csv(language: str = "vi") -> bytes:
    """A header-only CSV in UTF-8 with a byte-order mark, which Excel opens with diacritics."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(template_headers(language))
    return codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8")


_TEXT_COLUMNS = {rules.IDENTITY_NUMBER, rules.PHONE, rules.AREA, rules.LOT, rules.FACILITY}
_DATE_COLUMNS = {rules.BIRTH_DATE, rules.VACCINATED_ON}


def template_xlsx(language: str = "vi", products: Iterable[tuple[str, str]] = ()) -> bytes:
    """The import template: an empty data sheet whose cells are typed so that Excel keeps
    leading zeros and dates, and a help sheet with the rules, an example and the products.

    ``products`` are (code, name) pairs to list; the shipped reference products by default.
    """
    from kyso.platform.records.reference_data import products as reference_products

    listed = list(products) or [(p.code, p.name) for p in reference_products()]
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = translate("records.template_sheet_data", language)
    sheet.append(template_headers(language))
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDE7F3")
    for index, column in enumerate(COLUMNS, 1):
        cell = sheet.cell(row=1, column=index)
        cell.font = bold
        cell.fill = fill
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = 16 if column.field != rules.FULL_NAME else 28
        # Typed columns: Excel keeps the leading zeros and the dates typed into them.
        if column.field in _TEXT_COLUMNS:
            sheet.column_dimensions[letter].number_format = "@"
        elif column.field in _DATE_COLUMNS:
            sheet.column_dimensions[letter].number_format = "DD/MM/YYYY"
    sheet.freeze_panes = "A2"
    letters = {c.field: get_column_letter(i) for i, c in enumerate(COLUMNS, 1)}
    genders = DataValidation(type="list", formula1='"Nam,Nữ"', allow_blank=True)
    genders.add(f"{letters[rules.GENDER]}2:{letters[rules.GENDER]}100000")
    doses = DataValidation(
        type="whole", operator="between", formula1="1", formula2=str(rules.MAX_DOSES)
    )
    doses.add(f"{letters[rules.DOSE_NUMBER]}2:{letters[rules.DOSE_NUMBER]}100000")
    sheet.add_data_validation(genders)
    sheet.add_data_validation(doses)

    help_sheet = workbook.create_sheet(translate("records.template_sheet_help", language))
    help_sheet.column_dimensions["A"].width = 34
    help_sheet.column_dimensions["B"].width = 90
    help_sheet.append([translate("records.template_help_title", language)])
    help_sheet["A1"].font = Font(bold=True, size=13)
    help_sheet.append([])
    for column in COLUMNS:
        required = translate(
            "records.template_required" if column.required else "records.template_optional",
            language,
        )
        help_sheet.append(
            [
                f"{column.headers[1 if language == 'en' else 0]} ({required})",
                translate(f"records.template_help_{column.field}", language),
            ]
        )
    help_sheet.append([])
    help_sheet.append([translate("records.template_example", language)])
    help_sheet.append(template_headers(language))
    help_sheet.append(
        [
            "Nguyễn Thị Lan",
            "17/05/1990",
            "Nữ",
            "079190123456",
            "0912345678",
            "12 Lê Lợi",
            "26740",
            2,
            "15/09/2021",
            "Pfizer",
            "FK5618",
            "",
        ]
    )
    help_sheet.append([])
    help_sheet.append([translate("records.template_products", language)])
    for code, name in listed:
        help_sheet.append([code, name])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def template_for(session: Session, language: str = "vi") -> bytes:
    """The .xlsx template listing the vaccine products this platform knows."""
    listed = session.execute(
        select(VaccineProduct.code, VaccineProduct.name).order_by(VaccineProduct.id)
    ).all()
    return template_xlsx(language, [(code, name) for code, name in listed])
