"""The platform's domain errors: a business rule said no, in words the person can act on.

Services raise a ``DomainError`` (or a subclass that adds what the rule found) carrying the
catalogue key of its text and the values the text needs; views and the command line translate
it into the reader's language (``i18n.translate``). Services never raise HTTP errors.
"""

from __future__ import annotations

from typing import Any

from kyso.platform.i18n import DEFAULT_LANGUAGE, translate


class DomainError(Exception):
    """A business rule said no. ``key`` names the text that tells the person what to do."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values

    def text(self, language: str = DEFAULT_LANGUAGE) -> str:
        return translate(self.key, language, **self.values)
