"""Checking each row: cells turned into a dose row (dates, gender, numbers with their leading
zeros, codes looked up once), every problem filed under its row and column."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.inputs import DateInvalid, is_number, parse_date
from kyso.platform.models import (
    Area,
    Facility,
    Gender,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.records import rules
from kyso.platform.records.importer.report import ImportReport, RowProblem
from kyso.platform.records.names import name_key
from kyso.platform.records.reference_data import product_aliases
from kyso.platform.records.service import may_record_at
from kyso.platform.registry.identity import check_identity


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
    try:
        parsed = parse_date(text)  # four-digit years only: a century is never guessed
    except DateInvalid:
        parsed = None  # the report says it with the cell's row and column (records.date_unreadable)
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
