"""Citizen feedback on vaccination records, and the history of corrections.

A citizen reports a wrong field or dose ("Phản ánh thông tin tiêm chủng") without an account; the
report is routed to the facility that administered the dose (or the person's latest dose) and
answered there, with a status, a due date and replies the citizen reads by tracking code.
Submissions and status lookups are throttled by ``kyso.platform.throttle``.

A correction (from the invalid-people list or from a feedback) keeps the previous values of the
record in ``record_versions``: what changed, from what, by whom, when, why, and which feedback
asked for it. Nothing here is ever deleted.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.org import Facility, User, db_enum, utcnow
from kyso.platform.models.records import Dose, Person


class FeedbackStatus(enum.StrEnum):
    NEW = "new"
    PROCESSING = "processing"
    RESOLVED = "resolved"
    REJECTED = "rejected"


class Feedback(Base):
    """One citizen's report that a field or a dose of their record is wrong."""

    __tablename__ = "feedback"
    __table_args__ = (
        # The facility's inbox: its open reports by due date.
        Index("ix_feedback_facility_status_due", "facility_id", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tracking_code: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[FeedbackStatus] = mapped_column(
        db_enum(FeedbackStatus, "feedback_status"), default=FeedbackStatus.NEW
    )
    # None when the report matched no person (or one without doses): it waits, unrouted, in the
    # national administrators' inbox; the citizen's answer is the same either way.
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    dose_id: Mapped[int | None] = mapped_column(ForeignKey("doses.id"))
    # What the citizen typed to identify themselves (as typed, cleaned).
    full_name: Mapped[str] = mapped_column(String(120))
    birth_date: Mapped[date] = mapped_column(Date)
    phone: Mapped[str] = mapped_column(String(15))
    identity_number: Mapped[str | None] = mapped_column(String(12))
    dose_number: Mapped[int | None] = mapped_column(SmallInteger)
    field: Mapped[str] = mapped_column(String(32))  # which field is wrong (feedback.field_*)
    correct_value: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    facility: Mapped[Facility | None] = relationship()
    person: Mapped[Person | None] = relationship()
    dose: Mapped[Dose | None] = relationship()
    replies: Mapped[list[FeedbackReply]] = relationship(
        back_populates="feedback", order_by="FeedbackReply.id"
    )


class FeedbackReply(Base):
    """A facility's answer (the citizen sees it on the status page) or a status change."""

    __tablename__ = "feedback_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[FeedbackStatus] = mapped_column(
        db_enum(FeedbackStatus, "feedback_status")
    )  # the status after this reply
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    feedback: Mapped[Feedback] = relationship(back_populates="replies")
    author: Mapped[User | None] = relationship()


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


# The invalid-people list (stats) pages people of one verification group by id: an index on
# (status, id) gives PostgreSQL an ordered scan per status instead of sorting the whole group.
Index("ix_people_status_id", Person.verification_status, Person.id)
