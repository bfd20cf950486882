"""One way to show numbers, dates and times, and one order for names (issue 17).

Every page, export and PDF writes through this module: numbers as the reader's language writes
them (Babel, ``vi_VN``: "1.860"), dates as dd/mm/yyyy, times in Vietnam time
(Asia/Ho_Chi_Minh) whatever zone they were stored in, and names in Vietnamese alphabetical
order (a ă â b c d đ e ê …, tones second). The Jinja filters are registered once, by
:func:`register`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TypeVar

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

from kyso.platform.errors import DomainError
from kyso.platform.i18n import DEFAULT_LANGUAGE

T = TypeVar("T")

# Vietnam has kept UTC+7 without daylight saving time since 1975; a fixed offset needs no tz
# database (Windows test machines have none) and names the zone people know.
VIETNAM = timezone(timedelta(hours=7), "ICT")
DAY_PATTERN = "dd/MM/yyyy"
_LOCALES = {"vi": "vi_VN", "en": "en_GB"}


def _locale(language: str) -> str:
    return _LOCALES.get(language, _LOCALES[DEFAULT_LANGUAGE])


def number(value: int | float | None, language: str = DEFAULT_LANGUAGE) -> str:
    """1860 → "1.860" (Vietnamese) or "1,860" (English)."""
    if value is None:
        return "—"
    return str(format_decimal(value, locale=_locale(language)))


def vietnam_time(moment: datetime) -> datetime:
    """The moment on a clock in Vietnam. Stored times without a zone are UTC (SQLite)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(VIETNAM)


def day_input(value: date | datetime | str | None) -> str:
    """The value of a dd/mm/yyyy text field: a date formatted, text typed kept as typed."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    return day(value)


def day(value: date | datetime | None) -> str:
    """A date as dd/mm/yyyy; a moment shows the day it was in Vietnam."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        value = vietnam_time(value).date()
    return str(format_date(value, DAY_PATTERN, locale=_locale(DEFAULT_LANGUAGE)))


def moment(value: datetime | None, *, seconds: bool = False) -> str:
    """A moment as dd/mm/yyyy HH:MM in Vietnam time (with seconds where order matters)."""
    if value is None:
        return "—"
    pattern = DAY_PATTERN + (" HH:mm:ss" if seconds else " HH:mm")
    return str(format_datetime(vietnam_time(value), pattern, locale=_locale(DEFAULT_LANGUAGE)))


def serial(serial_hex: str | None) -> str:
    """A certificate serial as people read it aloud and compare it with the token: upper-case
    hex in pairs ("0A 1B 2C"), however it was stored or typed."""
    if not serial_hex:
        return "—"
    digits = "".join(serial_hex.split()).replace(":", "").upper()
    padded = digits if len(digits) % 2 == 0 else "0" + digits
    return " ".join(padded[i : i + 2] for i in range(0, len(padded), 2))


# ---------------------------------------------------------------------------------------------
# Typed dates: dd/mm/yyyy text fields, never the browser's locale-dependent date picker

_TYPED_DAY = re.compile(r"\s*(\d{1,2})\s*[/.-]\s*(\d{1,2})\s*[/.-]\s*(\d{4})\s*")
_ISO_DAY = re.compile(r"\s*(\d{4})-(\d{2})-(\d{2})\s*")  # links and bookmarks made before
MIN_YEAR = 1900
MAX_YEAR = 2100


class DateInputError(DomainError):
    """A typed date that is not a real dd/mm/yyyy day; the text says what was typed."""


def parse_day(text: str, field: str = "") -> date | None:
    """The day typed as dd/mm/yyyy (also d/m/yyyy, or with '.' or '-'); empty means none.

    31/02/2021 and 08/04/20211 are refused with a message naming the field and the text,
    never silently emptied or accepted.
    """
    if not text or not text.strip():
        return None
    matched = _TYPED_DAY.fullmatch(text)
    iso = _ISO_DAY.fullmatch(text)
    if matched is not None:
        day_, month, year = (int(part) for part in matched.groups())
    elif iso is not None:
        year, month, day_ = (int(part) for part in iso.groups())
    else:
        raise DateInputError("common.date_invalid", field=field, value=text.strip()[:40])
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise DateInputError("common.date_invalid", field=field, value=text.strip()[:40])
    try:
        return date(year, month, day_)
    except ValueError:
        raise DateInputError("common.date_invalid", field=field, value=text.strip()[:40]) from None


# ---------------------------------------------------------------------------------------------
# Vietnamese alphabetical order

_ALPHABET = "aăâbcdđeêfghijklmnoôơpqrstuưvwxyz"
_RANK = {letter: rank for rank, letter in enumerate(_ALPHABET, start=1)}
# Combining marks that make a new letter (ă â ê ô ơ ư) ...
_LETTER_MARKS = {"\u0306": "\u0306", "\u0302": "\u0302", "\u031b": "\u031b"}
# ... and the tones, in dictionary order: ngang, huyền, hỏi, ngã, sắc, nặng.
_TONES = {"\u0300": 1, "\u0309": 2, "\u0303": 3, "\u0301": 4, "\u0323": 5}


def _letters(text: str) -> list[tuple[str, int]]:
    """Each letter of ``text`` (lower case, marks of the letter kept) with its tone."""
    out: list[tuple[str, int]] = []
    for char in unicodedata.normalize("NFD", text.casefold()):
        if char in _TONES and out:
            out[-1] = (out[-1][0], _TONES[char])
        elif char in _LETTER_MARKS and out:
            out[-1] = (unicodedata.normalize("NFC", out[-1][0] + char), out[-1][1])
        elif unicodedata.combining(char):
            continue
        else:
            out.append((char, 0))
    return out


def sort_key(name: str | None) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """Vietnamese alphabetical order: letters first (Dương before Đặng), tones second.

    Spaces sort before every letter (so "An Bình" comes before "Anh"), digits and other
    characters after the letters in code-point order.
    """
    letters = _letters(name or "")
    primary = tuple(
        0 if char.isspace() else _RANK.get(char, len(_RANK) + ord(char)) for char, _tone in letters
    )
    tones = tuple(tone for _char, tone in letters)
    return primary, tones, name or ""


def sorted_by_name(items: list[T], name: Callable[[T], str | None]) -> list[T]:
    """``items`` in Vietnamese alphabetical order of ``name(item)``."""
    return sorted(items, key=lambda item: sort_key(name(item)))
