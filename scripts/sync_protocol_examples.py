"""Rewrites the example blocks of protocol.md from tests/golden/*.json.

The golden files are the source; tests/test_protocol_doc.py fails when protocol.md drifts.
Run: python scripts/sync_protocol_examples.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- golden: (?P<name>[\w.-]+) -->\n```json\n)(?P<body>.*?)(```)", re.S)


def render(name: str) -> str:
    golden = json.loads((ROOT / "tests" / "golden" / name).read_text(encoding="utf-8"))
    return "".join(
        json.dumps(step["message"], ensure_ascii=False) + "\n" for step in golden["exchange"]
    )


def sync(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + m.group(4), text)


if __name__ == "__main__":
    doc = ROOT / "protocol.md"
    doc.write_text(sync(doc.read_text(encoding="utf-8")), encoding="utf-8")
