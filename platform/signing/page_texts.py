"""The texts the signing page's script shows, for its JSON configuration.

They live in ``platform/locales/signpage.toml`` (keys ``signpage.*``). The script receives them
unformatted, keyed without the prefix (``"agent_not_running"``), and fills placeholders such as
``{signed}`` itself. The agent's own errors carry their texts; these are the page's.
"""

from __future__ import annotations

from kyso.platform.i18n import catalogue

PREFIX = "signpage."


def sign_page_texts(lang: str) -> dict[str, str]:
    """Every ``signpage.*`` text in ``lang`` (Vietnamese unless ``"en"``), placeholders kept."""
    column = "en" if lang == "en" else "vi"
    return {
        key.removeprefix(PREFIX): entry[column]
        for key, entry in catalogue().items()
        if key.startswith(PREFIX)
    }
