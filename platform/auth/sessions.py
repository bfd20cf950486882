"""Logged-in sessions: started at login, checked on every request, ended at once when they must.

The policy (docs/security.md):

- a login starts a new session with a new random token (256 bits; no session fixation); the
  browser holds the token in its own cookie (HttpOnly, SameSite=Lax, Secure in production), the
  database only its SHA-256;
- a session ends after ``idle`` without a request (30 minutes by default) and ``lifetime`` after
  the login whatever happens (12 hours by default);
- logout ends the session; a password change or reset, a change of role or scope (facility,
  signing unit, province) and disabling the account end every session of that account;
- the last request's time is written at most once per ``touch_every`` (a minute), not on every
  request; the idle limit is that precise.

Everything is in the database, so several app servers on one database share the sessions and a
revocation on one is seen by all at the next request. Services take ``now`` so that the rules
can be checked at any moment.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from kyso.platform.models import AuthSession, User

TOKEN_BYTES = 32
_TOKEN_MAX_LENGTH = 128  # a longer cookie is not one of ours: no hashing, no query

# Why a session was ended (stored in auth_sessions.revoked_reason).
LOGOUT = "logout"
PASSWORD_CHANGED = "password_changed"
PASSWORD_RESET = "password_reset"
ACCOUNT_CHANGED = "account_changed"  # role or scope
ACCOUNT_DISABLED = "account_disabled"

# The fields of a user that decide what they may see or do: a change to any ends their sessions.
ACCESS_FIELDS = frozenset({"role", "facility_id", "signing_unit_id", "province_id", "active"})


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=12)
    touch_every: timedelta = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _aware(value: datetime) -> datetime:
    # SQLite hands times back without their zone; they are stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def start_session(
    session: Session,
    user: User,
    policy: SessionPolicy,
    now: datetime | None = None,
    ip: str | None = None,
) -> str:
    """A new session for ``user``; returns the token for the cookie (caller commits).

    The user's sessions past their lifetime are deleted on the way: they can never be valid again.
    """
    now = now or datetime.now(UTC)
    session.execute(
        delete(AuthSession).where(
            AuthSession.user_id == user.id, AuthSession.created_at < now - policy.lifetime
        )
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        AuthSession(
            token_hash=token_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            ip=ip[:64] if ip else None,
        )
    )
    session.flush()
    return token


def resume_session(
    session: Session, token: str | None, policy: SessionPolicy, now: datetime | None = None
) -> AuthSession | None:
    """The session the token belongs to, if it is still valid: not revoked, not idle longer than
    the policy allows, not older than its lifetime. Writes nothing (see ``touch``)."""
    if not token or len(token) > _TOKEN_MAX_LENGTH:
        return None
    now = now or datetime.now(UTC)
    found = session.scalar(
        select(AuthSession)
        .where(AuthSession.token_hash == token_hash(token))
        .execution_options(populate_existing=True)
    )
    if found is None or found.revoked_at is not None:
        return None
    if now - _aware(found.created_at) >= policy.lifetime:
        return None
    if now - _aware(found.last_seen_at) >= policy.idle:
        return None
    return found


def touch(
    session: Session, found: AuthSession, policy: SessionPolicy, now: datetime | None = None
) -> bool:
    """Records the request's time, at most once per ``policy.touch_every``; True when it wrote
    (the caller commits)."""
    now = now or datetime.now(UTC)
    # A short idle limit (configured for a kiosk) is kept within a tenth of itself.
    if now - _aware(found.last_seen_at) < min(policy.touch_every, policy.idle / 10):
        return False
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == found.id, AuthSession.revoked_at.is_(None))
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(found, "last_seen_at", now)  # written above; not dirty
    return True


def end_session(
    session: Session, found: AuthSession, reason: str, now: datetime | None = None
) -> None:
    """Ends one session (logout; the caller commits)."""
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == found.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now or datetime.now(UTC), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


def end_user_sessions(
    session: Session, user: User, reason: str, now: datetime | None = None
) -> int:
    """Ends every session of ``user`` at once, on every app server (the caller commits);
    returns how many were open."""
    result = session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now or datetime.now(UTC), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def end_sessions_after_change(
    session: Session, user: User, changed: Iterable[str], now: datetime | None = None
) -> int:
    """After an edit of ``user``: a change of role, scope or the disabling of the account ends
    their sessions (they log in again with what they may do now); other edits do not."""
    changed = set(changed)
    if not changed & ACCESS_FIELDS:
        return 0
    reason = ACCOUNT_DISABLED if "active" in changed and not user.active else ACCOUNT_CHANGED
    return end_user_sessions(session, user, reason, now)
