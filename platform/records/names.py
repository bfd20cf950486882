"""Vietnamese names for search and for ICAO transliteration."""

from __future__ import annotations

import unicodedata


def name_key(full_name: str) -> str:
    """Lower case, without diacritics, single spaces: "Nguyễn  Văn Đức" -> "nguyen van duc".

    The search key for name prefixes that ignore accents (officers type without them).
    """
    text = full_name.replace("Đ", "D").replace("đ", "d")
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return " ".join(stripped.lower().split())
