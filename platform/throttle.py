"""One throttling policy for every guessable action: login, the passport lookup, the feedback
form and its status page.

Each attempt is **written first and counted after**, under a lock per subject and per address
(``db.serialize_on``), so that requests sent together cannot all read the count from before any
of them; the count includes the attempt being made. A refused attempt is deleted again (it was
no guess) and raises ``Throttled``, a ``DomainError`` whose text says how long to wait.

Three keys, so that a stranger cannot lock somebody else out:

- **(subject, address)** and **address**: hard limits in a window (``Limit``). Only the people
  behind the attacker's own address are affected.
- **subject** alone (an account, an identity number, a tracking code): never a lock-out, only
  a bounded, progressive delay. After ``subject_free`` recent failures, the next attempt must
  come at least ``min(2^k s, max_delay)`` after the subject's latest failure, ``k`` being the
  failures beyond the free ones: one guess a minute at most, worldwide, once the delay is
  capped, and a refused attempt is not a guess.
- ``trust_after_success`` (login): an address from which the subject succeeded recently (the
  officer's own PC) is exempt from the subject's delay; its own (subject, address) limit holds.

``failures_only`` policies count failed attempts, and a success resets the counts of its
subject and of its (subject, address); the other policies (the feedback form) count every
attempt.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    ScalarSelect,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session

from kyso.platform.db import serialize_on
from kyso.platform.errors import DomainError
from kyso.platform.models import ThrottleAttempt
from kyso.platform.ops.metrics import THROTTLED

__all__ = ["Attempt", "Limit", "Policy", "Throttled", "attempt", "delay_for"]

Key = Literal["pair", "address", "subject"]
MAX_DELAY: Final = timedelta(seconds=60)


@dataclass(frozen=True)
class Limit:
    """At most ``count`` attempts per ``by`` key within ``window``."""

    by: Literal["pair", "address"]
    count: int
    window: timedelta


@dataclass(frozen=True)
class Policy:
    scope: str  # stored with each attempt; one policy's counts never mix with another's
    limits: tuple[Limit, ...]
    subject_free: int  # attempts per subject within subject_window before the delay starts
    subject_window: timedelta
    # The text of a refusal, per key; values: minutes and seconds to wait, count (the limit).
    messages: tuple[tuple[Key, str], ...]
    max_delay: timedelta = MAX_DELAY
    failures_only: bool = True
    trust_after_success: timedelta | None = None

    def message(self, key: Key) -> str:
        return dict(self.messages)[key]


class Throttled(DomainError):
    """Refused by the policy; ``retry_after`` seconds (at least 1) until it may be tried again."""

    def __init__(self, message: str, reason: Key, retry_after: int, **values: Any) -> None:
        super().__init__(
            message,
            seconds=retry_after,
            minutes=max(1, math.ceil(retry_after / 60)),
            **values,
        )
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Attempt:
    """A counted attempt. Call ``succeeded()`` when it worked (for failure-counting policies).

    ``remaining`` is how many more attempts the (subject, address) may make before its limit
    refuses them (for a warning such as "2 tries left")."""

    row: ThrottleAttempt
    remaining: int
    session: Session

    def succeeded(self) -> None:
        self.row.success = True
        self.session.flush()


def delay_for(policy: Policy, failures: int) -> timedelta:
    """How long after the subject's latest failure the next attempt must wait, given the
    subject's recent ``failures`` (not counting that next attempt)."""
    beyond = failures - policy.subject_free
    if beyond < 0:
        return timedelta(0)
    return min(timedelta(seconds=2**beyond) if beyond < 32 else policy.max_delay, policy.max_delay)


def subject_key(scope: str, subject: str) -> str:
    """What is stored for the subject: a hash, never the user name or number itself."""
    return hashlib.sha256(f"kyso-throttle:{scope}:{subject}".encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def _since(window: timedelta) -> str:
    """The name of the parameter holding ``now - window``."""
    return f"since_{window.total_seconds():.6f}".replace(".", "_").replace("-", "m")


@functools.cache
def _read(policy: Policy) -> Select[Any]:
    """The one read of an attempt, built once per policy (its SQL and cache key are reused):
    a count per limit, then the subject's earlier counted attempts (count and latest), then,
    with ``trust_after_success``, whether the pair succeeded recently.

    Parameters: ``key`` (the subject's hash), ``ip``, ``row`` (the attempt's id) and
    ``_since(w)`` = now - w for every window w of the policy."""
    T = ThrottleAttempt
    key, ip = bindparam("key", type_=String), bindparam("ip", type_=String)
    near: dict[Key, ColumnElement[bool]] = {
        "pair": and_(T.subject == key, T.ip == ip),
        "address": T.ip == ip,
        "subject": T.subject == key,
    }

    def since(window: timedelta) -> ColumnElement[datetime]:
        return bindparam(_since(window), type_=T.at.type)

    def last_success(which: Key) -> ScalarSelect[datetime]:
        success = T.__table__.alias(f"ok_{which}")
        where = [success.c.scope == policy.scope, success.c.success.is_(True)]
        if which in ("pair", "subject"):
            where.append(success.c.subject == key)
        if which in ("pair", "address"):
            where.append(success.c.ip == ip)
        return select(func.max(success.c.at)).where(*where).scalar_subquery()

    def counted(which: Key, window: timedelta) -> ColumnElement[bool]:
        """``attempt``'s ``counted``, within this read's rows (in scope, of this subject or
        this address), the latest success read here."""
        if policy.failures_only:
            conditions = [near[which], T.at >= since(window), T.success.is_(False)]
            if which != "address":  # a success resets its subject's and its pair's counts
                conditions.append(T.at >= func.coalesce(last_success(which), since(window)))
            return and_(*conditions)
        return and_(near[which], T.at >= since(window))

    earlier = and_(
        counted("subject", policy.subject_window), T.id != bindparam("row", type_=Integer)
    )
    columns: list[ColumnElement[Any]] = [
        func.count().filter(counted(limit.by, limit.window)) for limit in policy.limits
    ]
    columns += [func.count().filter(earlier), func.max(T.at).filter(earlier)]
    if policy.trust_after_success is not None:
        recent = T.__table__.alias("trusted")
        columns.append(
            exists()
            .where(
                recent.c.scope == policy.scope,
                recent.c.subject == key,
                recent.c.ip == ip,
                recent.c.success.is_(True),
                recent.c.at >= since(policy.trust_after_success),
            )
            .label("trusted")
        )
    return (
        select(*columns)
        .select_from(T)
        .where(
            T.scope == policy.scope,
            or_(T.subject == key, T.ip == ip),
            T.at >= since(max(_windows(policy))),
        )
    )


def _windows(policy: Policy) -> list[timedelta]:
    windows = [limit.window for limit in policy.limits] + [policy.subject_window]
    return windows + ([policy.trust_after_success] if policy.trust_after_success else [])


def attempt(
    session: Session, policy: Policy, *, subject: str, ip: str, now: datetime | None = None
) -> Attempt:
    """Record an attempt about ``subject`` from ``ip``, or raise ``Throttled``.

    The caller commits, also when this raises (the lock is held until then).

    Three statements when the attempt is allowed (two on SQLite): the locks, the insert, and
    one read computing every count and maximum the rules need (``_read``). A refusal, which
    is rare, reads what its wait needs after."""
    now = now or datetime.now(UTC)
    ip = (ip or "?")[:64]
    key = subject_key(policy.scope, subject)
    serialize_on(session, f"throttle:{policy.scope}:s:{key}", f"throttle:{policy.scope}:a:{ip}")
    row = ThrottleAttempt(scope=policy.scope, subject=key, ip=ip, at=now, success=False)
    session.add(row)
    session.flush()  # SQLite: this first write takes the database's write lock

    T = ThrottleAttempt

    def counted(which: Key, window: timedelta) -> ColumnElement[bool]:
        """The attempts a limit counts: on a refusal, the rows ``_read`` counted."""
        in_scope = T.scope == policy.scope
        by: dict[Key, ColumnElement[bool]] = {
            "pair": and_(in_scope, T.subject == key, T.ip == ip),
            "address": and_(in_scope, T.ip == ip),
            "subject": and_(in_scope, T.subject == key),
        }
        start = now - window
        if policy.failures_only:
            if which != "address":
                value = session.scalar(select(func.max(T.at)).where(by[which], T.success.is_(True)))
                start = max(start, _aware(value)) if value is not None else start
            return and_(by[which], T.at >= start, T.success.is_(False))
        return and_(by[which], T.at >= start)

    def refuse(reason: Key, wait: timedelta, **values: Any) -> Throttled:
        session.delete(row)  # a refused attempt is not a guess
        session.flush()
        # Counted at once: the refusal reaches the client whatever the caller does next.
        THROTTLED.labels(limit=f"{policy.scope}:{reason}").inc()
        return Throttled(policy.message(reason), reason, _seconds(wait), **values)

    parameters: dict[str, Any] = {"key": key, "ip": ip, "row": row.id}
    parameters.update({_since(window): now - window for window in _windows(policy)})
    values = session.execute(_read(policy), parameters).one()
    numbers = [int(value or 0) for value in values[: len(policy.limits)]]
    subject_failures, latest = values[len(policy.limits)], values[len(policy.limits) + 1]
    trusted = bool(values[-1]) if policy.trust_after_success is not None else False

    remaining: int | None = None
    for limit, number in zip(policy.limits, numbers, strict=True):
        if number > limit.count:
            # Allowed again once the limit-th latest earlier attempt has left the window.
            oldest = session.scalar(
                select(T.at)
                .where(counted(limit.by, limit.window), T.id != row.id)
                .order_by(T.at.desc())
                .offset(limit.count - 1)
                .limit(1)
            )
            wait = (_aware(oldest) + limit.window - now) if oldest is not None else limit.window
            raise refuse(limit.by, wait, count=limit.count)
        if limit.by == "pair":
            left = limit.count - number
            remaining = left if remaining is None else min(remaining, left)

    if not trusted:
        wait = delay_for(policy, int(subject_failures or 0))
        if latest is not None and wait and now < _aware(latest) + wait:
            raise refuse("subject", _aware(latest) + wait - now, count=policy.subject_free)
    return Attempt(row, remaining if remaining is not None else 1_000_000, session)
