"""Names in a DCC: Vietnamese names split into surname and given names, and their ICAO 9303
transliteration for ``fnt``/``gnt`` (``^[A-Z<]*$``).

ICAO Doc 9303 Part 3, section 6 (transliteration of names for the machine-readable zone):

- letters with diacritics lose them (Vietnamese: ``Nguyễn`` → ``NGUYEN``, ``Thị`` → ``THI``,
  ``Ưu`` → ``UU``, ``Ơ`` → ``O``); ``Đ``/``đ`` → ``D`` (it has no decomposition in Unicode,
  so it is mapped explicitly, as are the other letters of the ICAO table: ``Æ`` → ``AE``,
  ``Ø`` → ``OE``, ``ß`` → ``SS``, ``Þ`` → ``TH``, ``Œ`` → ``OE``, ``Ĳ`` → ``IJ``; ``Ä``/``Ö``/``Ü``
  → ``AE``/``OE``/``UE`` and ``Å`` → ``AA``, the table's recommended forms);
- spaces and hyphens between name parts become the filler ``<``; apostrophes and other
  punctuation are left out; digits are not part of a name and are left out;
- upper case; runs of fillers collapse to one and none is left at either end.

A Vietnamese name is written family name first: ``Nguyễn Văn An`` is surname ``Nguyễn`` and
given names ``Văn An`` (``fnt`` ``NGUYEN``, ``gnt`` ``VAN<AN``), as the Ministry's own sample
splits ``Nguyễn`` + ``Bảo Duy``. A one-word name is a surname. Some family names have two
words (``COMPOUND_FAMILY_NAMES``: ``Tôn Thất``, ``Âu Dương``, ...): they stay whole, so
``Tôn Thất Thuyết`` is ``Tôn Thất`` + ``Thuyết`` (``TON<THAT`` / ``THUYET``), when at least one
word is left for the given name. The records keep the name as written; only the split is
decided here, and the PDF shows the family and given names as the DCC holds them.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, NamedTuple

__all__ = ["COMPOUND_FAMILY_NAMES", "MAX_LENGTH", "SplitName", "icao", "split_name"]

MAX_LENGTH: Final = 80  # the schema's maxLength of fn, fnt, gn, gnt

# Letters of the ICAO 9303 table that are not "a base letter plus combining marks" (or whose
# recommended form is not just the base letter). Checked before decomposition.
_SPECIAL: Final[dict[str, str]] = {
    "Đ": "D",
    "đ": "D",
    "Ð": "D",  # Icelandic eth (ICAO: D)
    "ð": "D",
    "Ħ": "H",
    "ħ": "H",
    "Ł": "L",
    "ł": "L",
    "Ŀ": "L",
    "ŀ": "L",
    "Ŧ": "T",
    "ŧ": "T",
    "ı": "I",
    "Æ": "AE",
    "æ": "AE",
    "Ø": "OE",
    "ø": "OE",
    "Œ": "OE",
    "œ": "OE",
    "ß": "SS",
    "ẞ": "SS",
    "Þ": "TH",
    "þ": "TH",
    "Ĳ": "IJ",
    "ĳ": "IJ",
    "Ä": "AE",
    "ä": "AE",
    "Ö": "OE",
    "ö": "OE",
    "Ü": "UE",
    "ü": "UE",
    "Å": "AA",
    "å": "AA",
}

# Vietnamese family names of two (or more) words: the Nguyễn royal lineages (Tôn Thất, Tôn Nữ,
# Công Tằng Tôn Nữ) and the Chinese-origin compound surnames in use in Viet Nam. Compared
# without regard to case, in NFC.
COMPOUND_FAMILY_NAMES: Final = (
    "Công Tằng Tôn Nữ",
    "Tôn Thất",
    "Tôn Nữ",
    "Âu Dương",
    "Hoàng Phủ",
    "Tư Mã",
    "Gia Cát",
    "Thượng Quan",
    "Đông Phương",
    "Công Tôn",
)
_COMPOUND: Final = tuple(
    tuple(unicodedata.normalize("NFC", name).casefold().split())
    for name in sorted(COMPOUND_FAMILY_NAMES, key=lambda n: -len(n.split()))
)

_SEPARATORS: Final = re.compile(r"[\s\-‐‑‒–—]+")
_FILLERS: Final = re.compile(r"<{2,}")


class SplitName(NamedTuple):
    surname: str  # fn
    given: str  # gn ("" when the name has one word)


def _letters(text: str) -> str:
    out: list[str] = []
    for char in text:
        special = _SPECIAL.get(char)
        if special is not None:
            out.append(special)
            continue
        base = "".join(
            c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c)
        ).upper()
        out.append("".join(c for c in base if "A" <= c <= "Z"))
    return "".join(out)


def icao(name: str) -> str:
    """The ICAO 9303 transliteration of ``name`` (``^[A-Z<]*$``, at most 80 characters)."""
    parts = [_letters(part) for part in _SEPARATORS.split(unicodedata.normalize("NFC", name))]
    text = _FILLERS.sub("<", "<".join(p for p in parts if p)).strip("<")
    return text[:MAX_LENGTH].rstrip("<")


def split_name(full_name: str) -> SplitName:
    """Family name first, as Vietnamese names are written (and as the records hold them)."""
    words = " ".join(unicodedata.normalize("NFC", full_name).split()).split(" ")
    if not words or not words[0]:
        raise ValueError("a name needs at least one word")
    folded = tuple(word.casefold() for word in words)
    family = 1
    for compound in _COMPOUND:
        if len(words) > len(compound) and folded[: len(compound)] == compound:
            family = len(compound)
            break
    return SplitName(" ".join(words[:family])[:MAX_LENGTH], " ".join(words[family:])[:MAX_LENGTH])
