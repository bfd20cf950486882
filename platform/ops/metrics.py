"""The platform's Prometheus metrics, one set per process or summed over gunicorn's workers.

Under ``kyso-platform serve`` every worker writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, set up by the server before
any worker starts), and ``/metrics`` adds them up; elsewhere (tests, ``kyso-platform run``) the
process's own registry is read. Labels never carry personal data: endpoints, outcomes, reasons.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_SECONDS = Histogram(
    "kyso_http_request_duration_seconds",
    "Time to answer a request, per endpoint (the Flask endpoint name) and status class.",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# A batch is counted once when prepared and once when it ends (nothing left pending): as
# "completed" when at least one of its records was signed, as "failed" when every record was
# rejected (nothing signed: a wrong key, a revoked or replaced certificate, every dose edited).
# So prepared = completed + failed + the batches still open.
BATCHES = Counter(
    "kyso_signing_batches_total",
    "Signing batches: prepared; ended with at least one record signed (completed); ended with "
    "every record rejected, nothing signed (failed).",
    ["event"],
)
SIGNATURES_STORED = Counter(
    "kyso_signatures_stored_total", "Officers' signatures verified and stored."
)
PASSPORTS_ISSUED = Counter("kyso_passports_issued_total", "Vaccine passports issued.")
PDF_TIMESTAMPS = Counter(
    "kyso_pdf_timestamps_total",
    "PDF passports by what the time-stamping authority allowed: stamped (PAdES B-LTA), "
    "signed_without (the TSA failed, KYSO_TSA_POLICY soft: PAdES B-B) or refused (hard).",
    ["outcome"],
)
LOOKUPS = Counter(
    "kyso_citizen_lookups_total", "Citizens' passport lookups, by outcome.", ["outcome"]
)
THROTTLED = Counter(
    "kyso_throttled_requests_total", "Requests refused or delayed by a rate limit.", ["limit"]
)
REGISTRY_SECONDS = Histogram(
    "kyso_registry_request_duration_seconds",
    "Time the population registry took to answer a lookup.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REGISTRY_ERRORS = Counter(
    "kyso_registry_errors_total", "Population registry lookups that failed, by kind.", ["kind"]
)
REPLICA_FALLBACKS = Counter(
    "kyso_replica_fallbacks_total",
    "Heavy reads sent to the primary because the database replica did not answer.",
)


_PENDING = "kyso.metrics.pending"


def count_on_commit(session: Session, counter: Counter, amount: float = 1, **labels: str) -> None:
    """Adds ``amount`` to ``counter`` once the session's transaction commits: a rolled-back
    event never happened, so it is never counted (a savepoint rolled back forgets only what was
    counted inside it)."""
    if amount <= 0:
        return
    # The transaction the event belongs to (begun now if the session has none yet, so that
    # a rollback before any statement still forgets it).
    within = session.get_nested_transaction() or session.get_transaction() or session.begin()
    session.info.setdefault(_PENDING, []).append((within, counter, labels, amount))


@event.listens_for(Session, "after_commit")
def _counted(session: Session) -> None:
    for _, counter, labels, amount in session.info.pop(_PENDING, []):
        (counter.labels(**labels) if labels else counter).inc(amount)


@event.listens_for(Session, "after_soft_rollback")
def _forgotten(session: Session, previous: SessionTransaction) -> None:
    pending: list[Any] = session.info.get(_PENDING, [])
    if not pending:
        return
    if previous.parent is None:
        session.info.pop(_PENDING, None)
        return

    def inside(transaction: SessionTransaction | None) -> bool:
        while transaction is not None:
            if transaction is previous:
                return True
            transaction = transaction.parent
        return False

    session.info[_PENDING] = [entry for entry in pending if not inside(entry[0])]


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric: all workers' when in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges stop counting."""
    if os.environ.get(MULTIPROCESS_VARIABLE):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
