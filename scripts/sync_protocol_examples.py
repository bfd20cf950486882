"""Rewrites the generated parts of protocol.md: examples and the error texts.

The examples come from tests/golden/*.json and the texts from agent/locales/errors.toml; both
are the sources, and tests/test_layout.py fails when protocol.md drifts from them.
Run: python scripts/sync_protocol_examples.py
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTS = re.compile(r"(<!-- error-texts -->\n)(?P<body>.*?)(<!-- /error-texts -->)", re.S)
BLOCK = re.compile(r"(<!-- golden: (?P<name>[\w.-]+) -->\n```json\n)(?P<body>.*?)(```)", re.S)


def render(name: str) -> str:
    golden = json.loads((ROOT / "tests" / "golden" / name).read_text(encoding="utf-8"))
    return "".join(
        json.dumps(step["message"], ensure_ascii=False) + "\n" for step in golden["exchange"]
    )


def error_texts() -> str:
    with (ROOT / "agent" / "locales" / "errors.toml").open("rb") as fh:
        texts = tomllib.load(fh)
    rows = ["| code | Tiếng Việt | English |", "|---|---|---|"]
    for key, entry in texts.items():
        vi, en = (entry[lang].replace("|", "\\|") for lang in ("vi", "en"))
        rows.append(f"| `{key.upper()}` | {vi} | {en} |")
    return "\n".join(rows) + "\n"


def sync(text: str) -> str:
    text = BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + m.group(4), text)
    return TEXTS.sub(lambda m: m.group(1) + error_texts() + m.group(3), text)


if __name__ == "__main__":
    doc = ROOT / "protocol.md"
    doc.write_text(sync(doc.read_text(encoding="utf-8")), encoding="utf-8")
