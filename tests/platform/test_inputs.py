"""Numbers from requests: a digit Python accepts but int() refuses, or a huge one, never a 500."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from support.platform_client import login
from support.platform_seed import Seed

from kyso.platform.inputs import is_number, parse_number


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
