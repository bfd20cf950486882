"""Authentication (``auth/``): server-side sessions and the audit trail.

Sessions: the browser holds only an opaque random token (its own cookie); the table holds the
token's SHA-256, so a copy of the table does not let anyone take over a session. A session ends
when it is revoked (logout, password change, role or scope change, account disabled), when it
has been idle too long, or when it reaches its absolute lifetime; see
``kyso.platform.auth.sessions``. Several app servers on one database share these rows, so
revocation reaches all of them.

The audit trail records who did what security-relevant thing; every feature writes to it
through ``auth.service.audit``, and the users feature's audit page reads it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from kyso.platform.db import Base
from kyso.platform.models.columns import utcnow


class AuthSession(Base):
    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256, hex
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Updated at most once a minute (not a write on every request): idle time is that precise.
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(Base):
    """Who did what security-relevant thing: logins, registrations, signing, exports, edits."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "certificate.register"
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(64))
