"""Corrections (``corrections/``): the history of corrected records, and correction requests.

A correction (from the invalid-people list or from a feedback) keeps the previous values of the
record in ``record_versions``: what changed, from what, by whom, when, why, and which feedback
asked for it. Nothing here is ever deleted.

Correction requests carry a change that would supersede another signing unit's signature. A
facility may record a dose for a person whom another signing unit vaccinated and signed. Such
a facility does not correct the person's data itself: its change becomes a request to the unit
whose signature the change would supersede; that unit's staff accept it (the correction service
applies it, so the usual supersede and re-sign machinery runs) or reject it with a reason.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.columns import db_enum, utcnow
from kyso.platform.models.org import Facility, SigningUnit
from kyso.platform.models.records import Person
from kyso.platform.models.users import User


class RecordVersion(Base):
    """The values a person or dose had before a correction, and who changed them and why."""

    __tablename__ = "record_versions"
    __table_args__ = (Index("ix_record_versions_person", "person_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "person" or "dose"
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    dose_id: Mapped[int | None] = mapped_column(ForeignKey("doses.id"))
    version_before: Mapped[int] = mapped_column(Integer)
    version_after: Mapped[int] = mapped_column(Integer)
    fields: Mapped[list[str]] = mapped_column(JSON)
    before: Mapped[dict[str, Any]] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    feedback_id: Mapped[int | None] = mapped_column(ForeignKey("feedback.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Signatures and passports marked superseded by this correction (ids).
    superseded_signatures: Mapped[list[int]] = mapped_column(JSON)
    superseded_passports: Mapped[list[int]] = mapped_column(JSON)

    user: Mapped[User | None] = relationship()


class CorrectionRequestStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"  # applied, or passed on to the next unit that signed
    REJECTED = "rejected"


class CorrectionRequest(Base):
    """A requested change of a person's data, addressed to the signing unit that signed it."""

    __tablename__ = "correction_requests"
    __table_args__ = (
        Index("ix_correction_requests_unit_status", "signing_unit_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    signing_unit_id: Mapped[int] = mapped_column(ForeignKey("signing_units.id"))  # decides
    status: Mapped[CorrectionRequestStatus] = mapped_column(
        db_enum(CorrectionRequestStatus, "correction_request_status"),
        default=CorrectionRequestStatus.PENDING,
    )
    # Only the fields the request changes: {"phone": "0912..."} (dates as ISO text).
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    person_version: Mapped[int] = mapped_column(Integer)  # when it was asked
    # Units whose signatures the change may supersede because they agreed (the requester's own,
    # and units that accepted before this one).
    consented_units: Mapped[list[int]] = mapped_column(JSON)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requested_by_facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    record_version_id: Mapped[int | None] = mapped_column(ForeignKey("record_versions.id"))
    forwarded_to_id: Mapped[int | None] = mapped_column(ForeignKey("correction_requests.id"))

    person: Mapped[Person] = relationship()
    signing_unit: Mapped[SigningUnit] = relationship()
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])
    requested_by_facility: Mapped[Facility | None] = relationship()
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
