"""Attempts counted by the throttling policy (``kyso.platform.throttle``).

One table for every throttled action (login, the passport lookup, the feedback form and its
status page): who the attempt was about (``subject``: a SHA-256, never the user name, identity
number or tracking code itself), from which address, when, and whether it succeeded.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from kyso.platform.db import Base
from kyso.platform.models.columns import utcnow


class ThrottleAttempt(Base):
    __tablename__ = "throttle_attempts"
    __table_args__ = (
        Index("ix_throttle_attempts_subject", "scope", "subject", "at"),
        Index("ix_throttle_attempts_ip", "scope", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(24))  # "login", "passport-lookup", ...
    subject: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    success: Mapped[bool] = mapped_column(Boolean, default=False)
