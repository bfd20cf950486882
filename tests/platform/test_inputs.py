"""Numbers from requests: a digit Python accepts but int() refuses, or a huge one, never a 500."""

from __future__ import annotations

from datetime import date

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from support.platform_client import login
from support.platform_seed import Seed

from kyso.platform.inputs import DateInvalid, is_number, parse_date, parse_number


@pytest.mark.parametrize("text", ["²", "٣", "1²", "", " 1", "-1", "1e3", "9" * 10, None])
def test_only_short_ascii_digits_are_numbers(text: str | None) -> None:
    assert not is_number(text)
    assert parse_number(text) is None


def test_numbers() -> None:
    assert parse_number("0") == 0
    assert parse_number("123456789") == 123456789
    assert parse_number("1234567890123", 13) == 1234567890123


@pytest.mark.parametrize(
    ("user", "path"),
    [
        ("kyduyet.bennghe", "/signing/preview?page=²"),
        ("kyduyet.bennghe", "/signing/?page=²&count=٣"),
        ("nhanvien.bennghe", "/stats/invalid?after=²"),
        ("nhanvien.bennghe", "/stats/invalid?after=99999999999999999999"),
        ("nhanvien.bennghe", "/feedback/inbox?after=1:99999999999999999999"),
    ],
)
def test_odd_numbers_in_urls_do_not_break_pages(
    client: FlaskClient, org: Seed, user: str, path: str
) -> None:
    login(client, user)
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "text",
    [
        "17/05/1990",
        "17-05-1990",
        "17.05.1990",
        "1990-05-17",
        "1990/05/17",
        " 17/05/1990 ",
        "17 / 05 / 1990",
    ],
)
def test_the_one_date_parser_reads_every_way_a_date_is_written(text: str) -> None:
    assert parse_date(text) == date(1990, 5, 17)


def test_day_and_month_may_have_one_digit() -> None:
    assert parse_date("8/4/2021") == date(2021, 4, 8)
    assert parse_date("2021-4-8") == date(2021, 4, 8)


@pytest.mark.parametrize("text", ["", "   ", None])
def test_nothing_typed_is_no_date_and_no_error(text: str | None) -> None:
    assert parse_date(text, "users.audit_since") is None


@pytest.mark.parametrize(
    "text",
    [
        "31/02/2021",  # no such day
        "29/02/2023",
        "08/04/20211",  # a five-digit year
        "20211-04-08",
        "17/05/90",  # a two-digit year is never guessed
        "01/01/0001",  # outside 1800-2200: a slip, and beyond the filters' time-zone arithmetic
        "31/12/9999",
        "1799-12-31",
        "1990-13-01",
        "17 05 1990",
        "1990-05/17",
        "1" * 40,
        "²/05/1990",  # digits int() reads but nobody types
        "١٧/٠٥/١٩٩٠",
        "hôm qua",
    ],
)
def test_the_one_date_parser_refuses_what_is_no_date_with_one_message(text: str) -> None:
    with pytest.raises(DateInvalid) as refused:
        parse_date(text, "users.audit_since")
    assert refused.value.key == "common.date_invalid"
    shown = text.strip()[:40]
    assert refused.value.text("vi") == (
        f"Từ ngày: ngày “{shown}” không hợp lệ (không có ngày này trên lịch, hoặc không viết "
        "theo dạng ngày/tháng/năm). Hãy nhập lại theo dạng ngày/tháng/năm, ví dụ 08/04/2021, "
        "năm có 4 chữ số."
    )
    assert refused.value.text("en").startswith(f"From: the date “{shown}” is not valid")


def test_every_form_reads_dates_alike() -> None:
    """The signing search, the feedback form, the passport lookup and the statistics forms
    once had a parser each, and "17.05.1990" was a date on some and not on others."""
    from kyso.platform.signing.search import parse_filters

    filters, problems = parse_filters({"from": "17.05.1990", "to": "1990/05/18"})
    assert problems == []
    assert (filters.date_from, filters.date_to) == (date(1990, 5, 17), date(1990, 5, 18))


def test_every_form_refuses_a_wrong_date_with_the_same_message(session: Session) -> None:
    """31/02 on the signing search, the feedback form, the passport lookup: one message that
    names the field and the text (before: three wordings, and the lookup's said nothing of the
    date)."""
    from kyso.platform.feedback.service import FeedbackForm, InvalidFeedback, clean
    from kyso.platform.passport import lookup
    from kyso.platform.signing.search import parse_filters

    _, problems = parse_filters({"from": "31/02/2022"})
    assert [(p.key, p.text("en")) for p in problems] == [
        ("common.date_invalid", _date_invalid_en("Vaccinated from", "31/02/2022"))
    ]
    form = FeedbackForm(
        full_name="Nguyễn Thị Lan",
        birth_date="31/02/1990",
        phone="0912345678",
        identity_number="",
        field="birth_date",
        message="Ngày sinh của tôi bị ghi sai trên chứng nhận.",
    )
    with pytest.raises(InvalidFeedback) as feedback:
        clean(form)
    problem = feedback.value.problems["birth_date"]
    expected = _date_invalid_en("Date of birth (day/month/year)", "31/02/1990")
    assert (problem.key, problem.text("en")) == ("common.date_invalid", expected)
    assert feedback.value.text("en") == expected  # the form's first problem, field named
    with pytest.raises(DateInvalid) as refused:
        lookup.find_passport(
            session,
            identity_number="079190000123",
            birth_date="31/02/1990",
            phone_last4="5678",
            ip="10.0.0.9",
            now=None,
        )
    assert refused.value.text("en") == _date_invalid_en("Date of birth (dd/mm/yyyy)", "31/02/1990")


def _date_invalid_en(field: str, value: str) -> str:
    return (
        f"{field}: the date “{value}” is not valid (no such day on the calendar, or not written "
        "as day/month/year). Type it again as day/month/year, for example 08/04/2021, with a "
        "4-digit year."
    )
