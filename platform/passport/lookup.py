"""A citizen finds their passport without an account: three factors, throttled.

The identity number (12-digit CCCD, or a 9-digit CMND), the date of birth and the last four
digits of the phone number recorded at vaccination must all match one person; the answer never
says which factor did not. Failed lookups are throttled by ``kyso.platform.throttle`` (the
identity number is stored as a SHA-256 only): within 15 minutes, 10 failures from an address or
5 for a number from one address refuse further lookups from there until the window has passed;
for the number from anywhere, after 5 failures each further lookup must wait
min(2^k s, 60 s) after the latest failure, so that a stranger cannot lock a citizen out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform import throttle
from kyso.platform.errors import DomainError
from kyso.platform.inputs import parse_date
from kyso.platform.models import Passport, Person
from kyso.platform.ops.metrics import LOOKUPS, count_on_commit

__all__ = ["WINDOW", "find_passport"]

WINDOW: Final = timedelta(minutes=15)
MAX_PER_ADDRESS: Final = 10
MAX_PER_SUBJECT: Final = 5
_DIGITS: Final = re.compile(r"\D")
POLICY: Final = throttle.Policy(
    scope="passport-lookup",
    limits=(
        throttle.Limit("pair", MAX_PER_SUBJECT, WINDOW),
        throttle.Limit("address", MAX_PER_ADDRESS, WINDOW),
    ),
    subject_free=MAX_PER_SUBJECT,
    subject_window=WINDOW,
    messages=(
        ("pair", "passport.lookup_throttled"),
        ("address", "passport.lookup_throttled"),
        ("subject", "passport.lookup_wait"),
    ),
)


def find_passport(
    session: Session,
    *,
    identity_number: str,
    birth_date: str,
    phone_last4: str,
    ip: str,
    now: datetime | None = None,
) -> Passport:
    """The person's current passport; ``DomainError`` (``passport.lookup_*``) otherwise.

    Records the attempt; the caller commits (also when this raises)."""
    try:
        passport = _find(session, identity_number, birth_date, phone_last4, ip, now)
    except DomainError as exc:
        throttled = isinstance(exc, throttle.Throttled)
        outcome = "throttled" if throttled else exc.key.removeprefix("passport.lookup_")
        count_on_commit(session, LOOKUPS, outcome=outcome)
        raise
    count_on_commit(session, LOOKUPS, outcome="found")
    return passport


def _find(
    session: Session,
    identity_number: str,
    birth_date: str,
    phone_last4: str,
    ip: str,
    now: datetime | None,
) -> Passport:
    now = now or datetime.now(UTC)
    number = _DIGITS.sub("", identity_number)
    last4 = _DIGITS.sub("", phone_last4)
    if len(number) not in (9, 12) or len(last4) != 4:
        raise DomainError("passport.lookup_bad_input")
    born = parse_date(birth_date, "passport.lookup_birth_date")
    if born is None:
        raise DomainError("passport.lookup_bad_input")
    attempt = throttle.attempt(session, POLICY, subject=number, ip=ip, now=now)
    # The people with this number and birth date, each with their current passport if any
    # (at most one: a unique index), in one query: every citizen's lookup runs it.
    found: Sequence[tuple[Person, Passport | None]] = (
        session.execute(
            select(Person, Passport)
            .outerjoin(
                Passport, (Passport.person_id == Person.id) & Passport.superseded_at.is_(None)
            )
            .where(Person.identity_number == number, Person.birth_date == born)
        )
        .tuples()
        .all()
    )
    match = next(
        (row for row in found if row[0].phone and _DIGITS.sub("", row[0].phone).endswith(last4)),
        None,
    )
    if match is None:
        raise DomainError("passport.lookup_not_found")
    passport = match[1]
    attempt.succeeded()  # the three factors matched, issued or not
    if passport is None:
        raise DomainError("passport.lookup_not_issued")
    return passport
