"""Signing batches: prepare from the preview, accept signatures in chunks, resume, complete.

The rules this module owns (each has a test in tests/platform/test_signing_batches.py):

- A batch is prepared only from the officer's re-validated selection (scope, verified people,
  not signed in the current version, not edited since ticked; at most 1,000 people and 3,000
  doses), with the officer's registered certificate checked (serial, chain to the trust anchors,
  validity, key usage). The exact bytes are fixed at preparation: each dose's canonical
  certificate document and, per record, the CAdES signed attributes over it.
- A returned signature is kept only if it is the registered certificate's key's signature over
  exactly those bytes, the certificate is still the officer's registered one and valid, and the
  dose was not edited (nor signed by another batch) since. Otherwise the record is rejected with
  its reason; the other records of the chunk are unaffected.
- Signatures are stored as they arrive (a chunk at a time, atomically). Posting a chunk twice,
  completing twice, or resuming after a crash never signs or stores anything twice: a record
  leaves ``pending`` once, and a dose version has at most one current signature (a unique
  constraint backs this up against two batches racing).
- An interrupted batch is resumed with a new attempt (a new manifest) over the records still
  pending; records edited in the meantime are rejected first, never signed with stale data.

Every function takes the Session, leaves the commit to the caller, and raises ``DomainError``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from cryptography import x509
from sqlalchemy import (
    DateTime,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as lite_insert
from sqlalchemy.orm import Session

from kyso.platform.auth.service import audit
from kyso.platform.db import is_postgresql
from kyso.platform.i18n import DomainError, translate
from kyso.platform.models import (
    BatchMode,
    BatchStatus,
    Dose,
    DoseSignature,
    Facility,
    ItemState,
    PassportQueueEntry,
    Person,
    RejectReason,
    Role,
    SigningAttempt,
    SigningBatch,
    SigningBatchItem,
    SigningCertificate,
    SigningSelection,
    SigningUnit,
    User,
    VaccineProduct,
)
from kyso.platform.ops.metrics import BATCHES, SIGNATURES_STORED, count_on_commit
from kyso.platform.signing import cms, documents
from kyso.platform.signing import revocation as revocations
from kyso.platform.signing.certificates import CheckedCertificate, TrustStore, check_certificate
from kyso.platform.signing.evidence import store_evidence
from kyso.platform.signing.manifest import ManifestSigner, Summary, verification_code
from kyso.platform.signing.preview import Dropped, validated_selection
from kyso.platform.signing.selection import MAX_DOSES, MAX_PEOPLE
from kyso.platform.signing.timestamps import Timestamper
from kyso.platform.signing.validation import RevocationChecker
from kyso.platform.users.service import active_certificate

# How long the agent may take to start a batch after it was handed a manifest.
MANIFEST_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class SigningContext:
    """What the service needs from the platform's configuration."""

    trust: TrustStore
    manifest_signer: ManifestSigner
    origin: str  # the signing page's origin, exactly as the browser sends it
    manifest_lifetime: timedelta = MANIFEST_LIFETIME
    # Revocation (OCSP/CRL) policy and cache; None checks no revocation (offline tests).
    revocation: RevocationChecker | None = None
    # RFC 3161 time-stamps of stored signatures (CAdES-T); None stores CAdES-BES.
    timestamper: Timestamper | None = None


@dataclass(frozen=True)
class Attempt:
    """Exactly the fields of the agent's ``sign`` request, plus the verification code."""

    id: str
    manifest: str
    certificate: str
    algorithm: str
    digests: tuple[bytes, ...]
    code: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "manifest": self.manifest,
            "certificate": self.certificate,
            "algorithm": self.algorithm,
            "digests": [base64.b64encode(d).decode("ascii") for d in self.digests],
            "code": self.code,
            "count": len(self.digests),
        }


@dataclass(frozen=True)
class Prepared:
    batch_id: str
    total: int
    people: int
    attempt: Attempt
    dropped: tuple[Dropped, ...]


@dataclass(frozen=True)
class Rejection:
    position: int
    reason: RejectReason


@dataclass(frozen=True)
class Progress:
    batch_id: str
    status: BatchStatus
    total: int
    signed: int
    rejected: int
    rejections: tuple[Rejection, ...] = ()  # of this call only

    @property
    def pending(self) -> int:
        return self.total - self.signed - self.rejected


@dataclass(frozen=True)
class RejectedRecord:
    position: int
    person_name: str
    dose_number: int
    vaccinated_on: date
    reason: RejectReason

    def text(self, language: str) -> str:
        return reason_text(self.reason, language)


@dataclass(frozen=True)
class BatchResult:
    batch: SigningBatch
    rejected: tuple[RejectedRecord, ...]
    facilities: tuple[str, ...] = field(default=())


def reason_text(reason: RejectReason, language: str) -> str:
    return translate(f"batches.reason_{reason.value}", language)


def inspect_certificate(
    session: Session, officer: User, der: bytes, context: SigningContext
) -> CheckedCertificate:
    """The checks of ``prepare`` on a certificate read from the token, without preparing."""
    registration = active_certificate(session, officer)
    _check_for_unit(session, officer, registration, der, context, datetime.now(UTC))
    return check_certificate(
        der,
        registered_serial=registration.serial_hex if registration else None,
        trust=context.trust,
        at=datetime.now(UTC),
    )


# --- prepare -----------------------------------------------------------------------------------


def prepare(
    session: Session,
    officer: User,
    der: bytes,
    context: SigningContext,
    now: datetime | None = None,
) -> Prepared:
    """A batch of the officer's selection, signed for the agent; the selection is emptied."""
    now = now or datetime.now(UTC)
    unit = _officer_unit(session, officer)
    registration, checked = _check_officer_certificate(session, officer, der, context, now)
    selected, dropped = validated_selection(session, officer)
    if not selected:
        raise DomainError("batches.nothing_selected")
    rows = _certificate_rows(session, selected)
    people = len({row.person_id for row in rows})
    if len(rows) > MAX_DOSES or people > MAX_PEOPLE:
        raise DomainError("batches.over_limit", max_doses=MAX_DOSES, max_people=MAX_PEOPLE)

    batch_id = _new_batch_id(now)
    mode = BatchMode.BATCH if unit.batch_mode else BatchMode.PER_RECORD
    signing_time = now.replace(microsecond=0)
    builder = cms.AttributesBuilder(checked.certificate, signing_time)
    items: list[dict[str, Any]] = []
    for position, row in enumerate(rows):
        document = documents.certificate_document(
            documents.CertificateRecord(
                batch_id=batch_id,
                dose_id=row.id,
                dose_version=row.version,
                full_name=row.full_name,
                birth_date=row.birth_date,
                gender=row.gender.value,
                identity_number=row.identity_number,
                dose_number=row.dose_number,
                vaccinated_on=row.vaccinated_on,
                disease=row.disease_code,
                vaccine=row.prophylaxis_code,
                product=row.product_code,
                manufacturer=row.manufacturer_code,
                lot=row.lot,
                facility_code=row.facility_code,
                facility_name=row.facility_name,
            )
        )
        if mode is BatchMode.PER_RECORD:
            attributes, digest = builder.build(document)
        else:
            attributes, digest = None, hashlib.sha256(document).digest()
        items.append(
            {
                "batch_id": batch_id,
                "position": position,
                "dose_id": row.id,
                "dose_version": row.version,
                "person_id": row.person_id,
                "document": document,
                "signed_attributes": attributes,
                "digest": digest,
                "state": ItemState.PENDING,
            }
        )

    batch = SigningBatch(
        id=batch_id,
        signing_unit_id=unit.id,
        officer_id=officer.id,
        certificate_id=registration.id,
        certificate_fingerprint=checked.fingerprint,
        mode=mode,
        algorithm=checked.algorithm,
        origin=context.origin,
        signing_time=signing_time,
        status=BatchStatus.OPEN,
        total=len(items),
        people=people,
        signed=0,
        rejected=0,
        created_at=now,
    )
    if mode is BatchMode.BATCH:
        batch.document = documents.batch_document(
            batch_id,
            {"unit": unit.name, "certificate": checked.fingerprint},
            [
                (documents.record_id(item["dose_id"], item["dose_version"]), item["digest"])
                for item in items
            ],
        )
        batch.signed_attributes, _ = builder.build(batch.document)
    session.add(batch)
    session.flush()
    session.execute(insert(SigningBatchItem), items)
    session.execute(delete(SigningSelection).where(SigningSelection.user_id == officer.id))
    summary = Summary(
        facility=unit.name,
        people=people,
        doses=len(items),
        first_date=min(row.vaccinated_on for row in rows),
        last_date=max(row.vaccinated_on for row in rows),
    )
    attempt = _new_attempt(session, batch, [i["position"] for i in items], summary, context, now)
    audit(
        session,
        "signing.batch_prepared",
        officer,
        target=batch_id,
        doses=len(items),
        people=people,
        mode=mode.value,
        certificate=checked.serial_hex,
    )
    count_on_commit(session, BATCHES, event="prepared")
    return Prepared(batch_id, len(items), people, attempt, tuple(dropped))


def new_attempt(
    session: Session,
    officer: User,
    batch_id: str,
    der: bytes,
    context: SigningContext,
    now: datetime | None = None,
) -> Attempt:
    """A new manifest over the records still pending (after an interruption)."""
    now = now or datetime.now(UTC)
    batch = _own_batch(session, officer, batch_id, lock=True)
    _, checked = _check_officer_certificate(session, officer, der, context, now)
    if checked.fingerprint != batch.certificate_fingerprint:
        raise DomainError("batches.other_certificate")
    _reject_stale(session, batch, now)
    pending = list(
        session.execute(
            select(SigningBatchItem.position, Dose.vaccinated_on)
            .join(Dose, Dose.id == SigningBatchItem.dose_id)
            .where(
                SigningBatchItem.batch_id == batch.id,
                SigningBatchItem.state == ItemState.PENDING,
            )
            .order_by(SigningBatchItem.position)
        )
    )
    if not pending:
        _finish_if_done(session, batch, officer, now)
        raise DomainError("batches.nothing_pending")
    people = session.scalar(
        select(func.count(func.distinct(SigningBatchItem.person_id))).where(
            SigningBatchItem.batch_id == batch.id,
            SigningBatchItem.state == ItemState.PENDING,
        )
    )
    summary = Summary(
        facility=batch.signing_unit.name,
        people=int(people or 0),
        doses=len(pending),
        first_date=min(row.vaccinated_on for row in pending),
        last_date=max(row.vaccinated_on for row in pending),
    )
    attempt = _new_attempt(session, batch, [row.position for row in pending], summary, context, now)
    audit(session, "signing.batch_resumed", officer, target=batch.id, doses=len(pending))
    return attempt


def _new_attempt(
    session: Session,
    batch: SigningBatch,
    positions: list[int],
    summary: Summary,
    context: SigningContext,
    now: datetime,
) -> Attempt:
    number = 1 + int(
        session.scalar(
            select(func.coalesce(func.max(SigningAttempt.number), 0)).where(
                SigningAttempt.batch_id == batch.id
            )
        )
        or 0
    )
    jti = f"{batch.id}.{number}"
    if batch.mode is BatchMode.BATCH:
        assert batch.signed_attributes is not None
        digests: list[bytes] = [hashlib.sha256(batch.signed_attributes).digest()]
        positions = []
    else:
        by_position = dict(
            session.execute(
                select(SigningBatchItem.position, SigningBatchItem.digest).where(
                    SigningBatchItem.batch_id == batch.id,
                    SigningBatchItem.state == ItemState.PENDING,
                )
            )
            .tuples()
            .all()
        )
        digests = [by_position[p] for p in positions]
    code = verification_code(jti, digests)
    manifest = context.manifest_signer.issue(
        batch_id=jti,
        origin=batch.origin,
        certificate=batch.certificate_fingerprint,
        algorithm=batch.algorithm,
        digests=digests,
        summary=summary,
        code=code,
        issued_at=now,
        lifetime=context.manifest_lifetime,
    )
    session.add(
        SigningAttempt(
            id=jti,
            batch_id=batch.id,
            number=number,
            positions=positions,
            code=code,
            manifest=manifest,
            created_at=now,
            expires_at=now + context.manifest_lifetime,
        )
    )
    session.flush()
    return Attempt(
        jti, manifest, batch.certificate_fingerprint, batch.algorithm, tuple(digests), code
    )


# --- signatures --------------------------------------------------------------------------------


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
    rows = session.execute(
        _item_rows(batch).where(SigningBatchItem.position.in_(list(by_position)))
    ).all()
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
    if accepted and timestamper is not None:
        # CAdES-T: the chunk's signatures time-stamped concurrently before anything is stored
        # (the hard policy refuses the whole chunk when the TSA cannot answer).
        stamped = timestamper.stamp_cms([blob for _, blob in accepted])
        accepted = [(row, blob) for (row, _), blob in zip(accepted, stamped, strict=True)]
    _store_signed(session, batch, [(row, blob) for row, blob in accepted], now)
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
    batch.cms = timestamper.stamp_cms([assembled])[0] if timestamper else assembled
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
    return (
        select(
            SigningBatchItem.position,
            SigningBatchItem.state,
            SigningBatchItem.dose_id,
            SigningBatchItem.dose_version,
            SigningBatchItem.person_id,
            SigningBatchItem.signed_attributes,
            Dose.version.label("current_version"),
            current.label("signed_by"),
        )
        .join(Dose, Dose.id == SigningBatchItem.dose_id)
        .where(SigningBatchItem.batch_id == batch.id)
    )


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
        session.execute(
            _PG_MARK_SIGNED,
            {
                "batch_id": batch.id,
                "decided_at": now,
                "positions": [row.position for row, _, _ in stored],
                "cms": [blob for _, blob, _ in stored],
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
    " SET state = 'signed', cms = d.cms, signature_id = d.signature_id, decided_at = :decided_at"
    " FROM unnest(CAST(:positions AS integer[]), CAST(:cms AS bytea[]),"
    " CAST(:signature_ids AS integer[])) AS d(position, cms, signature_id)"
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


# --- completion and results --------------------------------------------------------------------


def complete(
    session: Session, officer: User, batch_id: str, now: datetime | None = None
) -> Progress:
    """The batch's state; a batch with nothing pending becomes completed (idempotent)."""
    now = now or datetime.now(UTC)
    batch = _own_batch(session, officer, batch_id, lock=True)
    _recount(session, batch)
    _finish_if_done(session, batch, officer, now)
    return _progress(batch, ())


def result(session: Session, officer: User, batch_id: str) -> BatchResult:
    """The batch and its rejected records; an open batch with nothing pending is completed
    first (a batch left open by an interrupted page or an older version). The caller commits."""
    batch = _own_batch(session, officer, batch_id)
    if batch.status is BatchStatus.OPEN and batch.pending == 0:
        batch = _own_batch(session, officer, batch_id, lock=True)
        _recount(session, batch)
        _finish_if_done(session, batch, officer, datetime.now(UTC))
    rows = session.execute(
        select(
            SigningBatchItem.position,
            SigningBatchItem.reason,
            Person.full_name,
            Dose.dose_number,
            Dose.vaccinated_on,
        )
        .join(Dose, Dose.id == SigningBatchItem.dose_id)
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
            select(Facility.name)
            .join(Dose, Dose.facility_id == Facility.id)
            .join(SigningBatchItem, SigningBatchItem.dose_id == Dose.id)
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


# --- officers, certificates, batches -----------------------------------------------------------


def _officer_unit(session: Session, officer: User) -> SigningUnit:
    if officer.role is not Role.SIGNING_OFFICER or not officer.active:
        raise DomainError("signing.not_an_officer")
    unit = session.get(SigningUnit, officer.signing_unit_id) if officer.signing_unit_id else None
    if unit is None:
        raise DomainError("signing.no_unit")
    return unit


def _check_officer_certificate(
    session: Session, officer: User, der: bytes, context: SigningContext, now: datetime
) -> tuple[SigningCertificate, CheckedCertificate]:
    registration = active_certificate(session, officer)
    _check_for_unit(session, officer, registration, der, context, now)
    checked = check_certificate(
        der,
        registered_serial=registration.serial_hex if registration else None,
        trust=context.trust,
        at=now,
    )
    assert registration is not None  # check_certificate refuses an unregistered officer
    if registration.fingerprint_sha256 is None:
        # The first batch binds the registered serial to the certificate read from the token.
        registration.fingerprint_sha256 = checked.fingerprint
        registration.der = checked.der
        registration.subject = checked.subject
        registration.issuer = checked.certificate.issuer.rfc4514_string()
        registration.not_before = checked.not_before
        registration.not_after = checked.not_after
    elif registration.fingerprint_sha256 != checked.fingerprint:
        raise DomainError("batches.certificate_differs", serial=registration.serial_hex)
    return registration, checked


def _check_for_unit(
    session: Session,
    officer: User,
    registration: SigningCertificate | None,
    der: bytes,
    context: SigningContext,
    now: datetime,
) -> None:
    """Revocation, organisation binding and compromise (``revocation.check_for_unit``)."""
    if registration is None:
        return  # check_certificate says the officer has no registered certificate
    unit = _officer_unit(session, officer)
    revocations.check_for_unit(
        session,
        registration,
        der,
        unit,
        trust=context.trust,
        revocation=context.revocation,
        at=now,
    )


def _certificate_problem(
    session: Session,
    officer: User,
    batch: SigningBatch,
    certificate: x509.Certificate,
    now: datetime,
) -> RejectReason | None:
    registration = active_certificate(session, officer)
    if registration is None or registration.id != batch.certificate_id:
        return RejectReason.CERTIFICATE_NOT_REGISTERED
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return RejectReason.CERTIFICATE_EXPIRED
    return None


def _own_batch(
    session: Session, officer: User, batch_id: str, *, lock: bool = False
) -> SigningBatch:
    query = select(SigningBatch).where(
        SigningBatch.id == batch_id, SigningBatch.officer_id == officer.id
    )
    if lock:
        query = query.with_for_update()
    batch = session.scalar(query)
    if batch is None:
        raise DomainError("batches.not_found", batch=batch_id)
    return batch


def _new_batch_id(now: datetime) -> str:
    return f"KB{now:%y%m%d}{secrets.token_hex(5).upper()}"


def _certificate_rows(session: Session, selected: dict[int, int]) -> list[Any]:
    ids = list(selected)
    rows: list[Any] = []
    for start in range(0, len(ids), 1000):
        rows.extend(
            session.execute(
                select(
                    Dose.id,
                    Dose.version,
                    Dose.person_id,
                    Dose.dose_number,
                    Dose.vaccinated_on,
                    Dose.lot,
                    Person.full_name,
                    Person.name_key,
                    Person.birth_date,
                    Person.gender,
                    Person.identity_number,
                    VaccineProduct.code.label("product_code"),
                    VaccineProduct.manufacturer_code,
                    VaccineProduct.prophylaxis_code,
                    VaccineProduct.disease_code,
                    Facility.code.label("facility_code"),
                    Facility.name.label("facility_name"),
                )
                .join(Person, Person.id == Dose.person_id)
                .join(VaccineProduct, VaccineProduct.id == Dose.product_id)
                .join(Facility, Facility.id == Dose.facility_id)
                .where(and_(Dose.id.in_(ids[start : start + 1000])))
            ).all()
        )
    # Only the versions the preview validated: a dose edited since is not signed stale.
    rows = [row for row in rows if selected[row.id] == row.version]
    rows.sort(key=lambda r: (r.name_key, r.person_id, r.dose_number, r.id))
    return rows
