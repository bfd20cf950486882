"""The format of Vietnamese identity numbers (Decree 137/2015, Circular 07/2016/TT-BCA).

The 12-digit personal identification number (mã định danh cá nhân, printed on the CCCD card)
reads ``PPP G YY NNNNNN``: the province of birth registration, a digit for century and gender,
the last two digits of the year of birth and six random digits. A number that breaks this can
never be found in the National Population Database, so it is reported to the facility at once
instead of being sent to the registry. A 9-digit number is the old identity card (CMND): not
wrong, but it cannot be checked until the person's 12-digit number is known.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

from kyso.platform.models.records import Gender, VerificationStatus

PERSONAL_NUMBER_LENGTH = 12
OLD_ID_LENGTH = 9  # CMND

# Appendix I of Circular 07/2016/TT-BCA: the 63 legacy province codes. The codes never change
# (numbers already issued keep them), so they stay valid after provinces merge.
PROVINCES: Mapping[str, str] = MappingProxyType(
    {
        "001": "Hà Nội",
        "002": "Hà Giang",
        "004": "Cao Bằng",
        "006": "Bắc Kạn",
        "008": "Tuyên Quang",
        "010": "Lào Cai",
        "011": "Điện Biên",
        "012": "Lai Châu",
        "014": "Sơn La",
        "015": "Yên Bái",
        "017": "Hòa Bình",
        "019": "Thái Nguyên",
        "020": "Lạng Sơn",
        "022": "Quảng Ninh",
        "024": "Bắc Giang",
        "025": "Phú Thọ",
        "026": "Vĩnh Phúc",
        "027": "Bắc Ninh",
        "030": "Hải Dương",
        "031": "Hải Phòng",
        "033": "Hưng Yên",
        "034": "Thái Bình",
        "035": "Hà Nam",
        "036": "Nam Định",
        "037": "Ninh Bình",
        "038": "Thanh Hóa",
        "040": "Nghệ An",
        "042": "Hà Tĩnh",
        "044": "Quảng Bình",
        "045": "Quảng Trị",
        "046": "Thừa Thiên Huế",
        "048": "Đà Nẵng",
        "049": "Quảng Nam",
        "051": "Quảng Ngãi",
        "052": "Bình Định",
        "054": "Phú Yên",
        "056": "Khánh Hòa",
        "058": "Ninh Thuận",
        "060": "Bình Thuận",
        "062": "Kon Tum",
        "064": "Gia Lai",
        "066": "Đắk Lắk",
        "067": "Đắk Nông",
        "068": "Lâm Đồng",
        "070": "Bình Phước",
        "072": "Tây Ninh",
        "074": "Bình Dương",
        "075": "Đồng Nai",
        "077": "Bà Rịa–Vũng Tàu",
        "079": "TP. Hồ Chí Minh",
        "080": "Long An",
        "082": "Tiền Giang",
        "083": "Bến Tre",
        "084": "Trà Vinh",
        "086": "Vĩnh Long",
        "087": "Đồng Tháp",
        "089": "An Giang",
        "091": "Kiên Giang",
        "092": "Cần Thơ",
        "093": "Hậu Giang",
        "094": "Sóc Trăng",
        "095": "Bạc Liêu",
        "096": "Cà Mau",
    }
)

FIRST_CENTURY = 1900  # G = 0/1
LAST_YEAR = 2399  # G = 8/9

_ASCII_DIGITS = re.compile(r"[0-9]+")


class FormatRule(enum.StrEnum):
    """Which rule a malformed or inconsistent number breaks (stored in verification_detail)."""

    DIGITS = "digits"  # something other than the digits 0-9
    LENGTH = "length"  # neither 12 digits nor a 9-digit CMND
    PROVINCE = "province"  # PPP is not one of the 63 province codes
    CENTURY_GENDER = "century_gender"  # G disagrees with the person's birth century or gender
    BIRTH_YEAR = "birth_year"  # YY disagrees with the person's year of birth


@dataclass(frozen=True)
class PersonalNumber:
    """The parts of a well-formed 12-digit number."""

    number: str
    province_code: str
    century_gender: int
    year_digits: str
    serial: str

    @property
    def province(self) -> str:
        return PROVINCES[self.province_code]

    @property
    def century(self) -> int:
        """The first year of the birth century: 1900, 2000, … 2300."""
        return FIRST_CENTURY + 100 * (self.century_gender // 2)

    @property
    def birth_year(self) -> int:
        return self.century + int(self.year_digits)

    @property
    def gender(self) -> Gender:
        return Gender.FEMALE if self.century_gender % 2 else Gender.MALE


@dataclass(frozen=True)
class IdentityCheck:
    """The outcome of the format check of one person's number.

    ``status`` is None when the number is well-formed and consistent with the person: only the
    registry can say more. Otherwise it is the final status (NO_IDENTITY, OLD_ID_ONLY or
    WRONG_FORMAT); for WRONG_FORMAT ``detail`` says which rule failed, e.g.
    ``{"rule": "birth_year", "found": "91", "expected": "90"}``.
    """

    status: VerificationStatus | None
    rule: FormatRule | None = None
    detail: dict[str, Any] | None = field(default=None)

    @property
    def well_formed(self) -> bool:
        return self.status is None


def normalise(number: str | None) -> str | None:
    """The number as stored: surrounding blanks dropped, None when nothing is left."""
    if number is None:
        return None
    stripped = number.strip()
    return stripped or None


def century_gender_digit(birth_year: int, gender: Gender) -> int:
    """The G digit for a person: 1900s male 0 / female 1, 2000s 2/3, … 2300s 8/9."""
    if not FIRST_CENTURY <= birth_year <= LAST_YEAR:
        raise ValueError(f"no century digit for year {birth_year}")
    return 2 * ((birth_year - FIRST_CENTURY) // 100) + (1 if gender == Gender.FEMALE else 0)


def parse(number: str) -> PersonalNumber | FormatRule:
    """The parts of a 12-digit number, or the first well-formedness rule it breaks.

    Every digit is a valid G (the 2100s to 2300s are reserved but well-formed), so a number
    made of 12 ASCII digits with a known province code is well-formed.
    """
    if not _ASCII_DIGITS.fullmatch(number):
        return FormatRule.DIGITS
    if len(number) != PERSONAL_NUMBER_LENGTH:
        return FormatRule.LENGTH
    if number[:3] not in PROVINCES:
        return FormatRule.PROVINCE
    return PersonalNumber(
        number=number,
        province_code=number[:3],
        century_gender=int(number[3]),
        year_digits=number[4:6],
        serial=number[6:],
    )


def is_well_formed(number: str | None) -> bool:
    """True for a 12-digit personal number that follows every rule of its format."""
    value = normalise(number)
    return value is not None and isinstance(parse(value), PersonalNumber)


def check_identity(
    number: str | None, birth_date: date | None = None, gender: Gender | None = None
) -> IdentityCheck:
    """The format check of a person's number, and its consistency with the person.

    Without ``birth_date`` and ``gender`` only the format is checked (e.g. while typing).
    """
    value = normalise(number)
    if value is None:
        return IdentityCheck(VerificationStatus.NO_IDENTITY)
    if _ASCII_DIGITS.fullmatch(value) and len(value) == OLD_ID_LENGTH:
        return IdentityCheck(VerificationStatus.OLD_ID_ONLY)
    parsed = parse(value)
    if isinstance(parsed, FormatRule):
        detail: dict[str, Any] = {"rule": parsed.value}
        if parsed is FormatRule.LENGTH:
            detail["length"] = len(value)
        elif parsed is FormatRule.PROVINCE:
            detail["found"] = value[:3]
        return _wrong(parsed, detail)

    if birth_date is not None:
        expected_g: int | None
        try:
            expected_g = century_gender_digit(birth_date.year, gender or parsed.gender)
        except ValueError:
            expected_g = None
        century_differs = expected_g is None or expected_g // 2 != parsed.century_gender // 2
        gender_differs = gender is not None and parsed.gender != gender
        if century_differs or gender_differs:
            return _wrong(
                FormatRule.CENTURY_GENDER,
                {
                    "rule": FormatRule.CENTURY_GENDER.value,
                    "found": str(parsed.century_gender),
                    "expected": None if expected_g is None else str(expected_g),
                },
            )
        expected_yy = f"{birth_date.year % 100:02d}"
        if parsed.year_digits != expected_yy:
            return _wrong(
                FormatRule.BIRTH_YEAR,
                {
                    "rule": FormatRule.BIRTH_YEAR.value,
                    "found": parsed.year_digits,
                    "expected": expected_yy,
                },
            )
    elif gender is not None and parsed.gender != gender:
        return _wrong(
            FormatRule.CENTURY_GENDER,
            {
                "rule": FormatRule.CENTURY_GENDER.value,
                "found": str(parsed.century_gender),
                "expected": str(parsed.century_gender ^ 1),
            },
        )
    return IdentityCheck(None)


def _wrong(rule: FormatRule, detail: dict[str, Any]) -> IdentityCheck:
    return IdentityCheck(VerificationStatus.WRONG_FORMAT, rule, detail)
