"""The translation catalogue: every text a person reads, in Vietnamese (default) and English.

Texts live in ``agent/locales/*.toml``; each file is one area (``errors``, ``console``, ...) and
each key holds a ``vi`` and an ``en`` text with ``{placeholders}``. A key is referred to as
``"area.key"``. A test checks that every key has both languages and the same placeholders.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
_LOCALES = Path(__file__).with_name("locales")


@dataclass(frozen=True)
class Text:
    vi: str
    en: str

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.vi


@cache
def catalogue() -> dict[str, Text]:
    texts: dict[str, Text] = {}
    for path in sorted(_LOCALES.glob("*.toml")):
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        for key, entry in data.items():
            texts[f"{path.stem}.{key}"] = Text(vi=entry["vi"], en=entry["en"])
    return texts


class _Values(dict[str, Any]):
    """Placeholder values; one that is missing shows as a dash rather than failing a reply."""

    def __missing__(self, key: str) -> str:
        return "—"


def number(value: int, language: str = DEFAULT_LANGUAGE) -> str:
    """1860 → "1.860" in Vietnamese, "1,860" in English (as the platform writes counts).

    The agent's own tiny formatter: it must not need the platform's libraries (Babel).
    """
    grouped = f"{value:,}"
    return grouped if language == "en" else grouped.replace(",", ".")


def day(value: date) -> str:
    """A date as dd/mm/yyyy, in both languages (as the platform and the certificates show it)."""
    if isinstance(value, datetime):
        value = value.date()
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"


class Count(int):
    """A count of things (signatures, people, doses): written "1.860" / "1,860" in texts.

    Other whole numbers (ports, key sizes, years) stay as they are.
    """


def _shown(value: Any, language: str) -> Any:
    if isinstance(value, Count):
        return number(value, language)
    if isinstance(value, date):
        return day(value)
    return value


def text(key: str, **values: Any) -> Text:
    """Both languages of one text, placeholders filled (a Count and a date as each writes them)."""
    entry = catalogue()[key]
    return Text(
        vi=entry.vi.format_map(_Values({k: _shown(v, "vi") for k, v in values.items()})),
        en=entry.en.format_map(_Values({k: _shown(v, "en") for k, v in values.items()})),
    )


def tr(key: str, language: str = DEFAULT_LANGUAGE, **values: Any) -> str:
    """One text in one language."""
    return text(key, **values).get(language)
