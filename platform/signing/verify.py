"""``kyso-platform verify-signed DIR [--at TIME]``: an export checked offline, by pyHanko.

Trust comes from the export's ``chain.pem`` (its self-signed certificates are the anchors, the
rest intermediates) or from ``--anchors``; revocation from the OCSP responses and CRLs in
``evidence/``. Nothing is fetched (``allow_fetching=False``).

Each ``.p7s`` is validated with pyHanko's CMS validation (``async_validate_detached_cms``): the
signature over its ``.json`` intact and valid, and the signer certificate's path trusted and not
revoked (hard-fail: the stored answers must cover it). A time-stamped signature (CAdES-T) is
validated at its time-stamp's time, once the token itself is intact and trusted: that is what
lets it pass after the certificate's expiry. A signature without time-stamp is validated at
``--at`` (default: now), and its line says it is NOT time-stamped (a signature exported before
the platform's worker time-stamped it); ``--require-timestamp`` fails it. A time-stamp later
than ``--at`` fails.

In batch mode each record ``.json`` without its own ``.p7s`` must be listed, with its SHA-256,
in a batch document whose signature passed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext

from kyso.platform.signing import cms
from kyso.platform.signing.timestamps import timestamp_token, token_time

__all__ = ["FileResult", "verify_directory"]


@dataclass(frozen=True)
class FileResult:
    name: str
    ok: bool
    detail: str
    unstamped: bool = False  # a valid signature without time-stamp (CAdES-BES)

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


@dataclass(frozen=True)
class _Material:
    anchors: list[Any]
    others: list[Any]
    ocsps: list[Any]
    crls: list[Any]


def _asn1(certificate: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _material(directory: Path, anchors_file: Path | None) -> _Material:
    chain = x509.load_pem_x509_certificates((directory / "chain.pem").read_bytes())
    if anchors_file is not None:
        anchors = x509.load_pem_x509_certificates(anchors_file.read_bytes())
    else:
        anchors = [c for c in chain if c.issuer == c.subject]
    others = [c for c in chain if c not in anchors]
    evidence = directory / "evidence"
    ocsps = [asn1_ocsp.OCSPResponse.load(p.read_bytes()) for p in sorted(evidence.glob("*.der"))]
    crls = [asn1_crl.CertificateList.load(p.read_bytes()) for p in sorted(evidence.glob("*.crl"))]
    return _Material([_asn1(c) for c in anchors], [_asn1(c) for c in others], ocsps, crls)


def _context(material: _Material, moment: datetime, *, hard: bool) -> ValidationContext:
    return ValidationContext(
        trust_roots=material.anchors,
        other_certs=material.others,
        ocsps=material.ocsps,
        crls=material.crls,
        moment=moment,
        allow_fetching=False,
        # The signer's path needs the stored answers; the TSA's certificate carries no
        # revocation service in every PKI, and the time-stamp is checked at its own time.
        revocation_mode="hard-fail" if hard else "soft-fail",
        # The stored OCSP answer was fetched when the batch's signatures were accepted,
        # seconds around the time-stamp.
        retroactive_revinfo=True,
    )


async def _validate(material: _Material, cms_der: bytes, content: bytes, at: datetime) -> str:
    """Why the signature fails, or "" with what passed after a colon-free summary."""
    try:
        cms.verify_detached(cms_der, content)
    except cms.CmsInvalid as exc:
        raise _Failed(str(exc)) from None
    token = timestamp_token(cms_der)
    moment = token_time(token) if token is not None else at
    if moment > at:
        raise _Failed(f"time-stamped {moment:%Y-%m-%d %H:%M:%S}Z, after --at")
    signed_data = asn1_cms.ContentInfo.load(cms_der)["content"]
    status = await async_validate_detached_cms(
        content,
        signed_data,
        signer_validation_context=_context(material, moment, hard=True),
        ts_validation_context=_context(material, moment, hard=False),
    )
    if not (status.intact and status.valid):
        raise _Failed("the signature does not match the document")
    if not status.trusted:
        raise _Failed(
            f"the signer's certificate is not trusted at {moment:%Y-%m-%d %H:%M:%S}Z "
            f"({status.trust_problem_indic})"
        )
    if token is None:
        return f"valid at {at:%Y-%m-%d %H:%M:%S}Z, {NOT_STAMPED}"
    ts = status.timestamp_validity
    if ts is None or not (ts.intact and ts.valid and ts.trusted):
        raise _Failed("the time-stamp token is not intact or not trusted")
    return f"valid, time-stamped {ts.timestamp.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


NOT_STAMPED = "NOT time-stamped (CAdES-BES: not yet time-stamped by the platform)"


class _Failed(Exception):
    pass


def _check(material: _Material, path: Path, at: datetime, require_timestamp: bool) -> FileResult:
    content_path = path.with_suffix(".json")
    if not content_path.exists():
        return FileResult(path.name, False, f"{content_path.name} is missing")
    try:
        detail = asyncio.run(_validate(material, path.read_bytes(), content_path.read_bytes(), at))
    except _Failed as exc:
        return FileResult(path.name, False, str(exc))
    except Exception as exc:  # a malformed file: reported, the rest still checked
        return FileResult(path.name, False, f"cannot be read: {exc}")
    if detail.endswith(NOT_STAMPED):
        return FileResult(path.name, not require_timestamp, detail, unstamped=True)
    return FileResult(path.name, True, detail)


def verify_directory(
    directory: Path,
    at: datetime | None = None,
    anchors: Path | None = None,
    *,
    require_timestamp: bool = False,
) -> list[FileResult]:
    """One result per signature and per record of the export in ``directory``. A signature
    without time-stamp is valid at ``at`` only, marked ``unstamped``, and fails when
    ``require_timestamp``."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    material = _material(directory, anchors)
    results = [
        _check(material, path, at, require_timestamp) for path in sorted(directory.glob("*.p7s"))
    ]
    passed = {r.name for r in results if r.ok}
    listed: dict[str, str] = {}
    for path in sorted(directory.glob("batch-*.json")):
        if f"{path.stem}.p7s" in passed:
            for record in json.loads(path.read_bytes())["records"]:
                listed[f"{record['id']}.json"] = record["sha256"]
    for path in sorted(directory.glob("*.json")):
        if path.with_suffix(".p7s").exists():
            continue
        wanted = listed.get(path.name)
        if wanted is None:
            results.append(FileResult(path.name, False, "no signature and no signed batch list"))
        elif hashlib.sha256(path.read_bytes()).hexdigest() != wanted:
            results.append(
                FileResult(path.name, False, "changed: not the SHA-256 the batch signed")
            )
        else:
            results.append(FileResult(path.name, True, "listed in the signed batch document"))
    return results
