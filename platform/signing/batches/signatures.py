"""Accepting the agent's signatures a chunk at a time: verifying them and storing the signed
and the rejected records."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from cryptography import x509
from sqlalchemy import (
    DateTime,
    Integer,
    Table,
    any_,
    bindparam,
    exists,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as lite_insert
from sqlalchemy.orm import Session

from kyso.platform.db import is_postgresql
from kyso.platform.errors import DomainError
from kyso.platform.models import (
    BatchMode,
    Dose,
    DoseSignature,
    ItemState,
    PassportQueueEntry,
    RejectReason,
    SigningAttempt,
    SigningBatch,
    SigningBatchItem,
    SigningCertificate,
    User,
)
from kyso.platform.ops.metrics import SIGNATURES_STORED, count_on_commit
from kyso.platform.records.readmodel import join_dose
from kyso.platform.signing import cms, stamping
from kyso.platform.signing import revocation as revocations
from kyso.platform.signing.batches.completion import _finish_if_done, _progress, _recount
from kyso.platform.signing.batches.officers import (
    _certificate_problem,
    _own_batch,
)
from kyso.platform.signing.batches.values import (
    Progress,
    Rejection,
    SigningContext,
)
from kyso.platform.signing.evidence import store_evidence
from kyso.platform.signing.timestamps import Timestamper


def accept_signatures(
    session: Session,
    officer: User,
    batch_id: str,
    attempt_id: str,
    offset: int,
    signatures: Sequence[bytes],
    now: datetime | None = None,
    context: SigningContext | None = None,
) -> Progress:
    """Verify and store one chunk of the agent's signatures for an attempt.

    With a ``context`` the certificate's revocation is checked again (one cached OCSP answer
    serves every chunk): a revoked certificate's signatures are rejected."""
    now = now or datetime.now(UTC)
    batch = _own_batch(session, officer, batch_id, lock=True)
    attempt = session.get(SigningAttempt, attempt_id)
    if attempt is None or attempt.batch_id != batch.id:
        raise DomainError("batches.unknown_attempt")
    count = 1 if batch.mode is BatchMode.BATCH else len(attempt.positions)
    if offset < 0 or not signatures or offset + len(signatures) > count:
        raise DomainError("batches.bad_chunk", offset=offset, count=count)
    registration = session.get(SigningCertificate, batch.certificate_id)
    assert registration is not None
    assert registration.der is not None
    certificate = x509.load_der_x509_certificate(registration.der)
    problem = _certificate_problem(session, officer, batch, certificate, now) or (
        revocations.revocation_reason(
            session,
            registration,
            trust=context.trust if context else None,
            revocation=context.revocation if context else None,
            at=now,
        )
    )
    # The CMS carries the signer certificate; the chain up to the anchor goes into the export.
    chain: tuple[x509.Certificate, ...] = ()
    timestamper = context.timestamper if context else None

    if batch.mode is BatchMode.BATCH:
        rejections = _accept_batch_signature(
            session, batch, certificate, signatures[0], problem, chain, now, timestamper
        )
    else:
        positions = attempt.positions[offset : offset + len(signatures)]
        rejections = _accept_record_signatures(
            session,
            batch,
            certificate,
            dict(zip(positions, signatures, strict=True)),
            problem,
            chain,
            now,
            timestamper,
        )
    if context is not None and context.revocation is not None and problem is None:
        store_evidence(session, batch.id, context.revocation.evidence(registration.der))
    session.flush()  # the counters were kept on the locked batch row as records were decided
    # The last record decided closes the batch in the same transaction: a page that never gets
    # to post ``complete`` (the platform down longer than its retries) leaves no batch open.
    _finish_if_done(session, batch, officer, now)
    return _progress(batch, rejections)


def _accept_record_signatures(
    session: Session,
    batch: SigningBatch,
    certificate: x509.Certificate,
    by_position: dict[int, bytes],
    problem: RejectReason | None,
    chain: Sequence[x509.Certificate],
    now: datetime,
    timestamper: Timestamper | None = None,
) -> tuple[Rejection, ...]:
    positions = list(by_position)
    # PostgreSQL: the positions as one array parameter, so that the statement's text is the
    # same for every post (an IN list of up to 500 placeholders was expanded, then parsed again
    # by psycopg, on each one).
    chosen = (
        SigningBatchItem.position == any_(bindparam("positions", positions, ARRAY(Integer)))
        if is_postgresql(session)
        else SigningBatchItem.position.in_(positions)
    )
    rows = session.execute(_item_rows(batch).where(chosen)).all()
    assembler = cms.Assembler(certificate, batch.algorithm, chain)
    accepted: list[tuple[Any, bytes]] = []
    rejections: list[Rejection] = []
    for row in rows:
        if row.state is not ItemState.PENDING:
            continue  # decided by an earlier post of the same chunk
        signature = by_position[row.position]
        reason = problem or _stale_reason(row)
        if reason is None:
            try:
                accepted.append((row, assembler.accept(row.signed_attributes, signature)))
                continue
            except cms.SignatureInvalid:
                reason = RejectReason.SIGNATURE_INVALID
        rejections.append(Rejection(row.position, reason))
    _store_signed(session, batch, [(row, blob) for row, blob in accepted], now)
    if accepted and timestamper is not None:
        # CAdES-T after storage: queued in this transaction, time-stamped by the worker.
        stamping.queue_signed(session, batch.id, [row.position for row, _ in accepted], now)
    _store_rejected(session, batch, rejections, now)
    return tuple(rejections)


def _accept_batch_signature(
    session: Session,
    batch: SigningBatch,
    certificate: x509.Certificate,
    signature: bytes,
    problem: RejectReason | None,
    chain: Sequence[x509.Certificate],
    now: datetime,
    timestamper: Timestamper | None = None,
) -> tuple[Rejection, ...]:
    if batch.cms is not None:
        return ()  # the batch signature was already accepted
    rows = session.execute(
        _item_rows(batch).where(SigningBatchItem.state == ItemState.PENDING)
    ).all()
    assert batch.signed_attributes is not None
    reason = problem
    if reason is None:
        try:
            cms.verify_signature(certificate, batch.algorithm, batch.signed_attributes, signature)
        except cms.SignatureInvalid:
            reason = RejectReason.SIGNATURE_INVALID
    if reason is not None:
        rejections = [Rejection(row.position, reason) for row in rows]
        _store_rejected(session, batch, rejections, now)
        return tuple(rejections)
    assembled = cms.Assembler(certificate, batch.algorithm, chain).assemble(
        batch.signed_attributes, signature
    )
    batch.cms = assembled
    if timestamper is not None:
        stamping.stamp_batch_now(session, batch, timestamper, now)  # or queued
    rejections = [
        Rejection(row.position, stale) for row in rows if (stale := _stale_reason(row)) is not None
    ]
    _store_rejected(session, batch, rejections, now)
    lost = _store_all_pending_signed(session, batch, now)
    return (*rejections, *lost)


def _store_all_pending_signed(
    session: Session, batch: SigningBatch, now: datetime
) -> tuple[Rejection, ...]:
    """Batch mode: every pending record is signed by the one batch signature, set-based.

    Up to 3,000 records: four statements instead of a row-by-row write of each. A dose version
    another batch signed meanwhile is rejected (the insert skips it on the unique key).
    """
    items = SigningBatchItem
    pending = (items.batch_id == batch.id) & (items.state == ItemState.PENDING)
    dialect_insert = pg_insert if is_postgresql(session) else lite_insert
    inserted = set(
        session.scalars(
            dialect_insert(DoseSignature)
            .from_select(
                ["dose_id", "dose_version", "certificate_id", "signed_at"],
                select(
                    items.dose_id,
                    items.dose_version,
                    literal(batch.certificate_id),
                    literal(now, DateTime(timezone=True)),
                ).where(pending),
            )
            .on_conflict_do_nothing(index_elements=["dose_id", "dose_version"])
            .returning(DoseSignature.dose_id)
        )
    )
    lost = tuple(
        Rejection(position, RejectReason.ALREADY_SIGNED)
        for position, dose_id in session.execute(
            select(items.position, items.dose_id).where(pending)
        ).tuples()
        if dose_id not in inserted
    )
    _store_rejected(session, batch, lost, now)
    signature_of = (
        select(DoseSignature.id)
        .where(
            DoseSignature.dose_id == items.dose_id,
            DoseSignature.dose_version == items.dose_version,
        )
        .scalar_subquery()
    )
    session.execute(
        update(items)
        .where(pending)
        .values(state=ItemState.SIGNED, decided_at=now, signature_id=signature_of)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        insert(PassportQueueEntry).from_select(
            ["signature_id", "person_id", "queued_at"],
            select(
                items.signature_id, items.person_id, literal(now, DateTime(timezone=True))
            ).where(
                items.batch_id == batch.id,
                items.state == ItemState.SIGNED,
                ~exists().where(PassportQueueEntry.signature_id == items.signature_id),
            ),
        )
    )
    batch.signed += len(inserted)  # one item per dose in a batch
    count_on_commit(session, SIGNATURES_STORED, len(inserted))
    return lost


def _item_rows(batch: SigningBatch) -> Any:
    current = (
        select(DoseSignature.id)
        .where(
            DoseSignature.dose_id == SigningBatchItem.dose_id,
            DoseSignature.dose_version == SigningBatchItem.dose_version,
            DoseSignature.superseded_at.is_(None),
        )
        .limit(1)
        .scalar_subquery()
    )
    return join_dose(
        select(
            SigningBatchItem.position,
            SigningBatchItem.state,
            SigningBatchItem.dose_id,
            SigningBatchItem.dose_version,
            SigningBatchItem.person_id,
            SigningBatchItem.signed_attributes,
            Dose.version.label("current_version"),
            current.label("signed_by"),
        ),
        SigningBatchItem.dose_id,
    ).where(SigningBatchItem.batch_id == batch.id)


def _stale_reason(row: Any) -> RejectReason | None:
    if row.current_version != row.dose_version:
        return RejectReason.CHANGED
    if row.signed_by is not None:
        return RejectReason.ALREADY_SIGNED
    return None


def _store_signed(
    session: Session,
    batch: SigningBatch,
    accepted: Sequence[tuple[Any, bytes | None]],
    now: datetime,
) -> None:
    """Stores the accepted signatures; a dose version another batch signed first is rejected.

    ``INSERT … ON CONFLICT DO NOTHING`` on (dose, version) settles a race between two batches
    in the database without a savepoint: the rows it did not insert lost the race.
    """
    if not accepted:
        return
    postgresql = is_postgresql(session)
    if postgresql:
        found = session.execute(
            _PG_INSERT_SIGNATURES,
            {
                "certificate_id": batch.certificate_id,
                "signed_at": now,
                "dose_ids": [row.dose_id for row, _ in accepted],
                "versions": [row.dose_version for row, _ in accepted],
            },
        )
    else:
        found = session.execute(
            lite_insert(DoseSignature)
            .on_conflict_do_nothing(index_elements=["dose_id", "dose_version"])
            .returning(DoseSignature.id, DoseSignature.dose_id),
            [
                {
                    "dose_id": row.dose_id,
                    "dose_version": row.dose_version,
                    "certificate_id": batch.certificate_id,
                    "signed_at": now,
                }
                for row, _ in accepted
            ],
        )
    inserted = {dose_id: signature_id for signature_id, dose_id in found.tuples()}
    stored = [
        (row, blob, inserted[row.dose_id]) for row, blob in accepted if row.dose_id in inserted
    ]
    lost = [
        Rejection(row.position, RejectReason.ALREADY_SIGNED)
        for row, _ in accepted
        if row.dose_id not in inserted
    ]
    if stored:
        _mark_signed(session, batch, stored, now)
        if postgresql:
            session.execute(
                _PG_QUEUE_PASSPORTS,
                {
                    "queued_at": now,
                    "signature_ids": [signature_id for _, _, signature_id in stored],
                    "person_ids": [row.person_id for row, _, _ in stored],
                },
            )
        else:
            session.execute(
                insert(PassportQueueEntry),
                [
                    {"signature_id": signature_id, "person_id": row.person_id, "queued_at": now}
                    for row, _, signature_id in stored
                ],
            )
        batch.signed += len(stored)
        count_on_commit(session, SIGNATURES_STORED, len(stored))
    _store_rejected(session, batch, lost, now)


def _mark_signed(
    session: Session,
    batch: SigningBatch,
    stored: Sequence[tuple[Any, bytes | None, int]],
    now: datetime,
) -> None:
    """Items signed: one ``UPDATE … FROM unnest(arrays)`` on PostgreSQL (an executemany of up to
    500 single-row updates costs it several times more, and a VALUES list is compiled anew for
    every post), an executemany on SQLite (in-process, where a statement costs little)."""
    if is_postgresql(session):
        # The CMS blobs travel as one bytea and each row's (start, length) in it: a bytea[]
        # parameter is quoted element by element in Python by the driver (about a third of a
        # post's CPU for 500 blobs), one bytea is escaped in C.
        blobs = [blob or b"" for _, blob, _ in stored]
        starts = list(itertools.accumulate((len(b) for b in blobs), initial=1))[:-1]
        session.execute(
            _PG_MARK_SIGNED,
            {
                "batch_id": batch.id,
                "decided_at": now,
                "positions": [row.position for row, _, _ in stored],
                "cms": b"".join(blobs),
                "starts": starts,
                "lengths": [
                    len(b) if blob is not None else None
                    for b, (_, blob, _) in zip(blobs, stored, strict=True)
                ],
                "signature_ids": [signature_id for _, _, signature_id in stored],
            },
        )
        return
    session.execute(
        _ITEM_UPDATE,
        [
            {
                "k_batch": batch.id,
                "k_position": row.position,
                "v_state": ItemState.SIGNED,
                "v_reason": None,
                "v_cms": blob,
                "v_signature": signature_id,
                "v_at": now,
            }
            for row, blob, signature_id in stored
        ],
    )


_ITEMS = cast(Table, SigningBatchItem.__table__)
# PostgreSQL: a post's rows as array parameters (unnest), so that each statement's text never
# changes and is compiled once, and the server gets one statement instead of hundreds of rows.
_PG_INSERT_SIGNATURES = text(
    "INSERT INTO dose_signatures (dose_id, dose_version, certificate_id, signed_at)"
    " SELECT d.dose_id, d.dose_version, :certificate_id, :signed_at"
    " FROM unnest(CAST(:dose_ids AS integer[]), CAST(:versions AS integer[]))"
    " AS d(dose_id, dose_version)"
    " ON CONFLICT (dose_id, dose_version) DO NOTHING RETURNING id, dose_id"
)
_PG_QUEUE_PASSPORTS = text(
    "INSERT INTO passport_queue (signature_id, person_id, state, queued_at)"
    " SELECT d.signature_id, d.person_id, 'pending', :queued_at"
    " FROM unnest(CAST(:signature_ids AS integer[]), CAST(:person_ids AS integer[]))"
    " AS d(signature_id, person_id)"
)
_PG_MARK_SIGNED = text(
    "UPDATE signing_batch_items AS i"
    " SET state = 'signed', signature_id = d.signature_id, decided_at = :decided_at,"
    " cms = CASE WHEN d.length IS NULL THEN NULL"
    " ELSE substring(CAST(:cms AS bytea) FROM d.start FOR d.length) END"
    " FROM unnest(CAST(:positions AS integer[]), CAST(:starts AS integer[]),"
    " CAST(:lengths AS integer[]), CAST(:signature_ids AS integer[]))"
    " AS d(position, start, length, signature_id)"
    " WHERE i.batch_id = :batch_id AND i.position = d.position"
)
# One statement for every item decision, run as an executemany (Core, not the ORM's bulk
# update by primary key, which costs more per row than the UPDATE itself).
_ITEM_UPDATE = (
    _ITEMS.update()
    .where(_ITEMS.c.batch_id == bindparam("k_batch"), _ITEMS.c.position == bindparam("k_position"))
    .values(
        state=bindparam("v_state"),
        reason=bindparam("v_reason"),
        cms=bindparam("v_cms"),
        signature_id=bindparam("v_signature"),
        decided_at=bindparam("v_at"),
    )
)


def _store_rejected(
    session: Session, batch: SigningBatch, rejections: Sequence[Rejection], now: datetime
) -> None:
    if rejections:
        session.execute(
            _ITEM_UPDATE,
            [
                {
                    "k_batch": batch.id,
                    "k_position": r.position,
                    "v_state": ItemState.REJECTED,
                    "v_reason": r.reason,
                    "v_cms": None,
                    "v_signature": None,
                    "v_at": now,
                }
                for r in rejections
            ],
        )
        batch.rejected += len(rejections)


def _reject_stale(session: Session, batch: SigningBatch, now: datetime) -> None:
    rows = session.execute(
        _item_rows(batch).where(SigningBatchItem.state == ItemState.PENDING)
    ).all()
    stale = [
        Rejection(row.position, reason)
        for row in rows
        if (reason := _stale_reason(row)) is not None
    ]
    _store_rejected(session, batch, stale, now)
    _recount(session, batch)
