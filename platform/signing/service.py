"""The signing page's services, one import for its views and for batch preparation.

- ``search``: pages of people with the doses an officer may sign (``search.py``);
- selection changes and their limits (``selection.py``);
- ``preview``: the selection re-validated, as a batch would sign it, a page of people at a
  time; ``validated_selection``: the same validation, then every dose id and version, for the
  batch preparation (``preview.py``).

All take a SQLAlchemy ``Session`` and the officer, raise ``DomainError`` when a rule says no,
and leave the commit to the caller.
"""

from __future__ import annotations

from kyso.platform.signing.preview import (
    PAGE_SIZE as PREVIEW_PAGE_SIZE,
)
from kyso.platform.signing.preview import (
    Dropped,
    DropReason,
    Preview,
    PreviewDose,
    PreviewPerson,
    SelectionFacts,
    preview,
    validated_selection,
)
from kyso.platform.signing.search import (
    COUNT_CAP,
    Cursor,
    ResultDose,
    ResultPerson,
    SearchFilters,
    SearchPage,
    SigningState,
    StateFilter,
    parse_filters,
    search,
)
from kyso.platform.signing.selection import (
    MAX_DOSES,
    MAX_PEOPLE,
    LimitExceeded,
    NotVerified,
    SelectionChange,
    SelectionSummary,
    add_doses,
    add_person,
    add_search,
    clear,
    remove_doses,
    remove_person,
    summary,
    update_page,
)

__all__ = [
    "COUNT_CAP",
    "MAX_DOSES",
    "MAX_PEOPLE",
    "PREVIEW_PAGE_SIZE",
    "Cursor",
    "DropReason",
    "Dropped",
    "LimitExceeded",
    "NotVerified",
    "Preview",
    "PreviewDose",
    "PreviewPerson",
    "ResultDose",
    "ResultPerson",
    "SearchFilters",
    "SearchPage",
    "SelectionChange",
    "SelectionFacts",
    "SelectionSummary",
    "SigningState",
    "StateFilter",
    "add_doses",
    "add_person",
    "add_search",
    "clear",
    "parse_filters",
    "preview",
    "remove_doses",
    "remove_person",
    "search",
    "summary",
    "update_page",
    "validated_selection",
]
