"""Numbers and dates from requests: ids, pages, cursors, form tokens; the dates people type.

``str.isdigit()`` says yes to "²" and "٣", which ``int()`` refuses (a 500 where the person
should get the page or a clear message), and says nothing of length (a 20-digit id overflows
the database's integer). Every number taken from a URL, form or cursor goes through here.
"""

from __future__ import annotations

import re
from datetime import date

from kyso.platform.errors import DomainError
from kyso.platform.i18n import DEFAULT_LANGUAGE, translate

ID_DIGITS = 9  # below 2**31: every integer column of the schema


def is_number(text: str | None, max_digits: int = ID_DIGITS) -> bool:
    """Only ASCII digits, at most ``max_digits`` of them."""
    return text is not None and text.isascii() and text.isdigit() and len(text) <= max_digits


def parse_number(text: str | None, max_digits: int = ID_DIGITS) -> int | None:
    return int(text) if text is not None and is_number(text, max_digits) else None


def storable(text: str) -> bool:
    """Whether a text can be compared with stored text: PostgreSQL's text holds no NUL byte
    (psycopg refuses the query, a 500), so a text with one matches nothing on any backend."""
    return "\x00" not in text


# The ways Vietnamese forms and spreadsheets write a date: day first (17/05/1990, 17-05-1990,
# 17.05.1990, 7/5/1990), or ISO year first for links, bookmarks and date inputs (1990-05-17,
# 1990/05/17). A year always has four ASCII digits: a two-digit year is never guessed, and
# 08/04/20211 is no date.
# A year like 0001 or 9999 is a typing slip, and would overflow the time-zone arithmetic of the
# filters (Vietnam midnight in UTC). The range is wide on purpose: the rules of each form say
# more precisely what they accept (a birth before 1900 has the importer's own message).
YEARS = range(1800, 2201)
_DAY_FIRST = re.compile(r"([0-9]{1,2})\s*[/.-]\s*([0-9]{1,2})\s*[/.-]\s*([0-9]{4})")
_YEAR_FIRST = re.compile(r"([0-9]{4})([/-])([0-9]{1,2})\2([0-9]{1,2})")
DATE_MAX_CHARS = 20
DATE_ERROR = "common.date_invalid"


class DateInvalid(DomainError):
    """A typed date that is no real day (31/02/2021, a five-digit year, words): the message
    names the field and repeats what was typed, in the reader's language."""

    def __init__(self, value: str, field: str | None = None) -> None:
        super().__init__(DATE_ERROR, value=value[:40])
        self.field = field  # the catalogue key of the field's label

    def text(self, language: str = DEFAULT_LANGUAGE) -> str:
        label = translate(self.field, language) if self.field else ""
        return translate(self.key, language, field=label, **self.values)


def parse_date(text: str | None, field: str | None = None) -> date | None:
    """The one parser of the dates people type, in every form, filter, import and command.

    ``None`` when nothing was typed; the day when the text is a real day in one of the ways
    above; otherwise :class:`DateInvalid`, whose message names ``field`` (the catalogue key of
    the field's label) and the text: a wrong date is never silently emptied or accepted.
    """
    if text is None or not text.strip():
        return None
    typed = text.strip()
    if len(typed) <= DATE_MAX_CHARS:
        if (day_first := _DAY_FIRST.fullmatch(typed)) is not None:
            day, month, year = (int(part) for part in day_first.groups())
        elif (year_first := _YEAR_FIRST.fullmatch(typed)) is not None:
            year, month, day = int(year_first[1]), int(year_first[3]), int(year_first[4])
        else:
            raise DateInvalid(typed, field)
        try:
            if year in YEARS:
                return date(year, month, day)
        except ValueError:
            pass
    raise DateInvalid(typed, field)
