"""Statuses and their reasons in words, Vietnamese first."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from kyso.platform.i18n import catalogue
from kyso.platform.models import Gender, VerificationStatus
from kyso.platform.registry.identity import FormatRule, check_identity
from kyso.platform.registry.status import detail_text, status_hint, status_label, status_text

S = VerificationStatus


def test_every_status_has_a_name_and_a_hint_in_both_languages() -> None:
    texts = catalogue()
    for status in VerificationStatus:
        assert f"registry.status_{status.value}" in texts
        for lang in ("vi", "en"):
            assert status_label(status, lang)
            hint = status_hint(status, lang)
            assert (hint is None) == (status is S.VERIFIED)
    assert status_label("verified", "vi") == "Đã xác minh"
    assert status_label(S.NO_IDENTITY, "vi") == "Chưa có số định danh"
    assert status_label(S.WRONG_FORMAT, "vi") == "Số định danh sai định dạng"
    assert status_label(S.MISMATCH, "vi") == "Sai lệch với CSDL quốc gia về dân cư"
    assert status_label(S.UNAVAILABLE, "vi") == "Không kết nối được CSDL dân cư — sẽ thử lại"
    assert status_label(S.MISMATCH, "en") == "Does not match the National Population Database"


def test_every_format_rule_has_a_text() -> None:
    for rule in FormatRule:
        assert f"registry.rule_{rule.value}" in catalogue()


@pytest.mark.parametrize(
    ("number", "born", "gender", "vi", "en"),
    [
        (
            "099090000001",
            date(1990, 1, 1),
            Gender.MALE,
            "Số định danh sai định dạng: mã tỉnh 099 (3 chữ số đầu) không có trong danh mục",
            "Identity number in the wrong format: the province code 099 (first 3 digits) "
            "does not exist",
        ),
        (
            "0790900001",
            date(1990, 1, 1),
            Gender.MALE,
            "Số định danh sai định dạng: có 10 chữ số, phải có 12 chữ số",
            "Identity number in the wrong format: it has 10 digits instead of 12",
        ),
        (
            "07909000000O",
            date(1990, 1, 1),
            Gender.MALE,
            "Số định danh sai định dạng: chỉ được gồm các chữ số 0–9",
            "Identity number in the wrong format: it may contain only the digits 0–9",
        ),
        (
            "079090000001",
            date(1990, 1, 1),
            Gender.FEMALE,
            "Số định danh sai định dạng: chữ số thứ 4 là 0 nhưng theo năm sinh và giới tính "
            "phải là 1",
            "Identity number in the wrong format: the 4th digit is 0 but the birth year and "
            "gender call for 1",
        ),
        (
            "079090000001",
            date(1899, 1, 1),
            Gender.MALE,
            "Số định danh sai định dạng: năm sinh nằm ngoài khoảng 1900–2399 mà số định danh ghi "
            "được",
            "Identity number in the wrong format: the birth year lies outside 1900–2399, which "
            "identity numbers can encode",
        ),
        (
            "079089000001",
            date(1990, 1, 1),
            Gender.MALE,
            "Số định danh sai định dạng: chữ số thứ 5–6 là 89 nhưng năm sinh kết thúc bằng 90",
            "Identity number in the wrong format: the 5th–6th digits are 89 but the birth year "
            "ends in 90",
        ),
    ],
)
def test_format_rules_in_words(number: str, born: date, gender: Gender, vi: str, en: str) -> None:
    check = check_identity(number, born, gender)
    assert check.status is S.WRONG_FORMAT
    assert status_text(S.WRONG_FORMAT, check.detail, "vi") == vi
    assert status_text(S.WRONG_FORMAT, check.detail, "en") == en


def test_mismatch_in_words() -> None:
    detail = {
        "fields": ["full_name", "birth_date", "gender"],
        "registry": {
            "full_name": "Võ Thị Hương Giang",
            "birth_date": "1995-04-05",
            "gender": "female",
        },
    }
    assert status_text(S.MISMATCH, detail, "vi") == (
        "Sai lệch với CSDL quốc gia về dân cư: khác về họ tên, ngày sinh, giới tính — "
        "CSDL dân cư ghi: họ tên Võ Thị Hương Giang; ngày sinh 05/04/1995; giới tính Nữ"
    )
    assert status_text(S.MISMATCH, detail, "en") == (
        "Does not match the National Population Database: different full name, birth date, "
        "gender — the population database has: full name Võ Thị Hương Giang; "
        "birth date 05/04/1995; gender female"
    )
    only_date = {"fields": ["birth_date"], "registry": {"birth_date": "1970-12-02"}}
    assert detail_text(S.MISMATCH, only_date, "vi") == (
        "khác về ngày sinh — CSDL dân cư ghi: ngày sinh 02/12/1970"
    )
    not_found = {"fields": ["not_found"], "registry": {}}
    assert status_text(S.MISMATCH, not_found, "vi") == (
        "Sai lệch với CSDL quốc gia về dân cư: không tìm thấy số định danh trong CSDL dân cư"
    )


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (S.VERIFIED, None),
        (S.PENDING, None),
        (S.NO_IDENTITY, None),
        (S.OLD_ID_ONLY, None),
        (S.UNAVAILABLE, {"reason": "timeout"}),  # IT's detail, not the facility's
        (S.MISMATCH, None),
        (S.MISMATCH, {"fields": ["something_new"]}),
        (S.WRONG_FORMAT, {"rule": "from_a_newer_version"}),
        (S.WRONG_FORMAT, {}),
    ],
)
def test_without_a_usable_detail_only_the_name_is_shown(
    status: VerificationStatus, detail: dict[str, Any] | None
) -> None:
    assert status_text(status, detail, "vi") == status_label(status, "vi")
    assert status_text(status.value, detail, "en") == status_label(status, "en")


def test_unknown_status_is_an_error() -> None:
    with pytest.raises(ValueError, match="approved"):
        status_text("approved", None, "vi")
