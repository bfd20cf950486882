"""Vaccine passports (``passport/``): the queue of facility-signed certificates, what the
central issuer signed, who signed it, and each issuance run.

Every facility signature the platform stores enters ``passport_queue``, and the issuance
workers take their work from there. A passport is one EU DCC vaccination certificate for a
person's latest facility-signed dose. It is never deleted: a correction or a later dose issues a
new passport that supersedes the old one (``superseded_at``, ``superseded_by``,
``superseded_reason``). The database keeps at most one current passport per person (a partial
unique index), so two workers can never both issue one for the same person.

The central signing key lives on a PKCS#11 token; only its public certificate is stored here
(``passport_signers``: the platform's own signer certificate list, found by ``kid``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.columns import db_enum, utcnow
from kyso.platform.models.records import Person
from kyso.platform.models.signing import DoseSignature


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


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # ended by an error of the run itself (the token, the database)


class PassportSigner(Base):
    """A certificate of the central passport signing key (a Document Signer Certificate)."""

    __tablename__ = "passport_signers"

    kid: Mapped[str] = mapped_column(String(16), primary_key=True)  # base64 of 8 bytes
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    algorithm: Mapped[str] = mapped_column(String(8))  # ES256 or PS256
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IssuanceRun(Base):
    """One worker's run of ``issue-passports`` (or of the issuer page's button)."""

    __tablename__ = "passport_runs"
    __table_args__ = (Index("ix_passport_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str] = mapped_column(String(120))  # host:pid, or the issuer's user name
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    algorithm: Mapped[str] = mapped_column(String(8))
    signer_kid: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[RunStatus] = mapped_column(db_enum(RunStatus, "passport_run_status"))
    claimed: Mapped[int] = mapped_column(Integer, default=0)  # queue entries taken
    issued: Mapped[int] = mapped_column(Integer, default=0)  # passports signed
    covered: Mapped[int] = mapped_column(Integer, default=0)  # entries already covered
    failed: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)  # why a run stopped


class IssuanceError(Base):
    """Why a queued certificate was not issued (the queue entry is then ``failed``)."""

    __tablename__ = "passport_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("passport_runs.id"), index=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("passport_queue.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    code: Mapped[str] = mapped_column(String(64))  # a passport.error_<code> text
    detail: Mapped[str] = mapped_column(Text)  # English, technical
    values: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # for the text
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Passport(Base):
    __tablename__ = "passports"
    __table_args__ = (
        # One current passport per person: the database refuses a second one, whatever races.
        Index(
            "uq_passports_current_person",
            "person_id",
            unique=True,
            sqlite_where=text("superseded_at IS NULL"),
            postgresql_where=text("superseded_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    dose_id: Mapped[int] = mapped_column(ForeignKey("doses.id"), index=True)
    dose_version: Mapped[int] = mapped_column(Integer)
    # The facility signature the passport was issued from (re-verified before issuing).
    signature_id: Mapped[int] = mapped_column(ForeignKey("dose_signatures.id"), index=True)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("passport_queue.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("passport_runs.id"), index=True)
    uvci: Mapped[str] = mapped_column(String(80), unique=True)
    payload: Mapped[str] = mapped_column(Text)  # "HC1:…": exactly what the QR code holds
    dcc: Mapped[dict[str, Any]] = mapped_column(JSON)  # the signed DCC JSON, for pages and PDF
    signer_kid: Mapped[str] = mapped_column(ForeignKey("passport_signers.kid"))
    algorithm: Mapped[str] = mapped_column(String(8))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("passports.id"))
    superseded_reason: Mapped[str | None] = mapped_column(String(200))

    person: Mapped[Person] = relationship()
