"""The identity-number format check, rule by rule (Circular 07/2016/TT-BCA)."""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

import pytest

from kyso.platform.models import Gender, VerificationStatus
from kyso.platform.registry.identity import (
    PROVINCES,
    FormatRule,
    IdentityCheck,
    PersonalNumber,
    century_gender_digit,
    check_identity,
    is_well_formed,
    parse,
)

# Appendix I of Circular 07/2016/TT-BCA, transcribed as a table (see tests/data/vn/README.md).
PROVINCE_TABLE = Path(__file__).resolve().parents[1] / "data" / "vn" / "province-codes.csv"
MALE, FEMALE = Gender.MALE, Gender.FEMALE
BORN_1990 = date(1990, 5, 17)


def number(province: str = "079", g: int = 0, yy: str = "90", serial: str = "123456") -> str:
    return f"{province}{g}{yy}{serial}"


def test_the_table_has_the_63_province_codes() -> None:
    assert len(PROVINCES) == 63
    assert all(re.fullmatch(r"[0-9]{3}", code) for code in PROVINCES)
    assert len(set(PROVINCES.values())) == 63
    assert PROVINCES["001"] == "Hà Nội"
    assert PROVINCES["079"] == "TP. Hồ Chí Minh"
    assert PROVINCES["096"] == "Cà Mau"
    with pytest.raises(TypeError):
        PROVINCES["099"] = "nowhere"  # type: ignore[index]


def test_the_table_is_the_one_of_the_circular() -> None:
    with PROVINCE_TABLE.open(encoding="utf-8", newline="") as file:
        listed = {row["code"]: row["name"] for row in csv.DictReader(file)}
    assert len(listed) == 63
    assert listed == dict(PROVINCES)


@pytest.mark.parametrize(("code", "province"), sorted(PROVINCES.items()))
def test_every_province_code_is_well_formed(code: str, province: str) -> None:
    value = number(province=code)
    parsed = parse(value)
    assert isinstance(parsed, PersonalNumber)
    assert parsed.province_code == code
    assert parsed.province == province
    assert check_identity(value, BORN_1990, MALE) == IdentityCheck(None)


def test_every_other_three_digit_code_is_an_unknown_province() -> None:
    for candidate in (f"{n:03d}" for n in range(1000)):
        result = check_identity(number(province=candidate), BORN_1990, MALE)
        if candidate in PROVINCES:
            assert result.well_formed, candidate
        else:
            assert result.status == VerificationStatus.WRONG_FORMAT, candidate
            assert result.rule == FormatRule.PROVINCE
            assert result.detail == {"rule": "province", "found": candidate}


@pytest.mark.parametrize(
    ("g", "century", "gender"),
    [
        (0, 1900, MALE),
        (1, 1900, FEMALE),
        (2, 2000, MALE),
        (3, 2000, FEMALE),
        (4, 2100, MALE),
        (5, 2100, FEMALE),
        (6, 2200, MALE),
        (7, 2200, FEMALE),
        (8, 2300, MALE),
        (9, 2300, FEMALE),
    ],
)
def test_each_century_and_gender_digit(g: int, century: int, gender: Gender) -> None:
    born = date(century + 45, 1, 31)
    value = number(g=g, yy="45")
    parsed = parse(value)
    assert isinstance(parsed, PersonalNumber)
    assert (parsed.century, parsed.gender, parsed.birth_year) == (century, gender, century + 45)
    assert century_gender_digit(century + 45, gender) == g
    assert check_identity(value, born, gender).well_formed
    # The same digit for the other gender, or for the neighbouring centuries, is inconsistent.
    other = FEMALE if gender == MALE else MALE
    wrong_gender = check_identity(value, born, other)
    assert wrong_gender.rule == FormatRule.CENTURY_GENDER
    assert wrong_gender.detail == {
        "rule": "century_gender",
        "found": str(g),
        "expected": str(g ^ 1),
    }
    for shifted in (century - 100, century + 100):
        if 1900 <= shifted <= 2399:
            result = check_identity(value, date(shifted + 45, 1, 31), gender)
            assert result.rule == FormatRule.CENTURY_GENDER
            assert result.detail is not None
            assert result.detail["expected"] == str(century_gender_digit(shifted + 45, gender))


@pytest.mark.parametrize(
    ("year", "male_digit", "yy"),
    [(1900, 0, "00"), (1999, 0, "99"), (2000, 2, "00"), (2099, 2, "99"), (2100, 4, "00")],
)
def test_edge_years(year: int, male_digit: int, yy: str) -> None:
    born = date(year, 12, 31) if year % 100 else date(year, 1, 1)
    for gender, g in ((MALE, male_digit), (FEMALE, male_digit + 1)):
        assert check_identity(number(g=g, yy=yy), born, gender).well_formed
    # 1999 and 2099 share "99" but not the century digit; 1900/2000 share "00".
    twin = {0: 2, 2: 0, 4: 2}[male_digit]
    result = check_identity(number(g=twin, yy=yy), born, MALE)
    assert result.rule == FormatRule.CENTURY_GENDER
    assert result.detail == {
        "rule": "century_gender",
        "found": str(twin),
        "expected": str(male_digit),
    }


def test_birth_year_digits_must_match() -> None:
    result = check_identity(number(yy="91"), BORN_1990, MALE)
    assert result.status == VerificationStatus.WRONG_FORMAT
    assert result.rule == FormatRule.BIRTH_YEAR
    assert result.detail == {"rule": "birth_year", "found": "91", "expected": "90"}
    assert check_identity(number(g=3, yy="09"), date(2009, 2, 1), None).well_formed
    assert check_identity(number(g=2, yy="09"), date(2009, 2, 1), MALE).well_formed


def test_century_is_reported_before_the_year() -> None:
    result = check_identity(number(g=3, yy="85"), BORN_1990, MALE)
    assert result.rule == FormatRule.CENTURY_GENDER


@pytest.mark.parametrize("year", [1899, 1850, 2400])
def test_birth_years_no_number_can_encode(year: int) -> None:
    with pytest.raises(ValueError, match="no century digit"):
        century_gender_digit(year, MALE)
    result = check_identity(number(g=0, yy=f"{year % 100:02d}"), date(year, 6, 1), MALE)
    assert result.status == VerificationStatus.WRONG_FORMAT
    assert result.rule == FormatRule.CENTURY_GENDER
    assert result.detail == {"rule": "century_gender", "found": "0", "expected": None}


@pytest.mark.parametrize("missing", [None, "", "   ", "\t\n"])
def test_no_identity(missing: str | None) -> None:
    assert check_identity(missing, BORN_1990, MALE) == IdentityCheck(VerificationStatus.NO_IDENTITY)
    assert not is_well_formed(missing)


@pytest.mark.parametrize("cmnd", ["025123456", "000000000", " 272345678 "])
def test_nine_digits_is_an_old_id_card_not_a_wrong_format(cmnd: str) -> None:
    result = check_identity(cmnd, BORN_1990, MALE)
    assert result == IdentityCheck(VerificationStatus.OLD_ID_ONLY)
    assert not result.well_formed


@pytest.mark.parametrize(
    ("value", "rule", "detail"),
    [
        ("07919012345", FormatRule.LENGTH, {"rule": "length", "length": 11}),
        ("0791901234", FormatRule.LENGTH, {"rule": "length", "length": 10}),
        ("0791901234567", FormatRule.LENGTH, {"rule": "length", "length": 13}),
        ("07919012", FormatRule.LENGTH, {"rule": "length", "length": 8}),
        ("0", FormatRule.LENGTH, {"rule": "length", "length": 1}),
        ("07919012345A", FormatRule.DIGITS, {"rule": "digits"}),
        ("CMND02512345", FormatRule.DIGITS, {"rule": "digits"}),
        ("02512345X", FormatRule.DIGITS, {"rule": "digits"}),
        ("079 190 123 456", FormatRule.DIGITS, {"rule": "digits"}),
        ("079-190-123456", FormatRule.DIGITS, {"rule": "digits"}),
        ("-79190123456", FormatRule.DIGITS, {"rule": "digits"}),
        ("０７９１９０１２３４５６", FormatRule.DIGITS, {"rule": "digits"}),  # full-width
        ("٠٧٩١٩٠١٢٣٤٥٦", FormatRule.DIGITS, {"rule": "digits"}),  # Arabic-Indic
        ("079190123456\n1", FormatRule.DIGITS, {"rule": "digits"}),
    ],
)
def test_wrong_format(value: str, rule: FormatRule, detail: dict[str, object]) -> None:
    result = check_identity(value, BORN_1990, MALE)
    assert result.status == VerificationStatus.WRONG_FORMAT
    assert result.rule == rule
    assert result.detail == detail
    assert not is_well_formed(value)


def test_surrounding_blanks_are_ignored() -> None:
    assert check_identity("  079090123456 ", BORN_1990, MALE).well_formed
    assert is_well_formed(" 079090123456\t")


def test_format_only_without_the_person() -> None:
    assert check_identity(number(g=9, yy="77")).well_formed  # 2377: reserved but well-formed
    assert check_identity(number(province="000")).rule == FormatRule.PROVINCE
    # With the gender alone, only the gender half of G is checked.
    assert check_identity(number(g=3), gender=FEMALE).well_formed
    only_gender = check_identity(number(g=3), gender=MALE)
    assert only_gender.detail == {"rule": "century_gender", "found": "3", "expected": "2"}
    # With the birth date alone, only the century half of G and the year are checked.
    assert check_identity(number(g=1), BORN_1990).well_formed
    assert check_identity(number(g=2), BORN_1990).rule == FormatRule.CENTURY_GENDER


def test_the_parts_of_a_number() -> None:
    parsed = parse("001305012345")
    assert parsed == PersonalNumber("001305012345", "001", 3, "05", "012345")
    assert isinstance(parsed, PersonalNumber)
    assert (parsed.province, parsed.birth_year, parsed.gender) == ("Hà Nội", 2005, FEMALE)
    assert parse("00130501234") is FormatRule.LENGTH
    assert parse("x01305012345") is FormatRule.DIGITS
