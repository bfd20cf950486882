"""The officer's certificate is about to expire: the agent says so where it shows it.

The platform warns on its signing page as well; the agent warns in its certificate list (the
Start window) and in the consent text, 30 days ahead (as the platform does by default).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from kyso.agent.i18n import tr

__all__ = ["EXPIRY_WARNING_DAYS", "expiry_warning"]

EXPIRY_WARNING_DAYS: Final = 30


def expiry_warning(not_after: datetime, language: str, now: datetime | None = None) -> str | None:
    """The warning for a certificate valid until ``not_after``, or None when it is not due."""
    now = now or datetime.now(UTC)
    if not_after.tzinfo is None:
        not_after = not_after.replace(tzinfo=UTC)
    left = not_after - now
    if timedelta(0) <= left <= timedelta(days=EXPIRY_WARNING_DAYS):
        return tr(
            "dialogs.expiry_warning",
            language,
            not_after=not_after.date(),
            days=left.days,
        )
    return None
