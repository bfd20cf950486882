"""Verifying people against the National Population Database.

Only people verified here can have their certificates signed (security/threats.md), so the job
records exactly one status per person and never marks anyone verified without the registry's
word. It runs from the command line (``kyso-platform verify-population``), possibly as several
processes at once: each batch is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL
and under SQLite's single write lock on SQLite, and committed on its own, so that nobody is
looked up twice and a crash loses at most one batch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import and_, inspect, or_, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import History

from kyso.platform.auth.service import audit
from kyso.platform.db import is_sqlite, is_transient
from kyso.platform.errors import DomainError
from kyso.platform.models import Gender, Person, VerificationStatus
from kyso.platform.records.names import name_key
from kyso.platform.registry.client import (
    PopulationRegistry,
    RegistryCitizen,
    RegistryProtocolError,
    RegistryRefused,
    RegistryUnavailable,
)
from kyso.platform.registry.identity import IdentityCheck, check_identity, normalise
from kyso.platform.stats import summary  # noqa: F401 - its flush listener keeps the statistics' summary

log = logging.getLogger(__name__)

AUDIT_ACTION = "registry.verify_population"
# The fields the registry vouches for: a change to any of them voids the verification.
IDENTITY_FIELDS = ("identity_number", "full_name", "birth_date", "gender")
# Statuses the job picks up. UNAVAILABLE people are retried on every later run.
TO_VERIFY = (VerificationStatus.PENDING, VerificationStatus.UNAVAILABLE)


@dataclass
class VerificationReport:
    """What one run did."""

    started_at: datetime
    counts: Counter[VerificationStatus] = field(default_factory=Counter)
    batches: int = 0
    looked_up: int = 0  # distinct identity numbers sent to the registry
    stopped: str | None = None  # "registry_unavailable" when the run gave up early
    unavailable_reason: str | None = None

    @property
    def processed(self) -> int:
        return sum(self.counts.values())

    def audit_detail(self) -> dict[str, Any]:
        return {
            "counts": {status.value: n for status, n in sorted(self.counts.items())},
            "batches": self.batches,
            "looked_up": self.looked_up,
            "stopped": self.stopped,
            "unavailable_reason": self.unavailable_reason,
        }


def mark_for_reverification(person: Person) -> None:
    """Forget the person's verification: call it whenever an identity field changes.

    The registry vouched for a number, a name, a birth date and a gender; after any of them
    changes, the person must be checked again before their certificates can be signed.
    """
    person.verification_status = VerificationStatus.PENDING
    person.verification_detail = None
    person.verified_at = None
    person.verification_attempts = 0


def reverify_if_identity_changed(person: Person) -> bool:
    """Mark the person for reverification if an identity field changed in this session.

    For edit and correction code that sets attributes and wants the rule applied without
    comparing values itself. Returns whether the person was marked.
    """
    state = inspect(person)
    if state.transient or state.pending:
        return False  # not stored yet: a new person starts PENDING anyway
    if not any(_changed(state.attrs[name].history) for name in IDENTITY_FIELDS):
        return False
    mark_for_reverification(person)
    return True


def _changed(history: History) -> bool:
    # Setting an attribute to the value it already had is no change of identity.
    return bool(history.added) and list(history.added) != list(history.deleted)


def verify_population(
    session: Session,
    registry: PopulationRegistry,
    *,
    batch_size: int = 500,
    now: datetime | None = None,
    limit: int | None = None,
    max_unavailable_batches: int = 3,
    progress: Callable[[VerificationReport], None] | None = None,
    retries: int = 3,
    retry_pause: float = 0.5,
) -> VerificationReport:
    """Verify people who are PENDING or UNAVAILABLE, one committed batch at a time.

    This function commits (once per batch, and the run's audit event at the end); ``session``
    should have nothing pending. After ``max_unavailable_batches`` batches in a row that the
    registry could not answer, the run stops: the rest stay as they are and the next run
    continues. Raises DomainError when the registry refuses the API key or does not speak the
    protocol, after rolling back the batch in hand. A batch that meets a transient database
    error (a lost connection) is rolled back and tried again up to ``retries`` times; then the
    error is raised (the CLI's "try again later").
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    started = now or datetime.now(UTC)
    report = VerificationReport(started_at=started)
    unavailable_in_a_row = 0
    tries = 0
    try:
        while limit is None or report.processed < limit:
            size = batch_size if limit is None else min(batch_size, limit - report.processed)
            counts, looked_up = Counter(report.counts), report.looked_up
            try:
                people = _claim(session, size, started)
                if not people:
                    session.rollback()
                    break
                when = now or datetime.now(UTC)
                failure = _verify_batch(session, registry, people, when, report)
                session.commit()
            except DBAPIError as exc:
                session.rollback()
                if not is_transient(exc) or tries >= retries:
                    raise
                # Nothing of the batch committed: it counts for nothing and is claimed again.
                report.counts, report.looked_up = counts, looked_up
                tries += 1
                log.warning("verify-population: database error, try %d of %d", tries, retries)
                time.sleep(retry_pause * tries)
                continue
            tries = 0
            report.batches += 1
            if progress is not None:
                progress(report)
            if failure is None:
                unavailable_in_a_row = 0
                continue
            unavailable_in_a_row += 1
            report.unavailable_reason = failure.reason
            log.warning("registry unavailable (%s): %s", failure.reason, failure)
            if unavailable_in_a_row >= max_unavailable_batches:
                report.stopped = "registry_unavailable"
                break
    except RegistryRefused as exc:
        session.rollback()
        _audit(session, report, outcome="refused", error=str(exc))
        raise DomainError("registry.api_key_refused", status=exc.status_code) from exc
    except RegistryProtocolError as exc:
        session.rollback()
        _audit(session, report, outcome="protocol_error", error=str(exc))
        raise DomainError("registry.protocol_error", detail=str(exc)) from exc
    except BaseException:
        session.rollback()
        raise
    _audit(session, report, outcome=report.stopped or "done")
    return report


def _audit(session: Session, report: VerificationReport, **extra: Any) -> None:
    audit(session, AUDIT_ACTION, None, **report.audit_detail(), **extra)
    session.commit()


def _claim(session: Session, size: int, started: datetime) -> list[Person]:
    """Lock the next people to verify; rows other workers hold are skipped, not waited for."""
    if is_sqlite(session):
        # SQLite has no row locks: take its database write lock before reading, so that a
        # second worker waits here and then sees this batch already done.
        session.execute(text("UPDATE people SET id = id WHERE 0 = 1"))
    statement = (
        select(Person)
        .where(
            or_(
                Person.verification_status == VerificationStatus.PENDING,
                and_(
                    Person.verification_status == VerificationStatus.UNAVAILABLE,
                    # Not again in this run: retried on the next one.
                    or_(Person.verified_at.is_(None), Person.verified_at < started),
                ),
            )
        )
        .order_by(Person.id)
        .limit(size)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(statement))


def _verify_batch(
    session: Session,
    registry: PopulationRegistry,
    people: Sequence[Person],
    when: datetime,
    report: VerificationReport,
) -> RegistryUnavailable | None:
    checks: dict[int, IdentityCheck] = {
        person.id: check_identity(person.identity_number, person.birth_date, person.gender)
        for person in people
    }
    for person in people:
        check = checks[person.id]
        if check.status is not None:
            _record(person, check.status, check.detail, when, report)

    to_look_up = [person for person in people if checks[person.id].well_formed]
    if not to_look_up:
        return None
    numbers = list(dict.fromkeys(str(normalise(p.identity_number)) for p in to_look_up))
    try:
        answers = registry.lookup(numbers)
    except RegistryUnavailable as exc:
        for person in to_look_up:
            person.verification_attempts = (person.verification_attempts or 0) + 1
            _record(person, VerificationStatus.UNAVAILABLE, {"reason": exc.reason}, when, report)
        return exc
    report.looked_up += len(numbers)
    for person in to_look_up:
        number = str(normalise(person.identity_number))
        if number not in answers:
            raise RegistryProtocolError(f"the registry did not answer for one of {len(numbers)}")
        status, detail = compare_with_registry(person, answers[number])
        _record(person, status, detail, when, report)
    return None


class Identity(Protocol):
    """What is compared with the registry: a Person, or a generated person (the benchmark)."""

    @property
    def full_name(self) -> str: ...
    @property
    def birth_date(self) -> date: ...
    @property
    def gender(self) -> Gender: ...


def compare_with_registry(
    person: Identity, citizen: RegistryCitizen | None
) -> tuple[VerificationStatus, dict[str, Any] | None]:
    """The status a well-formed number gets from the registry's answer, and what differs."""
    if citizen is None:
        return VerificationStatus.MISMATCH, {"fields": ["not_found"], "registry": {}}
    fields = []
    if name_key(citizen.full_name) != name_key(person.full_name):
        fields.append("full_name")
    if citizen.birth_date != person.birth_date:
        fields.append("birth_date")
    if citizen.gender != person.gender:
        fields.append("gender")
    if not fields:
        return VerificationStatus.VERIFIED, None
    registry = citizen.to_json()
    del registry["identity_number"]  # the same as the person's
    return VerificationStatus.MISMATCH, {"fields": fields, "registry": registry}


def _record(
    person: Person,
    status: VerificationStatus,
    detail: dict[str, Any] | None,
    when: datetime,
    report: VerificationReport,
) -> None:
    person.verification_status = status
    person.verification_detail = detail
    person.verified_at = when
    report.counts[status] += 1
