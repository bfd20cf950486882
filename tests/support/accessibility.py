"""axe-core in Chromium: the serious and critical accessibility violations of a page.

axe-core is vendored (``support/axe/axe.min.js``, MPL-2.0, see its README) and injected into the
page under test, so the tests never download anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).parent / "axe" / "axe.min.js"
BLOCKING = ("serious", "critical")


def violations(page: Any) -> list[str]:
    """Run axe on ``page`` (a Playwright page) and describe each serious or critical violation."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    found = []
    for violation in result["violations"]:
        if violation["impact"] not in BLOCKING:
            continue
        for node in violation["nodes"][:3]:
            why = " ".join(str(node.get("failureSummary", "")).split())
            found.append(
                f"{page.url}: {violation['id']} ({violation['impact']}) {node['target']}: {why}"
            )
    return found
