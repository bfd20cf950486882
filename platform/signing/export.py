"""``kyso-platform export-signed``: a batch's signed certificates as files anyone can verify.

For each signed record: ``<record>.json`` (the exact bytes signed) and, per record,
``<record>.p7s`` (the detached CAdES signature). In batch mode the proof is the batch document
``batch-<id>.json``, whose list holds every record's SHA-256, and its ``batch-<id>.p7s``.
``chain.pem`` holds the certificates from the signer's issuer up to the trust anchor, so that

    openssl cms -verify -binary -inform DER -in X.p7s -content X.json -CAfile chain.pem \
        -purpose any -out /dev/null

succeeds (``-purpose any``: a document-signing certificate has no S/MIME extended key usage).
``VERIFY.txt`` in the folder says this in Vietnamese and English.

CAdES-T evidence: each time-stamped ``.p7s`` also gets ``<name>.tst`` (its RFC 3161 time-stamp
token, the same bytes as its unsigned attribute) and ``<name>.sig`` (the signature value, which
the token's message imprint is over), so that ``openssl ts -verify -token_in -in X.tst -data
X.sig -CAfile chain.pem`` checks it; ``chain.pem`` then also holds the anchor of the TSA's
certificate. ``evidence/`` holds the OCSP responses (``ocsp-N.der``) and CRLs (``crl-N.crl``)
the batch's signatures were accepted on. Batch mode writes ``SHA256SUMS`` from the batch
document's list, so that ``sha256sum -c SHA256SUMS`` checks every record against it.
``kyso-platform verify-signed DIR`` checks the whole folder offline.

Signatures are time-stamped after storage (``stamping.py``): a signature still waiting in the
queue is exported as it is stored, CAdES-BES, without ``.tst``; ``NOT-TIMESTAMPED.txt`` lists
them, and ``kyso-platform export-signed`` says so (``--wait`` waits for the worker first).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.errors import DomainError
from kyso.platform.models import BatchMode, ItemState, SigningBatch, SigningBatchItem
from kyso.platform.signing.certificates import TrustStore, check_certificate
from kyso.platform.signing.documents import record_id
from kyso.platform.signing.evidence import batch_evidence
from kyso.platform.signing.stamping import waiting_positions
from kyso.platform.signing.timestamps import signature_value, timestamp_token

VERIFY_TEXT = """\
Kiểm tra chữ ký / Verifying the signatures
==========================================

Mỗi tệp .json là đúng dữ liệu đã được ký; tệp .p7s cùng tên là chữ ký số CAdES (CMS) tách rời.
Each .json file holds exactly the bytes that were signed; the .p7s file of the same name is its
detached CAdES (CMS) signature.

  openssl cms -verify -binary -inform DER -in X.p7s -content X.json -CAfile chain.pem \\
      -purpose any -out /dev/null

Lô ký cả lô (batch mode): kiểm tra chữ ký của tệp batch-*.json như trên, rồi so SHA-256 của từng
tệp bản ghi với danh sách trong tệp lô:
In batch mode, verify batch-*.json as above, then compare each record's SHA-256 with the list in
the batch document:

  sha256sum -c SHA256SUMS

Dấu thời gian (RFC 3161) của mỗi chữ ký nằm trong tệp .p7s và trong tệp .tst cùng tên; tệp .sig
là giá trị chữ ký mà dấu thời gian chứng nhận. Thư mục evidence/ chứa các trả lời OCSP và CRL đã
dùng khi nhận chữ ký.
Each signature's RFC 3161 time-stamp is inside its .p7s and in the .tst file of the same name;
the .sig file is the signature value the time-stamp is over. evidence/ holds the OCSP responses
and CRLs the signatures were accepted on.

  openssl ts -verify -token_in -in X.tst -data X.sig -CAfile chain.pem

Kiểm tra cả thư mục, không cần mạng / Check the whole folder offline:

  kyso-platform verify-signed THU_MUC [--at "2030-01-01T00:00:00+07:00"]
"""


@dataclass(frozen=True)
class ExportSummary:
    batch_id: str
    records: int
    mode: BatchMode
    directory: Path
    # The .p7s files whose signature is not time-stamped yet (still in the queue).
    unstamped: tuple[str, ...] = ()


def export_signed(
    session: Session, batch_id: str, directory: Path, trust: TrustStore
) -> ExportSummary:
    batch = session.get(SigningBatch, batch_id)
    if batch is None:
        raise DomainError("batches.not_found", batch=batch_id)
    registration = batch.certificate
    assert registration.der is not None  # bound when the batch was prepared
    checked = check_certificate(
        registration.der,
        registered_serial=registration.serial_hex,
        trust=trust,
        # SQLite hands back naive datetimes; every time stored is UTC.
        at=batch.signing_time.replace(tzinfo=batch.signing_time.tzinfo or UTC),
    )
    directory.mkdir(parents=True, exist_ok=True)
    rows = session.execute(
        select(
            SigningBatchItem.dose_id,
            SigningBatchItem.dose_version,
            SigningBatchItem.document,
            SigningBatchItem.cms,
        )
        .where(
            SigningBatchItem.batch_id == batch.id,
            SigningBatchItem.state == ItemState.SIGNED,
        )
        .order_by(SigningBatchItem.position)
    )
    count = 0
    tokens: list[bytes] = []
    unstamped: list[str] = []
    for row in rows:
        name = record_id(row.dose_id, row.dose_version)
        (directory / f"{name}.json").write_bytes(row.document)
        if row.cms is not None:
            token = _write_signature(directory, name, row.cms)
            tokens += token
            if not token:
                unstamped.append(f"{name}.p7s")
        count += 1
    if batch.mode is BatchMode.BATCH and batch.cms is not None:
        assert batch.document is not None
        (directory / f"batch-{batch.id}.json").write_bytes(batch.document)
        token = _write_signature(directory, f"batch-{batch.id}", batch.cms)
        tokens += token
        if not token:
            unstamped.append(f"batch-{batch.id}.p7s")
        listed = json.loads(batch.document)["records"]
        (directory / "SHA256SUMS").write_text(
            "".join(f"{r['sha256']}  {r['id']}.json\n" for r in listed), encoding="utf-8"
        )
    _write_unstamped(directory, unstamped, bool(waiting_positions(session, batch.id)))
    chain = list(checked.chain)
    if tokens:
        for anchor in _tsa_anchors(tokens[0], trust):
            if anchor not in chain:
                chain.append(anchor)
    (directory / "chain.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    )
    kept = batch_evidence(session, batch.id)
    if kept:
        folder = directory / "evidence"
        folder.mkdir(exist_ok=True)
        numbers = {"ocsp": 0, "crl": 0}
        for item in kept:
            numbers[item.kind] += 1
            suffix = "der" if item.kind == "ocsp" else "crl"
            (folder / f"{item.kind}-{numbers[item.kind]}.{suffix}").write_bytes(item.der)
    (directory / "VERIFY.txt").write_text(VERIFY_TEXT, encoding="utf-8")
    return ExportSummary(batch.id, count, batch.mode, directory, tuple(unstamped))


UNSTAMPED_TEXT = """\
Chữ ký chưa có dấu thời gian / Signatures not time-stamped yet
=============================================================

Các chữ ký dưới đây đã được lưu (CAdES-BES) nhưng chưa có dấu thời gian RFC 3161{queued_vi}.
Chúng vẫn kiểm tra được bằng openssl cms khi chứng thư số còn hiệu lực, nhưng sau khi chứng
thư hết hạn hoặc bị thu hồi thì không chứng minh được thời điểm ký. Hãy xuất lại khi đã có dấu
thời gian (kyso-platform export-signed --wait 600 ...).
The signatures below are stored (CAdES-BES) but have no RFC 3161 time-stamp yet{queued_en}.
openssl cms verifies them while the certificate is valid, but once it expires or is revoked
they cannot prove when they were made. Export again once they are time-stamped
(kyso-platform export-signed --wait 600 ...).

{names}
"""


def _write_unstamped(directory: Path, names: Sequence[str], queued: bool) -> None:
    path = directory / "NOT-TIMESTAMPED.txt"
    if not names:
        path.unlink(missing_ok=True)  # an earlier export into the same folder
        return
    path.write_text(
        UNSTAMPED_TEXT.format(
            queued_vi=" (đang chờ trong hàng đợi: kyso-platform signing timestamp)"
            if queued
            else "",
            queued_en=" (waiting in the queue: kyso-platform signing timestamp)" if queued else "",
            names="\n".join(names),
        ),
        encoding="utf-8",
    )


def _write_signature(directory: Path, name: str, cms_der: bytes) -> list[bytes]:
    """``name.p7s``, and for a time-stamped one ``name.tst`` and ``name.sig``; its token."""
    (directory / f"{name}.p7s").write_bytes(cms_der)
    token = timestamp_token(cms_der)
    if token is None:
        return []
    (directory / f"{name}.tst").write_bytes(token)
    (directory / f"{name}.sig").write_bytes(signature_value(cms_der))
    return [token]


def _tsa_anchors(token_der: bytes, trust: TrustStore) -> list[x509.Certificate]:
    """The configured trust anchors that issued a certificate embedded in the TSA's token: the
    anchor ``openssl ts -verify -CAfile`` needs (the token's own copy is not trusted)."""
    signed_data = asn1_cms.ContentInfo.load(token_der)["content"]
    embedded = [
        x509.load_der_x509_certificate(choice.chosen.dump())
        for choice in signed_data["certificates"] or []
        if choice.name == "certificate"
    ]
    found: list[x509.Certificate] = []
    for anchor in trust.anchors:
        for certificate in embedded:
            if certificate == anchor or _issued_by(certificate, anchor):
                found.append(anchor)
                break
    return found


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
