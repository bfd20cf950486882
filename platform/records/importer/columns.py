"""The file's layout: the columns an import knows (Vietnamese and English headers), how a header
is recognised, the row limit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kyso.platform.records import rules
from kyso.platform.records.names import name_key

MAX_ROWS = 50_000


HEADER_SEARCH_ROWS = 10


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
