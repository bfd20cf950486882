"""One way to show numbers, dates and times, and one order for names (issue 17).

Every page, export and PDF writes through this module: numbers as the reader's language writes
them (Babel, ``vi_VN``: "1.860"), dates as dd/mm/yyyy, times in Vietnam time
(Asia/Ho_Chi_Minh) whatever zone they were stored in, and names in Vietnamese alphabetical
order (a ă â b c d đ e ê …, tones second). The Jinja filters are registered once, by
:func:`register`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TypeVar

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

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


def serial_digits(text: str | None) -> str:
    """A serial reduced to what X.509 compares: upper-case hex, no separators, no leading zero
    (so that "0A:1B", "0a 1b" and "A1B" are one serial)."""
    digits = "".join((text or "").split()).replace(":", "").upper().lstrip("0")
    return digits or "0"


@dataclass(frozen=True)
class CertificateFacts:
    """A signing certificate as people read it (issue 17): who it belongs to, its key, when it
    is valid and its serial, in the one format every page, the picker and the exports use."""

    organisation: str  # O (else CN)
    tax_code: str  # MST, from the subject's UID=MST:…
    key_type: str  # "RSA-2048", "ECDSA P-256"
    valid: str  # "01/01/2026–31/12/2027", Vietnam time
    serial: str  # "0A 1B 2C"
    serial_hex: str  # "A1B2C": what is compared and registered

    def label(self) -> str:
        """One line: organisation · MST · key type · validity · serial."""
        return " · ".join(
            part
            for part in (
                self.organisation,
                f"MST {self.tax_code}" if self.tax_code != "—" else "",
                self.key_type,
                self.valid,
                self.serial,
            )
            if part and part != "—"
        )


_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def key_type(kind: str | None, size: int | None = None, curve: str | None = None) -> str:
    """The key as people name it: RSA-2048, ECDSA P-256 (``kind``: the agent's RSA or EC)."""
    if kind == "RSA" and size:
        return f"RSA-{size}"
    if kind == "EC":
        return f"ECDSA {_CURVES.get(curve or '', curve or size or '')}".strip()
    return kind or "—"


def validity(not_before: datetime | None, not_after: datetime | None) -> str:
    if not_before is None and not_after is None:
        return "—"
    return f"{day(not_before)}–{day(not_after)}"


def tax_code(uids: list[str]) -> str:
    """The MST of a subject's UID values ("MST:0312345678" → "0312345678")."""
    for value in uids:
        head, sep, code = value.partition(":")
        if sep and head.strip().upper() == "MST" and code.strip():
            return code.strip()
    return "—"


def certificate_facts(der: bytes | None, serial_hex: str | None = None) -> CertificateFacts:
    """The facts of a certificate (DER); with only its serial known, the serial alone."""
    if der is None:
        digits = serial_digits(serial_hex) if serial_hex else ""
        return CertificateFacts("—", "—", "—", "—", serial(digits), digits)
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:  # stored but unreadable: what the serial alone says
        return certificate_facts(None, serial_hex)
    subject = cert.subject

    def values(oid: x509.ObjectIdentifier) -> list[str]:
        return [str(a.value) for a in subject.get_attributes_for_oid(oid)]

    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        kind = key_type("RSA", key.key_size)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind = key_type("EC", key.curve.key_size, key.curve.name)
    else:
        kind = type(key).__name__.removesuffix("PublicKey") or "—"
    digits = format(cert.serial_number, "X")
    names = values(NameOID.ORGANIZATION_NAME) or values(NameOID.COMMON_NAME) or ["—"]
    return CertificateFacts(
        organisation=names[0],
        tax_code=tax_code(values(NameOID.USER_ID)),
        key_type=kind,
        valid=validity(cert.not_valid_before_utc, cert.not_valid_after_utc),
        serial=serial(digits),
        serial_hex=digits,
    )


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


SortKey = tuple[tuple[int, ...], tuple[int, ...], str]


def sort_key(name: str | None) -> SortKey:
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


def sort_bytes(name: str | None) -> bytes:
    """:func:`sort_key` as bytes that compare the same way (memcmp): what SQLite sorts by.

    Each letter's rank + 1 in 3 bytes, a zero terminator (below every rank, so a shorter name
    comes first), each tone + 1 in one byte, a zero terminator, then the name's UTF-8.
    """
    primary, tones, text = sort_key(name)
    return (
        b"".join((rank + 1).to_bytes(3, "big") for rank in primary)
        + b"\0\0\0"
        + bytes(tone + 1 for tone in tones)
        + b"\0"
        + text.encode("utf-8", "surrogatepass")
    )


def sorted_by_name(items: list[T], name: Callable[[T], str | None]) -> list[T]:
    """``items`` in Vietnamese alphabetical order of ``name(item)``."""
    return sorted(items, key=lambda item: sort_key(name(item)))
