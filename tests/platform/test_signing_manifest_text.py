"""The platform's summary text is always one the agent's consent dialog accepts."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from kyso.agent.safetext import first_refused
from kyso.platform.signing.manifest import displayable


def test_every_code_point_the_agent_refuses_is_replaced_or_dropped() -> None:
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    assert first_refused(displayable(everything)) is None


@settings(max_examples=300)
@given(st.text(min_size=0, max_size=60))
def test_any_text_becomes_text_the_agent_shows(text: str) -> None:
    assert first_refused(displayable(text)) is None


def test_vietnamese_names_are_kept_and_odd_blanks_become_spaces() -> None:
    assert displayable("Trạm Y tế Phường Bến Nghé") == "Trạm Y tế Phường Bến Nghé"
    # Decomposed input (as some keyboards type it) is composed, not stripped.
    assert displayable("Tra\u0323m Y te\u0302\u0301") == "Trạm Y tế"
    assert displayable("Trạm\u00a0Y\u2028tế\u200b\ufeff \u202eQuận 1") == "Trạm Y tế Quận 1"
