"""Reading batches: one batch's result, the officer's latest batches."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from kyso.platform.models import (
    BatchStatus,
    Dose,
    Facility,
    ItemState,
    Person,
    SigningBatch,
    SigningBatchItem,
    User,
)
from kyso.platform.records.readmodel import join_dose, with_dose_details
from kyso.platform.signing.batches.completion import _finish_if_done, _recount
from kyso.platform.signing.batches.officers import (
    _own_batch,
)
from kyso.platform.signing.batches.values import (
    BatchResult,
    RejectedRecord,
)


def result(session: Session, officer: User, batch_id: str) -> BatchResult:
    """The batch and its rejected records; an open batch with nothing pending is completed
    first (a batch left open by an interrupted page or an older version). The caller commits."""
    batch = _own_batch(session, officer, batch_id)
    if batch.status is BatchStatus.OPEN and batch.pending == 0:
        batch = _own_batch(session, officer, batch_id, lock=True)
        _recount(session, batch)
        _finish_if_done(session, batch, officer, datetime.now(UTC))
    rows = session.execute(
        join_dose(
            select(
                SigningBatchItem.position,
                SigningBatchItem.reason,
                Person.full_name,
                Dose.dose_number,
                Dose.vaccinated_on,
            ),
            SigningBatchItem.dose_id,
        )
        .join(Person, Person.id == SigningBatchItem.person_id)
        .where(
            SigningBatchItem.batch_id == batch.id,
            SigningBatchItem.state == ItemState.REJECTED,
        )
        .order_by(SigningBatchItem.position)
    )
    rejected = tuple(
        RejectedRecord(r.position, r.full_name, r.dose_number, r.vaccinated_on, r.reason)
        for r in rows
    )
    facilities = tuple(
        session.scalars(
            with_dose_details(
                join_dose(
                    select(Facility.name).select_from(SigningBatchItem), SigningBatchItem.dose_id
                ),
                facility=True,
            )
            .where(SigningBatchItem.batch_id == batch.id)
            .distinct()
            .order_by(Facility.name)
        )
    )
    return BatchResult(batch, rejected, facilities)


def recent_batches(session: Session, officer: User, limit: int = 20) -> list[SigningBatch]:
    """The officer's latest batches; those left open with nothing pending are completed on the
    way (idempotently, under the batch's lock). The caller commits."""
    found = list(
        session.scalars(
            select(SigningBatch)
            .where(SigningBatch.officer_id == officer.id)
            .order_by(SigningBatch.created_at.desc())
            .limit(limit)
        )
    )
    now = datetime.now(UTC)
    for listed in found:
        if listed.status is BatchStatus.OPEN and listed.pending == 0:
            batch = _own_batch(session, officer, listed.id, lock=True)
            _recount(session, batch)
            _finish_if_done(session, batch, officer, now)
    return found
