"""Passwords, login with throttling, and the audit trail.

Argon2id (argon2-cffi's defaults: 64 MiB, 3 passes) hashes passwords. Failed logins are
throttled by ``kyso.platform.throttle``: 5 failures per (user name, address) and 30 per address
in 15 minutes; per user name only a delay (after 5 failures, min(2^k s, 60 s) after the latest
one), from which an address where the user logged in within 90 days is exempt, so that a
stranger who knows a user name cannot keep its owner out. An unknown user name costs the same
time as a wrong password, so that names cannot be probed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform import throttle
from kyso.platform.errors import DomainError
from kyso.platform.models import AuditEvent, User

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 30
TRUSTED_ADDRESS = timedelta(days=90)  # a login from an address exempts it from the user's delay
WARN_WHEN_LEFT = 2  # the login page says how many tries are left from then on
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


LOGIN: Final = throttle.Policy(
    scope="login",
    limits=(
        throttle.Limit("pair", MAX_FAILURES_PER_USER, WINDOW),
        throttle.Limit("address", MAX_FAILURES_PER_ADDRESS, WINDOW),
    ),
    subject_free=MAX_FAILURES_PER_USER,
    subject_window=WINDOW,
    messages=(
        ("pair", "auth.throttled"),
        ("address", "auth.throttled_address"),
        ("subject", "auth.account_delayed"),
    ),
    trust_after_success=TRUSTED_ADDRESS,
)


class BadCredentials(DomainError):
    """Wrong user name or password; ``remaining`` tries from this address before the wait."""

    def __init__(self, remaining: int) -> None:
        if remaining <= WARN_WHEN_LEFT:
            super().__init__(
                "auth.bad_credentials_left",
                count=remaining,
                minutes=int(WINDOW.total_seconds() // 60),
            )
        else:
            super().__init__("auth.bad_credentials")
        self.remaining = remaining


def authenticate(
    session: Session, username: str, password: str, ip: str, now: datetime | None = None
) -> User:
    """Returns the user or raises DomainError; records the attempt either way (caller commits)."""
    now = now or datetime.now(UTC)
    # No account name holds a NUL (inputs.storable), and PostgreSQL refuses one in a query.
    username = username.replace("\x00", "").strip().lower()[:64]
    try:
        attempt = throttle.attempt(session, LOGIN, subject=username, ip=ip, now=now)
    except throttle.Throttled as exc:
        audit(session, "auth.login_throttled", None, target=username, ip=ip, reason=exc.reason)
        raise
    user = session.scalar(select(User).where(User.username == username))
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    ok = ok and user is not None and user.active
    if not ok or user is None:
        audit(session, "auth.login_failed", None, target=username, ip=ip)
        raise BadCredentials(attempt.remaining)
    attempt.succeeded()
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    audit(session, "auth.login", user, ip=ip)
    return user
