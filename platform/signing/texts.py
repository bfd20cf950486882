"""The signing pages' texts that take more than one catalogue lookup.

- Verification reasons and fixes. The words for verification statuses belong to the registry
  (``registry/status.py``); this adds who must act. The signing officer does not correct
  records: the facility that administered the dose does, so every problem that needs a
  correction names that facility.
- Counts as officers write them ("1.000", "3.000+"), also inside refusals (``CountError``).
- The texts the signing page's script shows (``sign_page_texts``), handed to it in its JSON
  configuration. They live in ``platform/locales/signpage.toml`` (keys ``signpage.*``); the
  script receives them unformatted, keyed without the prefix (``"agent_not_running"``), and
  fills placeholders such as ``{signed}`` itself. The agent's own errors carry their texts;
  these are the page's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kyso.platform.errors import DomainError
from kyso.platform.i18n import catalogue, translate
from kyso.platform.models import VerificationStatus
from kyso.platform.registry.status import status_hint, status_label, status_text

# Statuses that only a correction of the record by the facility can resolve; the others
# (pending, unavailable) resolve themselves with the next verification run.
NEEDS_CORRECTION = frozenset(
    {
        VerificationStatus.NO_IDENTITY,
        VerificationStatus.OLD_ID_ONLY,
        VerificationStatus.WRONG_FORMAT,
        VerificationStatus.MISMATCH,
    }
)

__all__ = [
    "NEEDS_CORRECTION",
    "CountError",
    "count_text",
    "sign_page_texts",
    "status_fix",
    "status_label",
    "status_reason",
]


def status_reason(status: VerificationStatus, detail: Mapping[str, Any] | None, lang: str) -> str:
    """What the check found, in a sentence; empty for a verified person."""
    if status is VerificationStatus.VERIFIED:
        return ""
    return status_text(status, detail, lang)


def status_fix(status: VerificationStatus, facility: str, lang: str) -> str:
    """Who must do what so that the person can be signed; empty for a verified person."""
    hint = status_hint(status, lang)
    if hint is None:
        return ""
    if status in NEEDS_CORRECTION:
        return translate("signing.fix_by_facility", lang, facility=facility, hint=hint)
    return hint


def count_text(value: int, lang: str, *, at_least: bool = False) -> str:
    """Counts as officers write them: "1.000" in Vietnamese, "1,000" in English; "3.000+"."""
    text = f"{value:,}"
    if lang != "en":
        text = text.replace(",", ".")
    return text + ("+" if at_least else "")


class CountError(DomainError):
    """A refusal whose whole-number values are written as counts of the reader's language."""

    def text(self, language: str = "vi") -> str:
        values = {
            key: count_text(value, language)
            if isinstance(value, int) and not isinstance(value, bool)
            else value
            for key, value in self.values.items()
        }
        return translate(self.key, language, **values)


SIGN_PAGE_PREFIX = "signpage."


def sign_page_texts(lang: str) -> dict[str, str]:
    """Every ``signpage.*`` text in ``lang`` (Vietnamese unless ``"en"``), placeholders kept."""
    column = "en" if lang == "en" else "vi"
    return {
        key.removeprefix(SIGN_PAGE_PREFIX): entry[column]
        for key, entry in catalogue().items()
        if key.startswith(SIGN_PAGE_PREFIX)
    }
