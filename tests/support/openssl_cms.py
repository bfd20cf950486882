"""Checking exported signatures with OpenSSL, as anyone outside the platform would."""

from __future__ import annotations

import hashlib
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def openssl_verify(p7s: Path, content: Path, chain: Path) -> None:
    """``openssl cms -verify`` of a detached signature; raises with OpenSSL's words if it fails."""
    done = subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(p7s),
            "-content",
            str(content),
            "-CAfile",
            str(chain),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"{p7s.name}: {done.stderr.strip()}"


def verify_export(directory: Path) -> int:
    """Verifies every record of an ``export-signed`` folder; returns how many were checked.

    Per record: each ``.p7s`` against its ``.json``. Batch mode: the batch document's ``.p7s``,
    then every record's SHA-256 against the batch document's list.
    """
    chain = directory / "chain.pem"
    records = sorted(p for p in directory.glob("dose-*.json"))
    batch_docs = sorted(directory.glob("batch-*.json"))
    if batch_docs:
        (document,) = batch_docs
        openssl_verify(document.with_suffix(".p7s"), document, chain)
        listed = {r["id"]: r["sha256"] for r in json.loads(document.read_bytes())["records"]}
        for record in records:
            assert listed[record.stem] == hashlib.sha256(record.read_bytes()).hexdigest()
        return len(records)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda r: openssl_verify(r.with_suffix(".p7s"), r, chain), records))
    return len(records)
