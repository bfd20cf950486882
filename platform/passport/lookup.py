"""A citizen finds their passport without an account: three factors, throttled.

The identity number (12-digit CCCD, or a 9-digit CMND), the date of birth and the last four
digits of the phone number recorded at vaccination must all match one person; the answer never
says which factor did not. Failed lookups are counted per address and per identity number (its
SHA-256; the number itself is not logged): 10 failures from an address or 5 for a number within
15 minutes refuse further lookups until the window has passed.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kyso.platform.db import serialize_on
from kyso.platform.i18n import DomainError
from kyso.platform.models import Person
from kyso.platform.passport.models import LookupAttempt, Passport

__all__ = ["WINDOW", "find_passport", "parse_birth_date"]

WINDOW: Final = timedelta(minutes=15)
MAX_PER_ADDRESS: Final = 10
MAX_PER_SUBJECT: Final = 5
_DIGITS: Final = re.compile(r"\D")


def parse_birth_date(text: str) -> date | None:
    text = text.strip()
    for pattern in ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def _subject(identity_number: str) -> str:
    return hashlib.sha256(f"kyso-lookup:{identity_number}".encode()).hexdigest()


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
    now = now or datetime.now(UTC)
    number = _DIGITS.sub("", identity_number)
    last4 = _DIGITS.sub("", phone_last4)
    born = parse_birth_date(birth_date)
    if len(number) not in (9, 12) or len(last4) != 4 or born is None:
        raise DomainError("passport.lookup_bad_input")
    subject = _subject(number)
    since = now - WINDOW
    # The attempt is written before the limits are counted (and counts itself), under a lock per
    # identity number and per address, so that requests sent together cannot all read the count
    # from before any of them: PostgreSQL takes transaction advisory locks, SQLite's first write
    # takes its database write lock; both hold until the caller commits.
    serialize_on(session, f"lookup-subject:{subject}", f"lookup-ip:{ip[:64]}")
    attempt = LookupAttempt(at=now, ip=ip[:64], subject=subject, success=False)
    session.add(attempt)
    session.flush()
    by_address = session.scalar(
        select(func.count())
        .select_from(LookupAttempt)
        .where(
            LookupAttempt.ip == ip[:64], LookupAttempt.at >= since, LookupAttempt.success.is_(False)
        )
    )
    by_subject = session.scalar(
        select(func.count())
        .select_from(LookupAttempt)
        .where(
            LookupAttempt.subject == subject,
            LookupAttempt.at >= since,
            LookupAttempt.success.is_(False),
        )
    )
    if (by_address or 0) > MAX_PER_ADDRESS or (by_subject or 0) > MAX_PER_SUBJECT:
        session.delete(attempt)  # a refused request is not a guess
        session.flush()
        raise DomainError("passport.lookup_throttled", minutes=int(WINDOW.total_seconds() // 60))

    people = session.scalars(
        select(Person).where(Person.identity_number == number, Person.birth_date == born)
    ).all()
    person = next((p for p in people if p.phone and _DIGITS.sub("", p.phone).endswith(last4)), None)
    attempt.success = person is not None
    session.flush()
    if person is None:
        raise DomainError("passport.lookup_not_found")
    passport = session.scalar(
        select(Passport).where(Passport.person_id == person.id, Passport.superseded_at.is_(None))
    )
    if passport is None:
        raise DomainError("passport.lookup_not_issued")
    return passport
