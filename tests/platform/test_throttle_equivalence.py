"""The throttle's single-read ``attempt()`` decides exactly as the rules of its docstring say
(issue 16: the citizen lookup's CPU), and an allowed attempt costs at most three statements.

A reference model, written here from ``kyso.platform.throttle``'s docstring alone, replays
seeded random histories (subjects, addresses, times, successes) beside the real ``attempt()``
on SQLite and PostgreSQL: the same allow or refuse, reason, retry_after and remaining."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session
from support.platform_db import recorded_statements

from kyso.platform import throttle
from kyso.platform.auth.service import LOGIN
from kyso.platform.models import ThrottleAttempt
from kyso.platform.passport import lookup

MESSAGES: tuple[tuple[throttle.Key, str], ...] = (
    ("pair", "auth.throttled"),
    ("address", "auth.throttled_address"),
    ("subject", "auth.account_delayed"),
)
# Small numbers, so that every rule (limits, two windows per address, the delay and its cap,
# trust, resets by a success) is met within a short history.
TIGHT = throttle.Policy(
    scope="test-tight",
    limits=(
        throttle.Limit("pair", 2, timedelta(seconds=60)),
        throttle.Limit("address", 4, timedelta(seconds=120)),
        throttle.Limit("address", 6, timedelta(seconds=600)),
    ),
    subject_free=1,
    subject_window=timedelta(seconds=300),
    messages=MESSAGES,
    max_delay=timedelta(seconds=8),
    trust_after_success=timedelta(seconds=120),
)
# Counts every attempt (the feedback form's kind), two pair limits.
EVERY = throttle.Policy(
    scope="test-every",
    limits=(
        throttle.Limit("pair", 3, timedelta(seconds=100)),
        throttle.Limit("pair", 4, timedelta(seconds=400)),
        throttle.Limit("address", 5, timedelta(seconds=200)),
    ),
    subject_free=2,
    subject_window=timedelta(seconds=250),
    messages=MESSAGES,
    max_delay=timedelta(seconds=30),
    failures_only=False,
)
POLICIES = {"login": LOGIN, "lookup": lookup.POLICY, "tight": TIGHT, "every": EVERY}

Outcome = tuple[str, str | None, int | None, int | None]  # allowed/refused, reason, wait, left


@dataclass
class _Row:
    id: int
    subject: str
    ip: str
    at: datetime
    success: bool = False


@dataclass
class Reference:
    """The docstring's rules over a list of attempts, in plain Python."""

    policy: throttle.Policy
    rows: list[_Row] = field(default_factory=list)
    next_id: int = 1

    def _key(self, row: _Row, which: str, subject: str, ip: str) -> bool:
        return (which == "address" or row.subject == subject) and (
            which == "subject" or row.ip == ip
        )

    def _counted(
        self, which: str, window: timedelta, subject: str, ip: str, now: datetime
    ) -> list[_Row]:
        mine = [row for row in self.rows if self._key(row, which, subject, ip)]
        start = now - window
        if not self.policy.failures_only:  # every attempt counts
            return [row for row in mine if row.at >= start]
        if which != "address":  # a success resets the subject's and the pair's counts
            successes = [row.at for row in mine if row.success]
            if successes:
                start = max(start, max(successes))
        return [row for row in mine if row.at >= start and not row.success]

    def _delay(self, failures: int) -> timedelta:
        beyond = failures - self.policy.subject_free
        if beyond < 0:
            return timedelta(0)
        if beyond >= 32:
            return self.policy.max_delay
        return min(timedelta(seconds=2**beyond), self.policy.max_delay)

    def attempt(self, subject: str, ip: str, now: datetime) -> tuple[Outcome, _Row | None]:
        # Written first and counted after: the attempt itself is counted.
        row = _Row(self.next_id, subject, ip, now)
        self.next_id += 1
        self.rows.append(row)

        def refused(reason: str, wait: timedelta) -> tuple[Outcome, None]:
            self.rows.remove(row)  # a refused attempt was no guess
            return ("refused", reason, max(1, math.ceil(wait.total_seconds())), None), None

        remaining: int | None = None
        for limit in self.policy.limits:
            counted = self._counted(limit.by, limit.window, subject, ip, now)
            if len(counted) > limit.count:
                earlier = sorted((r.at for r in counted if r is not row), reverse=True)
                if len(earlier) >= limit.count:
                    return refused(limit.by, earlier[limit.count - 1] + limit.window - now)
                return refused(limit.by, limit.window)
            if limit.by == "pair":
                left = limit.count - len(counted)
                remaining = left if remaining is None else min(remaining, left)

        trust = self.policy.trust_after_success
        trusted = trust is not None and any(
            r.success and r.subject == subject and r.ip == ip and r.at >= now - trust
            for r in self.rows
        )
        if not trusted:
            earlier_failures = [
                r
                for r in self._counted("subject", self.policy.subject_window, subject, ip, now)
                if r is not row
            ]
            wait = self._delay(len(earlier_failures))
            if earlier_failures and wait:
                latest = max(r.at for r in earlier_failures)
                if now < latest + wait:
                    return refused("subject", latest + wait - now)
        return ("allowed", None, None, 1_000_000 if remaining is None else remaining), row


def _real(
    session: Session, policy: throttle.Policy, subject: str, ip: str, now: datetime
) -> tuple[Outcome, throttle.Attempt | None]:
    try:
        made = throttle.attempt(session, policy, subject=subject, ip=ip, now=now)
    except throttle.Throttled as refusal:
        session.commit()
        return ("refused", refusal.reason, refusal.retry_after, None), None
    return ("allowed", None, None, made.remaining), made


def _history(seed: int, steps: int) -> list[tuple[str, str, float, bool]]:
    """(subject, address, seconds since the previous attempt, succeeds if allowed)."""
    rnd = random.Random(seed)
    subjects = [f"subject-{seed}-{i}" for i in range(rnd.choice([1, 2, 3, 5, 8, 40, 40]))]
    addresses = [f"198.51.100.{i}" for i in range(rnd.randint(1, 3))]
    successes = rnd.choice([0.0, 0.1, 0.3])
    gaps = [0, 0, 0, 0.5, 1, 1, 1, 2, 2, 3, 5, 9, 17, 31, 60, 61, 119, 121, 301, 601, 901, 3600]
    return [
        (
            rnd.choice(subjects),
            rnd.choice(addresses),
            rnd.choice(gaps),
            rnd.random() < successes,
        )
        for _ in range(steps)
    ]


def replay(session: Session, policy: throttle.Policy, seed: int, steps: int = 70) -> None:
    session.execute(delete(ThrottleAttempt).where(ThrottleAttempt.scope == policy.scope))
    session.commit()
    reference = Reference(policy)
    now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    for step, (subject, ip, gap, succeeds) in enumerate(_history(seed, steps)):
        now += timedelta(seconds=gap)
        expected, expected_row = reference.attempt(subject, ip, now)
        actual, made = _real(session, policy, subject, ip, now)
        assert actual == expected, f"seed {seed}, step {step}: {subject} from {ip} at {now}"
        if made is not None and succeeds:
            made.succeeded()
            assert expected_row is not None
            expected_row.success = True
        session.commit()


def replay_seeds(session: Session, policy: throttle.Policy, seeds: int = 8) -> None:
    for seed in range(seeds):
        replay(session, policy, seed)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_attempt_decides_as_the_docstrings_rules(session: Session, name: str) -> None:
    replay_seeds(session, POLICIES[name])


def test_the_reference_model_catches_a_planted_bug(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison is not vacuous: a throttle whose delay starts one failure late differs."""
    monkeypatch.setattr(
        throttle,
        "delay_for",
        lambda policy, failures: Reference(policy)._delay(failures - 1),
    )
    with pytest.raises(AssertionError):
        replay_seeds(session, TIGHT)


def _statements(session: Session, work: Any) -> list[str]:
    with recorded_statements(session.get_bind()) as seen:
        work()
    return [statement for statement, _, _ in seen]


@pytest.mark.parametrize("name", ["lookup", "login"])
def test_an_allowed_attempt_takes_at_most_three_statements(session: Session, name: str) -> None:
    """Failed on the old code: eight statements for an allowed lookup (two locks, the insert,
    a latest success and a count per key, the subject's count and latest)."""
    policy = POLICIES[name]
    session.execute(delete(ThrottleAttempt).where(ThrottleAttempt.scope == policy.scope))
    now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    # A history: earlier failures of this subject from here and elsewhere, a success.
    for i, ip in enumerate(["203.0.113.1", "203.0.113.2", "203.0.113.1"]):
        made = throttle.attempt(
            session, policy, subject="079190000123", ip=ip, now=now + timedelta(seconds=i)
        )
        if i == 1:
            made.succeeded()
        session.commit()
    later = now + timedelta(seconds=30)
    allowed: list[throttle.Attempt] = []
    statements = _statements(
        session,
        lambda: allowed.append(
            throttle.attempt(session, policy, subject="079190000123", ip="203.0.113.1", now=later)
        ),
    )
    session.commit()
    assert len(allowed) == 1
    assert len(statements) <= 3, statements
