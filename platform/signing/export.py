"""``kyso-platform export-signed``: a batch's signed certificates as files anyone can verify.

For each signed record: ``<record>.json`` (the exact bytes signed) and, per record,
``<record>.p7s`` (the detached CAdES signature). In batch mode the proof is the batch document
``batch-<id>.json``, whose list holds every record's SHA-256, and its ``batch-<id>.p7s``.
``chain.pem`` holds the certificates from the signer's issuer up to the trust anchor, so that

    openssl cms -verify -binary -inform DER -in X.p7s -content X.json -CAfile chain.pem \
        -purpose any -out /dev/null

succeeds (``-purpose any``: a document-signing certificate has no S/MIME extended key usage).
``VERIFY.txt`` in the folder says this in Vietnamese and English.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.i18n import DomainError
from kyso.platform.models import BatchMode, ItemState, SigningBatch, SigningBatchItem
from kyso.platform.signing.certificates import TrustStore, check_certificate
from kyso.platform.signing.documents import record_id

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

  sha256sum X.json
"""


@dataclass(frozen=True)
class ExportSummary:
    batch_id: str
    records: int
    mode: BatchMode
    directory: Path


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
    for row in rows:
        name = record_id(row.dose_id, row.dose_version)
        (directory / f"{name}.json").write_bytes(row.document)
        if row.cms is not None:
            (directory / f"{name}.p7s").write_bytes(row.cms)
        count += 1
    if batch.mode is BatchMode.BATCH and batch.cms is not None:
        assert batch.document is not None
        (directory / f"batch-{batch.id}.json").write_bytes(batch.document)
        (directory / f"batch-{batch.id}.p7s").write_bytes(batch.cms)
    (directory / "chain.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in checked.chain)
    )
    (directory / "VERIFY.txt").write_text(VERIFY_TEXT, encoding="utf-8")
    return ExportSummary(batch.id, count, batch.mode, directory)
