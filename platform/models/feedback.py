"""Citizen feedback (``feedback/``) on vaccination records.

A citizen reports a wrong field or dose ("Phản ánh thông tin tiêm chủng") without an account; the
report is routed to the facility that administered the dose (or the person's latest dose) and
answered there, with a status, a due date and replies the citizen reads by tracking code.
Submissions and status lookups are throttled by ``kyso.platform.throttle``.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Index, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kyso.platform.db import Base
from kyso.platform.models.columns import db_enum, utcnow
from kyso.platform.models.org import Facility
from kyso.platform.models.records import Dose, Person
from kyso.platform.models.users import User


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
