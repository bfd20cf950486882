"""Passwords, login with throttling, and the audit trail.

Argon2id (argon2-cffi's defaults: 64 MiB, 3 passes) hashes passwords. Failed logins are
throttled per user name and per address; an unknown user name costs the same time as a wrong
password, so that names cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kyso.platform.i18n import DomainError
from kyso.platform.models import AuditEvent, LoginAttempt, User

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 30
MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DomainError("auth.password_too_short", length=MIN_PASSWORD_LENGTH)
    return _hasher.hash(password)


def audit(
    session: Session,
    action: str,
    user: User | None,
    target: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEvent(
            user_id=user.id if user else None,
            action=action,
            target=target,
            detail=detail or None,
            ip=ip,
        )
    )


@dataclass(frozen=True)
class Throttle:
    user_failures: int
    address_failures: int

    @property
    def blocked(self) -> bool:
        return (
            self.user_failures >= MAX_FAILURES_PER_USER
            or self.address_failures >= MAX_FAILURES_PER_ADDRESS
        )


def _failures(session: Session, username: str, ip: str, now: datetime) -> Throttle:
    since = now - WINDOW

    def count(*where: Any) -> int:
        stmt = (
            select(func.count())
            .select_from(LoginAttempt)
            .where(LoginAttempt.at >= since, LoginAttempt.success.is_(False), *where)
        )
        return int(session.scalar(stmt) or 0)

    # Failures since the user's last success count; a success resets the user's counter.
    last_ok = session.scalar(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.username == username, LoginAttempt.success.is_(True)
        )
    )
    user_since = max(since, _aware(last_ok)) if last_ok else since
    user_failures = int(
        session.scalar(
            select(func.count())
            .select_from(LoginAttempt)
            .where(
                LoginAttempt.username == username,
                LoginAttempt.success.is_(False),
                LoginAttempt.at >= user_since,
            )
        )
        or 0
    )
    return Throttle(user_failures, count(LoginAttempt.ip == ip))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def authenticate(
    session: Session, username: str, password: str, ip: str, now: datetime | None = None
) -> User:
    """Returns the user or raises DomainError; records the attempt either way (caller commits)."""
    now = now or datetime.now(UTC)
    username = username.strip().lower()[:64]
    if _failures(session, username, ip, now).blocked:
        audit(session, "auth.login_throttled", None, target=username, ip=ip)
        raise DomainError("auth.throttled", minutes=int(WINDOW.total_seconds() // 60))
    user = session.scalar(select(User).where(User.username == username))
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    ok = ok and user is not None and user.active
    session.add(LoginAttempt(at=now, username=username, ip=ip, success=ok))
    if not ok or user is None:
        audit(session, "auth.login_failed", None, target=username, ip=ip)
        raise DomainError("auth.bad_credentials")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    audit(session, "auth.login", user, ip=ip)
    return user
