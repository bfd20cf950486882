"""Numbers from requests: a digit Python accepts but int() refuses, or a huge one, never a 500."""

from __future__ import annotations

from datetime import date

import pytest
from flask.testing import FlaskClient
from support.platform_client import login
from support.platform_seed import Seed

from kyso.platform.inputs import is_number, parse_date, parse_number


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
    "text", ["17/05/1990", "17-05-1990", "17.05.1990", "1990-05-17", "1990/05/17", " 17/05/1990 "]
)
def test_the_one_date_parser_reads_every_way_a_date_is_written(text: str) -> None:
    assert parse_date(text) == date(1990, 5, 17)


@pytest.mark.parametrize(
    "text", ["17/05/90", "31/02/1990", "1990-13-01", "17 05 1990", "", "1" * 40, None, "²/05/1990"]
)
def test_the_one_date_parser_refuses_what_is_no_date(text: str | None) -> None:
    assert parse_date(text) is None


def test_every_form_reads_dates_alike() -> None:
    """The signing search, the feedback form, the passport lookup and the statistics forms
    once had a parser each, and "17.05.1990" was a date on some and not on others."""
    from kyso.platform.signing.search import parse_filters

    filters, problems = parse_filters({"from": "17.05.1990", "to": "1990/05/18"})
    assert problems == []
    assert (filters.date_from, filters.date_to) == (date(1990, 5, 17), date(1990, 5, 18))
