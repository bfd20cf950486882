"""Numbers and dates from requests: ids, pages, cursors, form tokens; the dates people type.

``str.isdigit()`` says yes to "²" and "٣", which ``int()`` refuses (a 500 where the person
should get the page or a clear message), and says nothing of length (a 20-digit id overflows
the database's integer). Every number taken from a URL, form or cursor goes through here.
"""

from __future__ import annotations

from datetime import date, datetime

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


# The ways Vietnamese forms and spreadsheets write a date, day first; ISO for the date inputs.
# A year always has four digits (``%Y`` takes no fewer): a two-digit year is never guessed.
DATE_FORMATS = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d", "%Y/%m/%d")
DATE_MAX_CHARS = 20


def parse_date(text: str | None) -> date | None:
    """A date a person typed (``17/05/1990``, ``17-05-1990``, ``17.05.1990``, ``1990-05-17``),
    or ``None`` when it is none of those or no real day. The one date parser of the platform's
    forms, search filters and imports."""
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > DATE_MAX_CHARS:
        return None
    for pattern in DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None
