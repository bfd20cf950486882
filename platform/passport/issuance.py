"""The end-of-day issuance: facility-signed certificates in, centrally signed passports out.

Rules (each has a test in tests/platform/test_passport_issuance.py):

- Work is taken from ``passport_queue`` in chunks, one transaction per chunk: the pending
  entries are locked ``FOR UPDATE SKIP LOCKED``, then their people ``FOR NO KEY UPDATE SKIP
  LOCKED``; a person is handled by one worker at a time, entries of a person another worker
  holds are left for later. Several workers on several machines can run at once against
  PostgreSQL; nothing is issued twice (and the database allows one current passport per
  person whatever happens). SQLite runs one writer at a time.
- For each person: the latest dose (date, then dose number) among the person's current
  facility signatures that reached the queue. If the person's current passport already is for
  that dose version, the entries are ``issued`` without a new passport (``covered``).
- Before issuing, the facility signature is verified again: per record, the detached CAdES
  signature over the record's document; in batch mode, the batch document's signature and the
  record's SHA-256 in its list. Then the signer certificate: the one registered for the
  signature, chaining to the trust anchors, valid at signing time, with a signing key usage.
  The document must be the dose version the queue names.
- The DCC is mapped from the signed document (what the facility stands behind), validated
  against the DCC schema, signed by the central key (HSM), and stored with its UVCI, HC1
  payload, issue and expiry time and the signer's kid. The person's previous passport is
  superseded by it, never deleted.
- An entry that cannot be issued is ``failed`` with an error row saying why; the run goes on.
  An error of the run itself (the token, the database) stops it: the chunk is rolled back and
  its entries stay pending.

``supersede_for_person`` is the corrections feature's entry point.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from kyso.platform.auth.service import audit
from kyso.platform.db import is_postgresql, is_transient, with_retries
from kyso.platform.models import (
    BatchMode,
    Dose,
    DoseSignature,
    IssuanceError,
    IssuanceRun,
    Passport,
    PassportQueueEntry,
    PassportSigner,
    PassportState,
    Person,
    RunStatus,
    SigningBatch,
    SigningBatchItem,
    SigningCertificate,
    User,
)
from kyso.platform.ops.metrics import PASSPORTS_ISSUED, count_on_commit
from kyso.platform.passport import dcc
from kyso.platform.passport.valuesets import CodeProblem, schema, value_sets
from kyso.platform.passport.verifier import schema_validator
from kyso.platform.records.readmodel import join_dose
from kyso.platform.signing import cms, documents
from kyso.platform.signing.certificates import (
    CertificateRejected,
    TrustStore,
    check_certificate,
    compromised_at,
)

__all__ = [
    "DEFAULT_ISSUER",
    "IssuanceContext",
    "RunSummary",
    "Supersession",
    "issue_passports",
    "register_signer",
    "retry_failed",
    "supersede_for_person",
]

DEFAULT_ISSUER = "Ministry of Health of Viet Nam"
CHUNK = 200
REASON_NEWER = "newer signed dose"


@dataclass(frozen=True)
class IssuanceContext:
    """What a run needs: the facility trust anchors, the DCC issuer, the central signer."""

    trust: TrustStore
    sign: Callable[[bytes], bytes]  # the HSM's COSE signature (hsm.HsmSigner.sign)
    algorithm: str  # ES256 or PS256
    certificate_der: bytes  # the central key's certificate
    issuer: str = DEFAULT_ISSUER
    chunk: int = CHUNK
    retries: int = 3  # a chunk is run again this many times after a transient database error
    retry_pause: float = 0.5  # seconds, times the try's number


@dataclass
class RunSummary:
    run_id: int
    claimed: int = 0
    issued: int = 0
    covered: int = 0
    failed: int = 0
    status: RunStatus = RunStatus.RUNNING
    message: str | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)  # (queue id, code)

    def plus(self, chunk: RunSummary) -> RunSummary:
        """These counts with a chunk's added (the run's figures once that chunk commits)."""
        return RunSummary(
            self.run_id,
            claimed=self.claimed + chunk.claimed,
            issued=self.issued + chunk.issued,
            covered=self.covered + chunk.covered,
            failed=self.failed + chunk.failed,
            status=self.status,
            message=self.message,
            errors=self.errors + chunk.errors,
        )


class _Failed(Exception):
    def __init__(self, code: str, detail: str, **values: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.values = values


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time stored is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def kid_text(kid: bytes) -> str:
    return base64.b64encode(kid).decode("ascii")


def register_signer(session: Session, certificate_der: bytes, algorithm: str) -> str:
    """Adds the central key's certificate to the platform's signer list; returns its kid."""
    kid = kid_text(dcc.key_id(certificate_der))
    if session.get(PassportSigner, kid) is None:
        certificate = x509.load_der_x509_certificate(certificate_der)
        try:
            with session.begin_nested():  # workers starting together all try to add it
                session.add(
                    PassportSigner(
                        kid=kid,
                        der=certificate_der,
                        subject=certificate.subject.rfc4514_string(),
                        algorithm=algorithm,
                        not_before=certificate.not_valid_before_utc,
                        not_after=certificate.not_valid_after_utc,
                    )
                )
        except IntegrityError:
            pass  # another worker added it first
    return kid


def platform_signers(session: Session) -> list[x509.Certificate]:
    """Every certificate the central key ever signed passports with (the verifier's list)."""
    return [
        x509.load_der_x509_certificate(der) for der in session.scalars(select(PassportSigner.der))
    ]


# --- the run ---------------------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


def issue_passports(
    factory: sessionmaker[Session],
    context: IssuanceContext,
    *,
    worker: str | None = None,
    started_by: User | None = None,
    limit: int | None = None,
    now: Callable[[], datetime] | None = None,
) -> RunSummary:
    """Issues passports for the queue until it is empty (or ``limit`` entries were taken)."""
    clock = now or (lambda: datetime.now(UTC))
    with factory() as session:
        kid = register_signer(session, context.certificate_der, context.algorithm)
        run = IssuanceRun(
            worker=worker or worker_name(),
            started_by_id=started_by.id if started_by else None,
            algorithm=context.algorithm,
            signer_kid=kid,
            status=RunStatus.RUNNING,
            started_at=clock(),
            claimed=0,
            issued=0,
            covered=0,
            failed=0,
        )
        session.add(run)
        if started_by is not None:
            audit(session, "passport.run_started", started_by, target=str(run.id))
        session.commit()
        summary = RunSummary(run.id)

    encoder = dcc.Encoder(context.sign, context.algorithm, context.certificate_der)
    idle_rounds = 0

    def one_chunk(size: int) -> tuple[int, int, RunSummary]:
        # The chunk's counts reach the run's figures only with the chunk's own commit: a chunk
        # rolled back (a lost connection, a killed worker) counts for nothing.
        counts = RunSummary(summary.run_id)
        with factory() as session:
            claimed, handled = _chunk(session, context, encoder, kid, counts, size, clock())
            _save_counts(session, summary.plus(counts))
            session.commit()
        return claimed, handled, counts

    try:
        while limit is None or summary.claimed < limit:
            size = context.chunk if limit is None else min(context.chunk, limit - summary.claimed)
            claimed, handled, counts = with_retries(
                functools.partial(one_chunk, size),
                retries=context.retries,
                pause=context.retry_pause,
                what=f"issuance run {summary.run_id}",
            )
            summary = summary.plus(counts)
            if claimed == 0:
                break
            if handled == 0:
                # Every person of the chunk is being handled by another worker: let it finish.
                idle_rounds += 1
                if idle_rounds > 200:
                    break
                time.sleep(0.05)
            else:
                idle_rounds = 0
    except Exception as exc:
        summary.status = RunStatus.STOPPED
        summary.message = f"{type(exc).__name__}: {exc}"[:2000]
        try:
            with factory() as session:
                _save_counts(session, summary, finished=clock())
                session.commit()
        except DBAPIError as lost:
            if not is_transient(lost):
                raise
            # The database is still away: the run stays "running" with the counts of its
            # committed chunks, and the caller hears about the first error.
        raise
    summary.status = RunStatus.FINISHED
    with factory() as session:
        _save_counts(session, summary, finished=clock())
        session.commit()
    return summary


def _save_counts(session: Session, summary: RunSummary, finished: datetime | None = None) -> None:
    values: dict[str, Any] = {
        "claimed": summary.claimed,
        "issued": summary.issued,
        "covered": summary.covered,
        "failed": summary.failed,
    }
    if finished is not None:
        values.update(status=summary.status, finished_at=finished, message=summary.message)
    session.execute(update(IssuanceRun).where(IssuanceRun.id == summary.run_id).values(**values))


def _chunk(
    session: Session,
    context: IssuanceContext,
    encoder: dcc.Encoder,
    kid: str,
    summary: RunSummary,
    size: int,
    now: datetime,
) -> tuple[int, int]:
    """One transaction: claim, verify, sign, store. Returns (entries claimed, entries handled)."""
    postgres = is_postgresql(session)
    claimed = session.execute(
        select(PassportQueueEntry.id, PassportQueueEntry.person_id)
        .where(PassportQueueEntry.state == PassportState.PENDING)
        .order_by(PassportQueueEntry.queued_at, PassportQueueEntry.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    ).all()
    if not claimed:
        return 0, 0
    by_person: dict[int, list[int]] = defaultdict(list)
    for entry_id, person_id in claimed:
        by_person[person_id].append(entry_id)
    people = sorted(by_person)
    if postgres:
        people = list(
            session.scalars(
                select(Person.id)
                .where(Person.id.in_(people))
                .order_by(Person.id)
                .with_for_update(skip_locked=True, key_share=True)
            )
        )
    if not people:
        return len(claimed), 0

    latest = _latest_signatures(session, people)
    current = {
        p.person_id: p
        for p in session.scalars(
            select(Passport).where(Passport.person_id.in_(people), Passport.superseded_at.is_(None))
        )
    }
    awaiting = defaultdict(list)  # superseded by a correction, replacement not issued yet
    for passport_id, person_id in session.execute(
        select(Passport.id, Passport.person_id).where(
            Passport.person_id.in_(people),
            Passport.superseded_at.is_not(None),
            Passport.superseded_by.is_(None),
        )
    ):
        awaiting[person_id].append(passport_id)

    issued_entries: list[int] = []
    failures: list[tuple[int, int, _Failed]] = []  # (entry, person, why)
    new_rows: list[dict[str, Any]] = []
    replaced: dict[int, list[int]] = {}  # person -> old passport ids to point at the new one
    for person_id in people:
        entries = by_person[person_id]
        candidate = latest.get(person_id)
        if candidate is None:
            failures += [
                (e, person_id, _Failed("record_changed", "no current facility signature"))
                for e in entries
            ]
            continue
        existing = current.get(person_id)
        if existing is not None and (existing.dose_id, existing.dose_version) == (
            candidate.dose_id,
            candidate.dose_version,
        ):
            issued_entries += entries
            summary.covered += len(entries)
            continue
        try:
            vaccination = _verified_vaccination(session, context.trust, candidate)
            row = _encode(encoder, vaccination, context.issuer, now)
        except _Failed as failure:
            failures += [(e, person_id, failure) for e in entries]
            continue
        row.update(
            person_id=person_id,
            dose_id=candidate.dose_id,
            dose_version=candidate.dose_version,
            signature_id=candidate.signature_id,
            queue_id=candidate.queue_id,
            run_id=summary.run_id,
            signer_kid=kid,
            algorithm=encoder.algorithm,
        )
        new_rows.append(row)
        replaced[person_id] = awaiting.get(person_id, []) + (
            [existing.id] if existing is not None else []
        )
        issued_entries += entries

    if new_rows:
        current_ids = {p.id for p in current.values()}
        superseding = [i for ids in replaced.values() for i in ids if i in current_ids]
        if superseding:
            session.execute(
                update(Passport)
                .where(Passport.id.in_(superseding))
                .values(superseded_at=now, superseded_reason=REASON_NEWER)
            )
        new_ids = session.scalars(
            insert(Passport).returning(Passport.id, sort_by_parameter_order=True), new_rows
        ).all()
        links = [
            {"id": old, "superseded_by": new}
            for row, new in zip(new_rows, new_ids, strict=True)
            for old in replaced[row["person_id"]]
        ]
        if links:
            session.execute(update(Passport), links)
        summary.issued += len(new_rows)
        count_on_commit(session, PASSPORTS_ISSUED, len(new_rows))
    if issued_entries:
        session.execute(
            update(PassportQueueEntry),
            [{"id": e, "state": PassportState.ISSUED} for e in issued_entries],
        )
    if failures:
        session.execute(
            update(PassportQueueEntry),
            [{"id": e, "state": PassportState.FAILED} for e, _, _ in failures],
        )
        session.execute(
            insert(IssuanceError),
            [
                {
                    "run_id": summary.run_id,
                    "queue_id": e,
                    "person_id": person_id,
                    "code": failure.code,
                    "detail": failure.detail[:2000],
                    "values": failure.values or None,
                    "at": now,
                }
                for e, person_id, failure in failures
            ],
        )
        summary.failed += len(failures)
        summary.errors += [(e, failure.code) for e, _, failure in failures]
    handled = len(issued_entries) + len(failures)
    summary.claimed += handled
    return len(claimed), handled


@dataclass(frozen=True)
class _Candidate:
    person_id: int
    signature_id: int
    dose_id: int
    dose_version: int
    queue_id: int
    certificate_id: int | None
    signed_at: datetime


def _latest_signatures(session: Session, people: Sequence[int]) -> dict[int, _Candidate]:
    """Per person, the latest dose whose current version is signed and reached the queue."""
    rows = session.execute(
        join_dose(
            select(
                PassportQueueEntry.person_id,
                PassportQueueEntry.id.label("queue_id"),
                DoseSignature.id.label("signature_id"),
                DoseSignature.dose_id,
                DoseSignature.dose_version,
                DoseSignature.certificate_id,
                DoseSignature.signed_at,
                Dose.vaccinated_on,
                Dose.dose_number,
            ).join(DoseSignature, DoseSignature.id == PassportQueueEntry.signature_id),
            DoseSignature.dose_id,
        ).where(
            PassportQueueEntry.person_id.in_(people),
            PassportQueueEntry.state.in_([PassportState.PENDING, PassportState.ISSUED]),
            DoseSignature.superseded_at.is_(None),
            DoseSignature.dose_version == Dose.version,
        )
    ).all()
    best: dict[int, Any] = {}
    for row in rows:
        key = (row.vaccinated_on, row.dose_number, row.signature_id)
        held = best.get(row.person_id)
        if held is None or key > (held.vaccinated_on, held.dose_number, held.signature_id):
            best[row.person_id] = row
    return {
        person_id: _Candidate(
            person_id,
            row.signature_id,
            row.dose_id,
            row.dose_version,
            row.queue_id,
            row.certificate_id,
            _aware(row.signed_at),
        )
        for person_id, row in best.items()
    }


# --- verifying the facility signature ----------------------------------------------------------


def _verified_vaccination(
    session: Session, trust: TrustStore, candidate: _Candidate
) -> dcc.Vaccination:
    item = session.execute(
        select(
            SigningBatchItem.document,
            SigningBatchItem.cms,
            SigningBatch.mode,
            SigningBatch.document.label("batch_document"),
            SigningBatch.cms.label("batch_cms"),
        )
        .join(SigningBatch, SigningBatch.id == SigningBatchItem.batch_id)
        .where(SigningBatchItem.signature_id == candidate.signature_id)
    ).one_or_none()
    if item is None:
        raise _Failed("no_signed_document", "no signed document for this facility signature")
    document: bytes = item.document
    record = documents.record_id(candidate.dose_id, candidate.dose_version)
    try:
        if item.mode is BatchMode.BATCH:
            if item.batch_cms is None or item.batch_document is None:
                raise _Failed("signature_invalid", "the batch has no signature", record=record)
            signer = cms.verify_detached(item.batch_cms, item.batch_document)
            listed = {
                entry["id"]: entry["sha256"] for entry in json.loads(item.batch_document)["records"]
            }
            if listed.get(record) != hashlib.sha256(document).hexdigest():
                raise _Failed(
                    "signature_invalid",
                    f"{record} is not listed with its SHA-256 in the signed batch document",
                    record=record,
                )
        else:
            if item.cms is None:
                raise _Failed("signature_invalid", "the record has no signature", record=record)
            signer = cms.verify_detached(item.cms, document)
    except cms.CmsInvalid as exc:
        raise _Failed("signature_invalid", f"{exc.reason}: {exc}", record=record) from None

    registration = (
        session.get(SigningCertificate, candidate.certificate_id)
        if candidate.certificate_id is not None
        else None
    )
    signer_der = signer.public_bytes(serialization.Encoding.DER)
    if registration is None or (registration.der is not None and registration.der != signer_der):
        raise _Failed(
            "certificate_mismatch",
            "the signature's certificate is not the one registered for this signature",
            record=record,
        )
    if compromised_at(registration, candidate.signed_at):
        raise _Failed(
            "certificate_compromised",
            "the signature was made after the certificate was compromised or revoked",
            record=record,
        )
    try:
        check_certificate(
            signer_der,
            registered_serial=registration.serial_hex,
            trust=trust,
            at=candidate.signed_at,
        )
    except CertificateRejected as exc:
        raise _Failed(
            "certificate_rejected", str(exc), record=record, problem=exc.problem.value
        ) from None

    try:
        fields = json.loads(document)
        person, dose = fields["person"], fields["dose"]
        if fields.get("record") != record:
            raise _Failed(
                "document_mismatch",
                f"the signed document is {fields.get('record')!r}, the queue names {record}",
                record=record,
            )
        codes = value_sets().vaccine_codes(
            disease=dose["disease"],
            vaccine=dose["vaccine"],
            product=dose["product"],
            manufacturer=dose["manufacturer"],
        )
        return dcc.Vaccination(
            full_name=person["name"],
            birth_date=date.fromisoformat(person["birth_date"]),
            dose_number=int(dose["number"]),
            vaccinated_on=date.fromisoformat(dose["date"]),
            codes=codes,
        )
    except CodeProblem as exc:
        raise _Failed(exc.code, str(exc), record=record, **exc.values) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise _Failed(
            "document_invalid", f"unreadable signed document: {exc!r}", record=record
        ) from None


_VARIABLE = ("fn", "fnt", "gn", "gnt")


class SchemaGuard:
    """Every certificate checked against the DCC schema, at a fraction of jsonschema's cost.

    Certificates differ in a few values only: the names, the birth date, the vaccination date,
    the UVCI. The rest (codes, dose numbers, country, issuer, which name parts are present) is
    validated in full by jsonschema once per combination, with the varying values replaced by
    valid placeholders; the varying values of each certificate are checked against the
    constraints the schema itself gives for them (pattern and maxLength).
    """

    def __init__(self) -> None:
        definitions = schema()["$defs"]
        person = definitions["person_name"]["properties"]
        self._name_rules = {
            key: (
                re.compile(person[key]["pattern"]) if "pattern" in person[key] else None,
                int(person[key]["maxLength"]),
            )
            for key in _VARIABLE
        }
        self._dob = re.compile(schema()["properties"]["dob"]["pattern"])
        self._uvci_length = int(definitions["certificate_id"]["maxLength"])
        self._shapes: set[str] = set()

    def problems(self, certificate: dict[str, Any]) -> list[str]:
        name, (vaccination,) = certificate["nam"], certificate["v"]
        shape_name = {key: ("A" if key.endswith("t") else "a") for key in name}
        shape = {
            **certificate,
            "nam": shape_name,
            "dob": "2000-01-01",
            "v": [{**vaccination, "dt": "2021-01-01", "ci": "URN:UVCI:01:VN:0"}],
        }
        key = json.dumps(shape, sort_keys=True)
        if key not in self._shapes:
            errors = list(schema_validator().iter_errors(shape))
            if errors:
                return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:3]]
            self._shapes.add(key)
        found = []
        for part, value in name.items():
            pattern, length = self._name_rules[part]
            if len(value) > length or (pattern is not None and not pattern.search(value)):
                found.append(f"nam/{part}: {value!r} breaks the schema's rule")
        if not self._dob.search(certificate["dob"]):
            found.append(f"dob: {certificate['dob']!r} is outside 1900-2099")
        if len(vaccination["ci"]) > self._uvci_length:
            found.append("v/0/ci: longer than the schema allows")
        return found


_GUARD: list[SchemaGuard] = []


def schema_problems(certificate: dict[str, Any]) -> list[str]:
    if not _GUARD:
        _GUARD.append(SchemaGuard())
    return _GUARD[0].problems(certificate)


def _encode(
    encoder: dcc.Encoder, vaccination: dcc.Vaccination, issuer: str, now: datetime
) -> dict[str, Any]:
    uvci = dcc.new_uvci()
    try:
        certificate = dcc.certificate(vaccination, uvci=uvci, issuer=issuer)
    except ValueError as exc:
        raise _Failed("document_invalid", str(exc)) from None
    problems = schema_problems(certificate)
    if problems:
        raise _Failed("schema_invalid", "; ".join(problems))
    encoded = encoder.encode(certificate, now)
    return {
        "uvci": uvci,
        "payload": encoded.payload,
        "dcc": certificate,
        "issued_at": encoded.issued_at,
        "expires_at": encoded.expires_at,
    }


# --- corrections and retries -----------------------------------------------------------------


@dataclass(frozen=True)
class Supersession:
    superseded: tuple[int, ...]  # passport ids marked superseded now
    requeued: int | None  # the queue entry put back for a reissue, if asked


def supersede_for_person(
    session: Session,
    person_id: int,
    reason: str,
    *,
    reissue: bool = False,
    by: User | None = None,
    now: datetime | None = None,
) -> Supersession:
    """Marks the person's current passport superseded (kept, never deleted).

    For the corrections feature: a corrected record is signed again by its facility, and that
    new signature's queue entry brings the replacement passport, which then names this one's
    successor (``superseded_by``). ``reissue=True`` also puts the latest current signature's
    entry back in the queue, for a correction that does not change the signed record (the
    next run issues a new passport with a new UVCI from it). The caller commits.
    """
    now = now or datetime.now(UTC)
    session.execute(
        select(Person.id).where(Person.id == person_id).with_for_update(key_share=True)
    ).one()
    current = list(
        session.scalars(
            select(Passport.id).where(
                Passport.person_id == person_id, Passport.superseded_at.is_(None)
            )
        )
    )
    if current:
        session.execute(
            update(Passport)
            .where(Passport.id.in_(current))
            .values(superseded_at=now, superseded_reason=reason[:200])
        )
    requeued: int | None = None
    if reissue:
        candidate = _latest_signatures(session, [person_id]).get(person_id)
        if candidate is not None:
            session.execute(
                update(PassportQueueEntry)
                .where(PassportQueueEntry.id == candidate.queue_id)
                .values(state=PassportState.PENDING)
            )
            requeued = candidate.queue_id
    audit(
        session,
        "passport.superseded",
        by,
        target=f"person:{person_id}",
        passports=current,
        reason=reason[:200],
        reissue=reissue,
    )
    session.flush()
    return Supersession(tuple(current), requeued)


def retry_failed(session: Session, by: User | None = None) -> int:
    """Puts every failed queue entry back to pending (after the cause was fixed)."""
    result = session.execute(
        update(PassportQueueEntry)
        .where(PassportQueueEntry.state == PassportState.FAILED)
        .values(state=PassportState.PENDING)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    audit(session, "passport.retry_failed", by, entries=count)
    return count


# --- the issuer page's figures -----------------------------------------------------------------


@dataclass(frozen=True)
class QueueCounts:
    pending: int
    issued: int
    failed: int
    passports: int  # current passports
    superseded: int


def queue_counts(session: Session) -> QueueCounts:
    states = dict(
        session.execute(
            select(PassportQueueEntry.state, func.count()).group_by(PassportQueueEntry.state)
        )
        .tuples()
        .all()
    )
    current = session.scalar(
        select(func.count()).select_from(Passport).where(Passport.superseded_at.is_(None))
    )
    superseded = session.scalar(
        select(func.count()).select_from(Passport).where(Passport.superseded_at.is_not(None))
    )
    return QueueCounts(
        pending=int(states.get(PassportState.PENDING, 0)),
        issued=int(states.get(PassportState.ISSUED, 0)),
        failed=int(states.get(PassportState.FAILED, 0)),
        passports=int(current or 0),
        superseded=int(superseded or 0),
    )


def recent_runs(session: Session, limit: int = 20) -> list[IssuanceRun]:
    return list(
        session.scalars(select(IssuanceRun).order_by(IssuanceRun.started_at.desc()).limit(limit))
    )


@dataclass(frozen=True)
class ErrorRow:
    at: datetime
    run_id: int
    queue_id: int
    person_name: str
    code: str
    values: dict[str, Any]
    detail: str


def recent_errors(session: Session, limit: int = 50) -> list[ErrorRow]:
    """Errors of entries that are still failed, newest first."""
    rows = session.execute(
        select(
            IssuanceError.at,
            IssuanceError.run_id,
            IssuanceError.queue_id,
            Person.full_name,
            IssuanceError.code,
            IssuanceError.values,
            IssuanceError.detail,
        )
        .join(Person, Person.id == IssuanceError.person_id)
        .join(PassportQueueEntry, PassportQueueEntry.id == IssuanceError.queue_id)
        .where(PassportQueueEntry.state == PassportState.FAILED)
        .order_by(IssuanceError.at.desc(), IssuanceError.id.desc())
        .limit(limit)
    )
    return [
        ErrorRow(_aware(r.at), r.run_id, r.queue_id, r.full_name, r.code, r.values or {}, r.detail)
        for r in rows
    ]


def history(session: Session, person_id: int) -> list[Passport]:
    """Every passport of a person, newest first (superseded ones included)."""
    return list(
        session.scalars(
            select(Passport)
            .where(Passport.person_id == person_id)
            .order_by(Passport.issued_at.desc(), Passport.id.desc())
        )
    )
