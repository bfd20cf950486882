"""The platform's translation catalogue: Vietnamese first, English on request.

Texts live in ``platform/locales/*.toml`` (one file per area; keys ``area.key``), each with a
``vi`` and an ``en`` text. Templates call ``_("signing.title")``; services raise domain errors
(``errors.DomainError``) carrying a key and values, which views translate.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
_LOCALES = Path(__file__).with_name("locales")


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "—"


@cache
def catalogue() -> dict[str, dict[str, str]]:
    texts: dict[str, dict[str, str]] = {}
    for path in sorted(_LOCALES.glob("*.toml")):
        with path.open("rb") as fh:
            for key, entry in tomllib.load(fh).items():
                texts[f"{path.stem}.{key}"] = {"vi": entry["vi"], "en": entry["en"]}
    return texts


def translate(key: str, language: str = DEFAULT_LANGUAGE, **values: Any) -> str:
    entry = catalogue().get(key)
    if entry is None:
        raise KeyError(f"no text {key!r} in platform/locales")
    text = entry["en" if language == "en" else "vi"]
    return text.format_map(_Values(values)) if values else text
