"""Signing batches: what the platform prepared for the token, and what came back.

A batch is prepared from an officer's preview: one item per dose, holding the exact bytes the
platform will stand behind (the certificate document and, per record, the CAdES signed
attributes whose SHA-256 the token signs). The agent is given *attempts*: each is one manifest
(one batch id in the agent's sense, ``{batch}.{n}``) over the items still pending, because the
agent spends a manifest's id at its first signature and an interrupted batch is finished with a
new one. Signatures that arrive are verified against the item's bytes and the registered
certificate; an item ends ``signed`` (with a ``dose_signatures`` row and its CMS) or
``rejected`` with a reason. Nothing here is ever deleted.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.org import SigningCertificate, SigningUnit, User, db_enum, utcnow
from kyso.platform.models.records import DoseSignature


class BatchMode(enum.StrEnum):
    PER_RECORD = "per_record"  # one token signature (one CMS) per dose
    BATCH = "batch"  # one token signature over the batch document listing every record


class BatchStatus(enum.StrEnum):
    OPEN = "open"  # records are still pending: the batch can be resumed
    COMPLETED = "completed"  # every record is signed or rejected


class ItemState(enum.StrEnum):
    PENDING = "pending"
    SIGNED = "signed"
    REJECTED = "rejected"


class RejectReason(enum.StrEnum):
    SIGNATURE_INVALID = "signature_invalid"  # not the certificate key's signature over our bytes
    CERTIFICATE_EXPIRED = "certificate_expired"  # outside its validity when the signature came
    CERTIFICATE_NOT_REGISTERED = "certificate_not_registered"  # no longer the officer's
    CHANGED = "changed"  # the dose or person was edited after the batch was prepared
    ALREADY_SIGNED = "already_signed"  # another batch signed this version first
    CERTIFICATE_REVOKED = "certificate_revoked"  # revoked by the CA, or compromised, by then


class SigningBatch(Base):
    __tablename__ = "signing_batches"
    __table_args__ = (Index("ix_signing_batches_officer_created", "officer_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "KB261127A1B2C3D4E5"
    signing_unit_id: Mapped[int] = mapped_column(ForeignKey("signing_units.id"), index=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("signing_certificates.id"))
    certificate_fingerprint: Mapped[str] = mapped_column(String(64))
    mode: Mapped[BatchMode] = mapped_column(db_enum(BatchMode, "batch_mode"))
    algorithm: Mapped[str] = mapped_column(String(32))  # the protocol's algorithm name
    origin: Mapped[str] = mapped_column(String(255))  # the page origin the manifests name
    signing_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[BatchStatus] = mapped_column(
        db_enum(BatchStatus, "batch_status"), default=BatchStatus.OPEN
    )
    total: Mapped[int] = mapped_column(Integer)
    people: Mapped[int] = mapped_column(Integer)
    signed: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Batch mode: the canonical batch document, the signed attributes over it, and the CMS.
    document: Mapped[bytes | None] = mapped_column(LargeBinary)
    signed_attributes: Mapped[bytes | None] = mapped_column(LargeBinary)
    cms: Mapped[bytes | None] = mapped_column(LargeBinary)

    signing_unit: Mapped[SigningUnit] = relationship()
    officer: Mapped[User] = relationship()
    certificate: Mapped[SigningCertificate] = relationship()

    @property
    def pending(self) -> int:
        return self.total - self.signed - self.rejected


class SigningBatchItem(Base):
    __tablename__ = "signing_batch_items"
    __table_args__ = (Index("ix_signing_batch_items_dose", "dose_id", "dose_version"),)

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("signing_batches.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    dose_id: Mapped[int] = mapped_column(ForeignKey("doses.id"))
    dose_version: Mapped[int] = mapped_column(Integer)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    document: Mapped[bytes] = mapped_column(LargeBinary)  # canonical JSON (RFC 8785)
    # Per record: the DER of the CAdES signed attributes (what the token signs the hash of).
    signed_attributes: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Per record: SHA-256 of signed_attributes; batch mode: SHA-256 of the document.
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    state: Mapped[ItemState] = mapped_column(db_enum(ItemState, "batch_item_state"))
    reason: Mapped[RejectReason | None] = mapped_column(db_enum(RejectReason, "reject_reason"))
    cms: Mapped[bytes | None] = mapped_column(LargeBinary)  # per record: the detached CMS
    signature_id: Mapped[int | None] = mapped_column(ForeignKey("dose_signatures.id"), unique=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    signature: Mapped[DoseSignature | None] = relationship()


class SigningAttempt(Base):
    """One manifest handed to the agent: the items it covers, in the order of its digests."""

    __tablename__ = "signing_attempts"
    __table_args__ = (Index("ix_signing_attempts_batch", "batch_id", "number", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the manifest's jti
    batch_id: Mapped[str] = mapped_column(ForeignKey("signing_batches.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    # Item positions in digest order; empty in batch mode (the one digest is the batch's).
    positions: Mapped[list[int]] = mapped_column(JSON)
    code: Mapped[str] = mapped_column(String(16))  # verification code shown by page and agent
    manifest: Mapped[str] = mapped_column(Text)  # the JWS, kept for the audit trail
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PassportState(enum.StrEnum):
    PENDING = "pending"
    ISSUED = "issued"
    FAILED = "failed"


class PassportQueueEntry(Base):
    """A facility-signed certificate waiting for the central vaccine passport system."""

    __tablename__ = "passport_queue"
    __table_args__ = (Index("ix_passport_queue_state_queued", "state", "queued_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    signature_id: Mapped[int] = mapped_column(ForeignKey("dose_signatures.id"), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    state: Mapped[PassportState] = mapped_column(
        db_enum(PassportState, "passport_state"), default=PassportState.PENDING
    )
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    signature: Mapped[DoseSignature] = relationship()


class SigningEvidence(Base):
    """Validation data a batch's signatures were accepted on (CAdES-T needs it to be checked
    later, offline): each OCSP response (``kind`` "ocsp") or CRL ("crl") used, once per batch
    (the same answer serves every chunk; a new answer is added when the cache renewed it)."""

    __tablename__ = "signing_evidence"
    __table_args__ = (Index("ix_signing_evidence_batch_digest", "batch_id", "sha256", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("signing_batches.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64))  # of der: stored once per batch
    der: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TimestampQueueEntry(Base):
    """A stored signature waiting for its RFC 3161 time-stamp (CAdES-BES until then).

    Signatures are stored as they arrive and time-stamped after storage by ``kyso-platform
    signing timestamp`` (``signing/stamping.py``), so that the officer never waits for the TSA.
    The entry goes in the same transaction as the signature and leaves in the same transaction
    as the time-stamped CMS replaces it: a signature is never lost, nor left un-queued. A TSA
    that cannot answer puts the entry off (``next_attempt_at``, growing with ``attempts``)."""

    __tablename__ = "timestamp_queue"
    __table_args__ = (
        Index("ix_timestamp_queue_due", "next_attempt_at", "id"),
        Index("ix_timestamp_queue_batch", "batch_id", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("signing_batches.id", ondelete="CASCADE"))
    # The item's position (per record); None: the batch signature (batch mode).
    position: Mapped[int | None] = mapped_column(Integer)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
