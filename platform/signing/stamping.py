"""Time-stamping after storage: the ``timestamp_queue`` and its worker (CAdES-BES → CAdES-T).

The officer's path stores each verified signature at once, with the revocation evidence it was
accepted on, and queues it here in the same transaction (``queue_signed``). The worker
(``stamp_due``, run by ``kyso-platform signing timestamp``: a systemd service in production, a
child of ``make demo``) takes the due entries a chunk at a time, asks the TSA for their tokens
concurrently (``Timestamper.stamp_each``) and, in one transaction per chunk, replaces each CMS
by its time-stamped copy and removes its entry. So:

- the officer never waits for the TSA: 3,000 tokens cost the officer nothing;
- a signature is never lost: it is stored before it is queued, and its entry only leaves with
  the time-stamped CMS;
- a TSA that cannot answer never fails a request: its entries are put off, 30 s after the first
  failure, doubling up to an hour, and tried again for as long as it takes (``last_error``
  says why);
- several workers may run at once (on PostgreSQL ``FOR UPDATE SKIP LOCKED`` hands each its own
  entries); an entry a worker claimed is leased to it for ``LEASE`` and comes back after that if
  the worker died.

Batch mode time-stamps its one batch signature at once (``stamp_batch_now``, one request, the
officer's 2-s bar holds) and queues it only when the TSA does not answer in time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import Table, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from kyso.platform.db import is_postgresql
from kyso.platform.models import (
    ItemState,
    SigningBatch,
    SigningBatchItem,
    TimestampQueueEntry,
)
from kyso.platform.signing.timestamps import (
    Timestamper,
    TimestampFailed,
    add_timestamp,
    signature_value,
)

__all__ = [
    "LEASE",
    "StampRun",
    "backoff",
    "queue_signed",
    "stamp_batch_now",
    "stamp_due",
    "waiting",
    "waiting_positions",
]

log = logging.getLogger(__name__)

CHUNK: Final = 200  # entries claimed and written per transaction
LEASE: Final = timedelta(minutes=5)  # a claimed entry comes back after this if not written
FIRST_RETRY: Final = timedelta(seconds=30)
LONGEST_RETRY: Final = timedelta(hours=1)
INLINE_TIMEOUT: Final = 2.0  # seconds batch mode waits for its one token before queueing it


def backoff(attempts: int) -> timedelta:
    """How long an entry waits after its ``attempts``-th failure: 30 s, 1 min, 2 min, … 1 h."""
    delay: timedelta = FIRST_RETRY * (2 ** min(max(attempts - 1, 0), 20))
    return min(delay, LONGEST_RETRY)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- the officer's path: queueing ---------------------------------------------------------------


def queue_signed(session: Session, batch_id: str, positions: Sequence[int], now: datetime) -> int:
    """Queues the items at ``positions`` of the batch that are now signed (set-based, in the
    caller's transaction); returns how many."""
    if not positions:
        return 0
    items = SigningBatchItem
    result = session.execute(
        insert(TimestampQueueEntry).from_select(
            ["batch_id", "position", "queued_at", "attempts", "next_attempt_at"],
            select(
                items.batch_id,
                items.position,
                literal(now, TimestampQueueEntry.queued_at.type),
                literal(0),
                literal(now, TimestampQueueEntry.next_attempt_at.type),
            ).where(
                items.batch_id == batch_id,
                items.position.in_(list(positions)),
                items.state == ItemState.SIGNED,
                items.cms.is_not(None),
            ),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def stamp_batch_now(
    session: Session, batch: SigningBatch, timestamper: Timestamper, now: datetime
) -> bool:
    """Batch mode: the batch signature time-stamped at once (True), or queued when the TSA does
    not answer within ``INLINE_TIMEOUT`` (False). The batch's CMS is stored either way."""
    assert batch.cms is not None
    started = time.perf_counter()
    try:
        token = timestamper.stamp(
            signature_value(batch.cms), timeout=min(INLINE_TIMEOUT, timestamper.timeout)
        )
    except TimestampFailed as exc:
        log.warning("batch %s: signature stored, time-stamp queued: %s", batch.id, exc)
        session.add(
            TimestampQueueEntry(
                batch_id=batch.id,
                position=None,
                queued_at=now,
                attempts=1,
                next_attempt_at=now + backoff(1),
                last_error=str(exc)[:1000],
            )
        )
        return False
    finally:
        timestamper.requests += 1
        timestamper.seconds += time.perf_counter() - started
    batch.cms = add_timestamp(batch.cms, token)
    return True


def waiting_positions(session: Session, batch_id: str) -> list[int | None]:
    """The signatures of a batch still waiting for their time-stamp (None: the batch one)."""
    return list(
        session.scalars(
            select(TimestampQueueEntry.position)
            .where(TimestampQueueEntry.batch_id == batch_id)
            .order_by(TimestampQueueEntry.position)
        )
    )


def waiting(session: Session) -> tuple[int, datetime | None]:
    """How many signatures wait for a time-stamp, and since when the oldest does."""
    count, oldest = session.execute(
        select(func.count(), func.min(TimestampQueueEntry.queued_at))
    ).one()
    return int(count or 0), _utc(oldest) if oldest is not None else None


# --- the worker ----------------------------------------------------------------------------------


@dataclass
class StampRun:
    stamped: int = 0
    failed: int = 0  # attempts that failed (the entries were put off, not dropped)
    seconds_tsa: float = 0.0  # wall time waiting for the TSA
    errors: list[str] = field(default_factory=list)  # distinct reasons, for the log

    def note(self, error: str) -> None:
        if error not in self.errors and len(self.errors) < 5:
            self.errors.append(error)


@dataclass(frozen=True)
class _Claimed:
    id: int
    batch_id: str
    position: int | None
    attempts: int
    cms: bytes


def stamp_due(
    sessions: sessionmaker[Session] | Callable[[], Session],
    timestamper: Timestamper,
    *,
    chunk: int = CHUNK,
    limit: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> StampRun:
    """Time-stamps every entry due now (at most ``limit``), a chunk at a time; returns counts.

    Stops early when a whole chunk failed (the TSA is away: its entries were put off)."""
    run = StampRun()
    while limit is None or run.stamped + run.failed < limit:
        size = chunk if limit is None else min(chunk, limit - run.stamped - run.failed)
        claimed = _claim(sessions, size, clock())
        if not claimed:
            break
        started = time.perf_counter()
        results = timestamper.stamp_each([signature_value(c.cms) for c in claimed])
        run.seconds_tsa += time.perf_counter() - started
        stamped = _record(sessions, claimed, results, clock())
        run.stamped += stamped
        run.failed += len(claimed) - stamped
        for result in results:
            if isinstance(result, TimestampFailed):
                run.note(str(result))
        if stamped == 0:
            break
    return run


def _claim(
    sessions: sessionmaker[Session] | Callable[[], Session], size: int, now: datetime
) -> list[_Claimed]:
    """Up to ``size`` due entries with their CMS, leased to this worker (committed)."""
    queue = TimestampQueueEntry
    with sessions() as session:
        query = (
            select(
                queue.id,
                queue.batch_id,
                queue.position,
                queue.attempts,
                SigningBatchItem.cms.label("item_cms"),
                SigningBatch.cms.label("batch_cms"),
            )
            .join(SigningBatch, SigningBatch.id == queue.batch_id)
            .outerjoin(
                SigningBatchItem,
                (SigningBatchItem.batch_id == queue.batch_id)
                & (SigningBatchItem.position == queue.position),
            )
            .where(queue.next_attempt_at <= now)
            .order_by(queue.next_attempt_at, queue.id)
            .limit(size)
        )
        if is_postgresql(session):
            query = query.with_for_update(skip_locked=True, of=queue)
        rows = session.execute(query).all()
        claimed: list[_Claimed] = []
        orphans: list[int] = []
        for row in rows:
            blob = row.item_cms if row.position is not None else row.batch_cms
            if blob is None:
                orphans.append(row.id)  # nothing to stamp (cannot happen: queued with its CMS)
                continue
            claimed.append(_Claimed(row.id, row.batch_id, row.position, row.attempts, blob))
        if claimed:
            session.execute(
                update(queue)
                .where(queue.id.in_([c.id for c in claimed]))
                .values(next_attempt_at=now + LEASE)
            )
        if orphans:
            session.execute(delete(queue).where(queue.id.in_(orphans)))
        session.commit()
    return claimed


# Core statements run as executemany (the ORM's bulk update takes rows by primary key only).
_ITEMS = cast(Table, SigningBatchItem.__table__)
_QUEUE = cast(Table, TimestampQueueEntry.__table__)
_SET_ITEM_CMS = (
    _ITEMS.update()
    .where(_ITEMS.c.batch_id == bindparam("k_batch"), _ITEMS.c.position == bindparam("k_position"))
    .values(cms=bindparam("v_cms"))
)
_PUT_OFF = (
    _QUEUE.update()
    .where(_QUEUE.c.id == bindparam("k_id"))
    .values(
        attempts=bindparam("v_attempts"),
        next_attempt_at=bindparam("v_next"),
        last_error=bindparam("v_error"),
    )
)


def _record(
    sessions: sessionmaker[Session] | Callable[[], Session],
    claimed: Sequence[_Claimed],
    results: Sequence[bytes | TimestampFailed],
    now: datetime,
) -> int:
    """The chunk's outcome in one transaction: each time-stamped CMS replaces the stored one as
    its entry leaves; failed entries are put off. Returns how many were stamped."""
    stamped = {c.id: (c, r) for c, r in zip(claimed, results, strict=True) if isinstance(r, bytes)}
    failed = [
        (c, r) for c, r in zip(claimed, results, strict=True) if isinstance(r, TimestampFailed)
    ]
    with sessions() as session:
        removed: set[int] = set()
        if stamped:
            # Only the entries still queued: one another worker took over after the lease and
            # wrote first is not written twice.
            removed = set(
                session.scalars(
                    delete(TimestampQueueEntry)
                    .where(TimestampQueueEntry.id.in_(list(stamped)))
                    .returning(TimestampQueueEntry.id)
                )
            )
        items: list[dict[str, Any]] = []
        for entry_id, (entry, token) in stamped.items():
            if entry_id not in removed:
                continue
            assert isinstance(token, bytes)
            stamped_cms = add_timestamp(entry.cms, token)
            if entry.position is None:
                session.execute(
                    update(SigningBatch)
                    .where(SigningBatch.id == entry.batch_id)
                    .values(cms=stamped_cms)
                )
            else:
                items.append(
                    {"k_batch": entry.batch_id, "k_position": entry.position, "v_cms": stamped_cms}
                )
        if items:
            session.execute(_SET_ITEM_CMS, items)
        if failed:
            session.execute(
                _PUT_OFF,
                [
                    {
                        "k_id": entry.id,
                        "v_attempts": entry.attempts + 1,
                        "v_next": now + backoff(entry.attempts + 1),
                        "v_error": str(error)[:1000],
                    }
                    for entry, error in failed
                ],
            )
        session.commit()
    return len(removed)
