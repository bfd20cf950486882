"""Signing (``signing/``): each officer's selection, batches, and the signatures they produced.

A selection lives in the database, not in the cookie session: a batch holds up to 3,000 doses,
and several tabs or workers of the same officer must see one selection. Each row remembers the
dose version the officer saw when ticking, so that a dose edited afterwards drops out at preview.

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
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.columns import db_enum, utcnow
from kyso.platform.models.org import SigningUnit
from kyso.platform.models.records import Dose, Person
from kyso.platform.models.users import SigningCertificate, User


class SigningSelection(Base):
    """One dose ticked by one signing officer (the batch being put together)."""

    __tablename__ = "signing_selections"
    __table_args__ = (
        # Deleting a dose cascades here: without this index PostgreSQL would scan the table.
        Index("ix_signing_selections_dose_id", "dose_id"),
        # Counting the people of a selection (the 1,000-people limit) without touching doses.
        Index("ix_signing_selections_user_person", "user_id", "person_id"),
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    dose_id: Mapped[int] = mapped_column(
        ForeignKey("doses.id", ondelete="CASCADE"), primary_key=True
    )
    # Denormalised from the dose (which never changes person) to count people cheaply.
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    dose_version: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DoseSignature(Base):
    """A facility signature over one version of a dose's certificate document.

    Kept forever: a correction makes the dose's version move on, and the signature of the old
    version is then superseded, never deleted. The CMS is the batch item's (``signature``), or
    the batch's own in batch mode.
    """

    __tablename__ = "dose_signatures"
    __table_args__ = (
        UniqueConstraint("dose_id", "dose_version", name="uq_dose_signatures_dose_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dose_id: Mapped[int] = mapped_column(ForeignKey("doses.id"), index=True)
    dose_version: Mapped[int] = mapped_column(Integer)
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("signing_certificates.id"))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    dose: Mapped[Dose] = relationship()


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


# Indexes of the records tables that serve the signing search (declared here, next to the
# feature that needs them; records.py stays the records engineers' file).

# Phone numbers are searched by prefix ("0903 12…"), often with a name prefix. The existing
# ix_people_phone uses the default operator class, which PostgreSQL cannot use for LIKE 'prefix%'
# unless the database collation is "C" (it serves equality); the pattern_ops classes can,
# whatever the collation. A phone prefix alone uses the leading column. The name is the second
# column as the expression name_key || '' (NAME_AFTER_PHONE), not as name_key: a name prefix on
# that expression is an index condition of this index only, so PostgreSQL cannot walk
# ix_people_name_key over every "huynh thi…" instead (its estimate for a name prefix narrower
# than a histogram bucket is ~26 rows at 300,000 people, whatever the name: 1,575 for "huynh
# thi"). With a phone of 4+ digits (~28,000 people at 10M) the search writes the name this way:
# both prefixes are index conditions, the name is checked on the index entries, not the rows.
# (SQLite ignores the operator classes; 3.40 keeps ix_people_phone for the phone and checks the
# name on the row, as before this index.)
NAME_AFTER_PHONE = Person.name_key + literal_column("''", String())
Index(
    "ix_people_phone_name",
    Person.phone,
    NAME_AFTER_PHONE.label("name_key_after_phone"),
    postgresql_ops={"phone": "varchar_pattern_ops", "name_key_after_phone": "text_pattern_ops"},
    # What the search reads of the people it finds (the name_key under the expression too):
    # an index-only scan, no visit of each row sharing the phone prefix (at 10M people "nguyen
    # thi" + "0855": 2,518 rows read from the table, 34 ms, against 7 ms from the index).
    postgresql_include=["id", "full_name", "name_key"],
)

# A facility's doses in a date range, with everything the search needs from them (person,
# version, signing state and the person's name, kept on the dose by triggers: migration 0016;
# the id is in every SQLite index): on PostgreSQL an index-only scan, no visit of the doses
# or people tables for the thousands of doses a month of a busy facility has. SQLite has no
# INCLUDE and keeps the key columns only. It made ix_doses_facility_date redundant (0016 drops
# it).
Index(
    "ix_doses_signing_search",
    Dose.facility_id,
    Dose.vaccinated_on,
    Dose.person_id,
    Dose.version,
    postgresql_include=["id", "signed_version", "person_name_key", "person_name"],
)

# "Signed in its current version" of a batch's items and a passport's signature: a partial
# index that answers it without reading dose_signatures rows. (The search reads the dose's own
# signed_version instead, migration 0016.)
Index(
    "ix_dose_signatures_current",
    DoseSignature.dose_id,
    DoseSignature.dose_version,
    sqlite_where=text("superseded_at IS NULL"),
    postgresql_where=text("superseded_at IS NULL"),
)
