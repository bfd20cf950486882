"""The translation catalogue: every text a person reads, in Vietnamese (default) and English.

Texts live in ``agent/locales/*.toml``; each file is one area (``errors``, ``console``, ...) and
each key holds a ``vi`` and an ``en`` text with ``{placeholders}``. A key is referred to as
``"area.key"``. A test checks that every key has both languages and the same placeholders.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
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


def text(key: str, **values: Any) -> Text:
    """Both languages of one text, with placeholders filled."""
    entry = catalogue()[key]
    filled = _Values(values)
    return Text(vi=entry.vi.format_map(filled), en=entry.en.format_map(filled))


def tr(key: str, language: str = DEFAULT_LANGUAGE, **values: Any) -> str:
    """One text in one language."""
    return text(key, **values).get(language)
