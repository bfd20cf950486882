"""Completing a batch once nothing is pending, and its counters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from kyso.platform.auth.service import audit
from kyso.platform.models import (
    BatchStatus,
    ItemState,
    SigningBatch,
    SigningBatchItem,
    User,
)
from kyso.platform.ops.metrics import BATCHES, count_on_commit
from kyso.platform.signing.batches.officers import (
    _own_batch,
)
from kyso.platform.signing.batches.values import (
    Progress,
    Rejection,
)


def complete(
    session: Session, officer: User, batch_id: str, now: datetime | None = None
) -> Progress:
    """The batch's state; a batch with nothing pending becomes completed (idempotent)."""
    now = now or datetime.now(UTC)
    batch = _own_batch(session, officer, batch_id, lock=True)
    _recount(session, batch)
    _finish_if_done(session, batch, officer, now)
    return _progress(batch, ())


def _finish_if_done(session: Session, batch: SigningBatch, officer: User, now: datetime) -> None:
    if batch.status is BatchStatus.OPEN and batch.pending == 0:
        batch.status = BatchStatus.COMPLETED
        batch.completed_at = now
        audit(
            session,
            "signing.batch_completed",
            officer,
            target=batch.id,
            signed=batch.signed,
            rejected=batch.rejected,
        )
        # ops.metrics.BATCHES: a batch that ends with nothing signed failed.
        count_on_commit(session, BATCHES, event="completed" if batch.signed else "failed")


def _recount(session: Session, batch: SigningBatch) -> None:
    counts = dict(
        session.execute(
            select(SigningBatchItem.state, func.count())
            .where(SigningBatchItem.batch_id == batch.id)
            .group_by(SigningBatchItem.state)
        )
        .tuples()
        .all()
    )
    batch.signed = int(counts.get(ItemState.SIGNED, 0))
    batch.rejected = int(counts.get(ItemState.REJECTED, 0))
    session.flush()


def _progress(batch: SigningBatch, rejections: Sequence[Rejection]) -> Progress:
    return Progress(
        batch.id, batch.status, batch.total, batch.signed, batch.rejected, tuple(rejections)
    )
