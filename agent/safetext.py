"""Which characters of a page's text may reach the officer's consent dialog.

The manifest's summary is the only text a page (through the platform) puts in the dialog. It must
read on screen exactly as it is: nothing invisible, nothing that reorders the text around it, no
blank that looks like a space but is not one, no line break that pushes the agent's own words
away. Rather than a list of known-bad characters (which missed U+061C, U+FEFF, U+2060 ...), the
rule is by Unicode general category (``unicodedata``), plus the few invisible characters that
Unicode files under letters or marks:

- every control (Cc), format (Cf: bidi controls and marks, zero-width characters, BOM, word
  joiner, invisible operators, tag characters ...), surrogate (Cs), private-use (Co) and
  unassigned (Cn) code point;
- every line (Zl) and paragraph (Zp) separator, and every space separator (Zs) but U+0020;
- the blank-looking or invisible letters and marks listed in ``INVISIBLE`` (Hangul fillers,
  the braille blank, the combining grapheme joiner, variation selectors, Khmer inherent vowels).
"""

from __future__ import annotations

import unicodedata
from typing import Final

REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
SPACE: Final = "\u0020"

INVISIBLE: Final = frozenset(
    {
        0x034F,  # combining grapheme joiner (Mn)
        0x115F,  # Hangul choseong filler (Lo)
        0x1160,  # Hangul jungseong filler (Lo)
        0x17B4,  # Khmer vowel inherent aq (Mn)
        0x17B5,  # Khmer vowel inherent aa (Mn)
        0x2800,  # braille pattern blank (So)
        0x3164,  # Hangul filler (Lo)
        0xFFA0,  # halfwidth Hangul filler (Lo)
        *range(0x180B, 0x1810),  # Mongolian free variation selectors (Mn; U+180E is Cf)
        *range(0xFE00, 0xFE10),  # variation selectors (Mn)
        *range(0xE0100, 0xE01F0),  # variation selectors supplement (Mn)
    }
)


def is_refused(char: str) -> bool:
    """True for a character that may not appear in text shown to the officer."""
    category = unicodedata.category(char)
    if category in REFUSED_CATEGORIES:
        return True
    if category == "Zs":
        return char != SPACE
    return ord(char) in INVISIBLE


def first_refused(text: str) -> int | None:
    """Index of the first refused character of ``text``, or None when all may be shown."""
    for index, char in enumerate(text):
        if is_refused(char):
            return index
    return None
