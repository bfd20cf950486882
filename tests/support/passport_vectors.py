"""The EU DCC conformance vectors (vendored in ``tests/data/dcc-testdata``) through the verifier.

Each vector's EXPECTEDRESULTS flags are compared with what ``kyso.platform.passport.verifier``
finds, starting from the vector's ``PREFIX`` (the ``HC1:`` text) and, for the picture flag, its
``2DCODE`` PNG. A flag whose input the vector lacks (a picture flag without a picture) is
counted as not applicable. Each flag maps to one verifier step:

================================  ============================================================
EXPECTEDPICTUREDECODE             ``decode_qr_image(2DCODE) == PREFIX``
EXPECTEDUNPREFIX                  ``prefix``
EXPECTEDB45DECODE                 ``base45``
EXPECTEDCOMPRESSION               ``zlib``
EXPECTEDVERIFY                    ``signature`` with TESTCTX.CERTIFICATE as the signer list
EXPECTEDDECODE                    ``cwt``, and the decoded DCC equals JSON (when given)
EXPECTEDVALIDJSON / VALIDOBJECT   the decoded DCC is a JSON object
EXPECTEDENCODE                    the CBOR (or decoded) DCC equals JSON
EXPECTEDSCHEMAVALIDATION          ``schema`` (the schema of the DCC's own ``ver``)
EXPECTEDEXPIRATIONCHECK           ``expiry`` at TESTCTX.VALIDATIONCLOCK
EXPTECTEDEXPIRED                  (the BG vectors' misspelling of the flag above)
EXPECTEDKEYUSAGE                  ``key_usage``
================================  ============================================================

Values are compared by decoding (never byte by byte); date-times compare as instants, so
``2021-06-30T12:34:56Z`` equals ``2021-06-30T12:34:56+00:00``.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509

from kyso.platform.passport import verifier

REPOSITORY = Path(__file__).resolve().parents[2]
# eu-digital-green-certificates/dgc-testdata, in the origin's layout (see its README.md).
DCC_TESTDATA = REPOSITORY / "tests" / "data" / "dcc-testdata"


def _instant(text: str) -> datetime | None:
    if len(text) < 19 or text[4] != "-" or "T" not in text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def same(a: Any, b: Any) -> bool:
    """Equal JSON data, date-times compared as instants."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str) and a != b:
        left, right = _instant(a), _instant(b)
        return left is not None and right is not None and left == right
    return bool(a == b) and type(a) is type(b)


@dataclass
class Report:
    agree: Counter[str] = field(default_factory=Counter)
    disagree: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # The vectors behind each flag's disagreements, in the order of ``disagree``.
    disagreeing: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))
    not_applicable: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        flags = sorted(set(self.agree) | set(self.disagree) | set(self.not_applicable))
        out = [f"{'flag':38} agree  disagree  n/a"]
        for flag in flags:
            out.append(
                f"{flag:38} {self.agree[flag]:5}  {len(self.disagree.get(flag, ())):8}"
                f"  {self.not_applicable[flag]:3}"
            )
        return out


def _clock(context: dict[str, Any]) -> datetime | None:
    value = context.get("VALIDATIONCLOCK")
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def run_vector(path: Path, report: Report) -> None:
    vector = json.loads(path.read_text(encoding="utf-8"))
    context = vector["TESTCTX"]
    try:
        signers = verifier.SignerList(
            [x509.load_der_x509_certificate(base64.b64decode(context["CERTIFICATE"]))]
        )
    except ValueError:
        signers = verifier.SignerList()
    result = verifier.verify(vector["PREFIX"], signers, _clock(context))
    name = path.relative_to(path.parents[3]).as_posix()

    for flag, expected in vector["EXPECTEDRESULTS"].items():
        got: bool | None
        if flag == "EXPECTEDPICTUREDECODE":
            picture = vector.get("2DCODE") or vector.get("_2DCODE")
            if not picture:
                got = None
            else:
                try:
                    text = verifier.decode_qr_image(base64.b64decode(picture))
                    got = text == vector["PREFIX"].strip()
                except ValueError:
                    got = False
        elif flag == "EXPECTEDUNPREFIX":
            got = result.passed("prefix")
        elif flag == "EXPECTEDB45DECODE":
            got = result.passed("base45")
        elif flag == "EXPECTEDCOMPRESSION":
            got = result.passed("zlib")
        elif flag == "EXPECTEDVERIFY":
            got = result.passed("signature")
        elif flag == "EXPECTEDDECODE":
            got = result.passed("cwt") and (
                "JSON" not in vector or same(result.dcc, vector["JSON"])
            )
        elif flag in ("EXPECTEDVALIDJSON", "EXPECTEDVALIDOBJECT"):
            got = isinstance(result.dcc, dict)
        elif flag == "EXPECTEDENCODE":
            if "CBOR" in vector:
                try:
                    decoded = cbor2.loads(bytes.fromhex(vector["CBOR"]))
                    dcc = decoded[-260][1] if -260 in decoded else decoded
                    got = same(verifier._jsonable(dcc), vector.get("JSON"))
                except (ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
                    got = False
            else:
                got = result.dcc is not None and same(result.dcc, vector.get("JSON"))
        elif flag == "EXPECTEDSCHEMAVALIDATION":
            got = result.passed("schema")
        elif flag in ("EXPECTEDEXPIRATIONCHECK", "EXPTECTEDEXPIRED"):
            got = result.passed("expiry")
        elif flag == "EXPECTEDKEYUSAGE":
            got = result.passed("key_usage")
        else:
            got = None
        if got is None:
            report.not_applicable[flag] += 1
        elif got == expected:
            report.agree[flag] += 1
        else:
            failed = result.failed
            report.disagreeing[flag].append(path)
            report.disagree[flag].append(
                f"{name}: expected {expected}, verifier "
                f"{'failed ' + failed.name + ': ' + failed.detail[:80] if failed else 'passed'}"
            )


def run_all(testdata: Path) -> Report:
    report = Report()
    for path in sorted(testdata.glob("**/*.json")):
        run_vector(path, report)
    return report
