"""The batch service's rules, without HTTP: prepare, accept signatures, resume, complete.

Signatures are made with software keys here (the same bytes a token signs); the end-to-end
tests sign on SoftHSM through the real agent.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from support.platform_db import recorded_statements
from support.platform_seed import Seed, add_person
from support.signing_data import bulk_people
from support.signing_keys import Pki, Signer, make_pki, make_signer

from kyso.agent import devpki
from kyso.agent.manifest import commitment, verify_manifest
from kyso.platform.errors import DomainError
from kyso.platform.models import (
    AuditEvent,
    BatchMode,
    BatchStatus,
    Dose,
    DoseSignature,
    ItemState,
    PassportQueueEntry,
    Person,
    RejectReason,
    SigningBatch,
    SigningBatchItem,
    SigningSelection,
    User,
)
from kyso.platform.signing import batches, cms, documents
from kyso.platform.signing.batches import signatures
from kyso.platform.signing.certificates import CertificateRejected, load_trust_store
from kyso.platform.signing.export import export_signed
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.signing.selection import add_doses
from kyso.platform.users.service import (
    active_certificate,
    deactivate_certificate,
    register_certificate,
)

ORIGIN = "https://tiemchung.example.vn"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def manifest_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def context(pki: Pki, manifest_key: ec.EllipticCurvePrivateKey) -> batches.SigningContext:
    return batches.SigningContext(
        trust=load_trust_store(pki.anchors),
        manifest_signer=ManifestSigner(manifest_key),
        origin=ORIGIN,
    )


def _register(session: Session, org: Seed, signer: Signer, officer: User | None = None) -> None:
    register_certificate(session, org.admin, officer or org.officer, signer.serial)
    session.commit()


def _select(session: Session, officer: User, dose_ids: Sequence[int]) -> None:
    add_doses(session, officer, dose_ids)
    session.commit()


def _doses_of(session: Session, people: Sequence[int]) -> list[int]:
    return list(
        session.scalars(select(Dose.id).where(Dose.person_id.in_(people)).order_by(Dose.id))
    )


def _sign_all(signer: Signer, attempt: batches.Attempt) -> list[bytes]:
    return [signer.sign(d) for d in attempt.digests]


def _prepare(
    session: Session,
    org: Seed,
    context: batches.SigningContext,
    signer: Signer,
    people: int = 5,
    doses: int = 2,
) -> batches.Prepared:
    _register(session, org, signer)
    ids = bulk_people(session, org, people, doses=doses)
    _select(session, org.officer, _doses_of(session, ids))
    prepared = batches.prepare(session, org.officer, signer.der, context)
    session.commit()
    return prepared


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_a_prepared_batch_is_what_the_agent_requires(
    session: Session,
    org: Seed,
    context: batches.SigningContext,
    pki: Pki,
    manifest_key: ec.EllipticCurvePrivateKey,
    kind: str,
) -> None:
    signer = pki.rsa if kind == "rsa" else pki.p256
    prepared = _prepare(session, org, context, signer, people=4, doses=3)
    attempt = prepared.attempt
    assert (prepared.total, prepared.people) == (12, 4)
    assert attempt.algorithm == ("RSA_PKCS1_SHA256" if kind == "rsa" else "ECDSA_SHA256")

    # The agent's own verifier accepts the manifest for this origin, key, certificate, digests.
    public_pem = manifest_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fingerprint = hashlib.sha256(signer.der).hexdigest()
    manifest = verify_manifest(
        attempt.manifest,
        key=serialization.load_pem_public_key(public_pem),  # type: ignore[arg-type]
        origin=ORIGIN,
        now=time.time(),
        max_lifetime=3600,
        request_id="s1",
    )
    assert manifest.batch_id == attempt.id == f"{prepared.batch_id}.1"
    assert manifest.certificate == attempt.certificate == fingerprint
    assert manifest.count == 12
    assert manifest.code == attempt.code
    assert manifest.digests == commitment(attempt.digests)
    assert manifest.summary.people == 4
    assert manifest.summary.doses == 12

    # Each digest is SHA-256 of DER signed attributes whose message digest is the document's.
    items = session.scalars(
        select(SigningBatchItem)
        .where(SigningBatchItem.batch_id == prepared.batch_id)
        .order_by(SigningBatchItem.position)
    ).all()
    assert [i.digest for i in items] == list(attempt.digests)
    for item in items:
        assert item.signed_attributes is not None
        assert hashlib.sha256(item.signed_attributes).digest() == item.digest
        assert hashlib.sha256(item.document).digest() in item.signed_attributes
        document = json.loads(item.document)
        assert document["batch"] == prepared.batch_id
    # The selection now lives in the batch.
    assert session.scalar(select(func.count()).select_from(SigningSelection)) == 0


def test_signatures_are_verified_stored_and_queued(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    prepared = _prepare(session, org, context, pki.rsa, people=5, doses=2)
    signatures = _sign_all(pki.rsa, prepared.attempt)
    first = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures[:4]
    )
    session.commit()
    assert (first.signed, first.pending, first.rejections) == (4, 6, ())
    again = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures[:4]
    )
    session.commit()
    assert (again.signed, again.pending) == (4, 6)  # posting a chunk twice stores nothing twice
    rest = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 4, signatures[4:]
    )
    session.commit()
    assert (rest.signed, rest.rejected, rest.pending) == (10, 0, 0)

    assert session.scalar(select(func.count()).select_from(DoseSignature)) == 10
    assert session.scalar(select(func.count()).select_from(PassportQueueEntry)) == 10
    for item in session.scalars(
        select(SigningBatchItem).where(SigningBatchItem.batch_id == prepared.batch_id)
    ):
        assert item.state is ItemState.SIGNED
        assert item.cms is not None
        signer_cert = cms.verify_detached(item.cms, item.document)
        assert signer_cert == pki.rsa.certificate

    done = batches.complete(session, org.officer, prepared.batch_id)
    session.commit()
    assert done.status is BatchStatus.COMPLETED
    assert batches.complete(session, org.officer, prepared.batch_id) == done  # idempotent


def test_a_wrong_signature_is_rejected_per_record(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    prepared = _prepare(session, org, context, pki.p256, people=3, doses=2)
    signatures = _sign_all(pki.p256, prepared.attempt)
    signatures[1] = pki.stranger.sign(prepared.attempt.digests[1])  # another key
    signatures[2], signatures[3] = signatures[3], signatures[2]  # over other bytes
    signatures[4] = signatures[4][:-1]  # not even a signature
    progress = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures
    )
    session.commit()
    assert (progress.signed, progress.rejected) == (2, 4)
    assert {r.position: r.reason for r in progress.rejections} == {
        p: RejectReason.SIGNATURE_INVALID for p in (1, 2, 3, 4)
    }
    outcome = batches.result(session, org.officer, prepared.batch_id)
    assert [r.position for r in outcome.rejected] == [1, 2, 3, 4]
    assert "chứng thư số" in outcome.rejected[0].text("vi")
    assert session.scalar(select(func.count()).select_from(DoseSignature)) == 2


def test_a_dose_edited_after_preparation_is_not_signed_stale(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    prepared = _prepare(session, org, context, pki.rsa, people=2, doses=1)
    item = session.scalar(
        select(SigningBatchItem).where(
            SigningBatchItem.batch_id == prepared.batch_id, SigningBatchItem.position == 0
        )
    )
    assert item is not None
    dose = session.get(Dose, item.dose_id)
    assert dose is not None
    dose.lot = "EDITED"
    dose.version += 1
    session.commit()
    progress = batches.accept_signatures(
        session,
        org.officer,
        prepared.batch_id,
        prepared.attempt.id,
        0,
        _sign_all(pki.rsa, prepared.attempt),
    )
    session.commit()
    assert progress.signed == 1
    assert progress.rejections == (batches.Rejection(0, RejectReason.CHANGED),)


def test_a_certificate_unregistered_or_expired_meanwhile_rejects(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    prepared = _prepare(session, org, context, pki.rsa, people=2, doses=1)
    signatures = _sign_all(pki.rsa, prepared.attempt)
    late = pki.rsa.certificate.not_valid_after_utc + timedelta(days=1)
    expired = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures[:1], now=late
    )
    session.commit()
    assert expired.rejections == (batches.Rejection(0, RejectReason.CERTIFICATE_EXPIRED),)

    registration = active_certificate(session, org.officer)
    assert registration is not None
    deactivate_certificate(session, org.admin, registration, "lost token")
    session.commit()
    gone = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 1, signatures[1:]
    )
    session.commit()
    assert gone.rejections == (batches.Rejection(1, RejectReason.CERTIFICATE_NOT_REGISTERED),)
    assert gone.signed == 0


def test_prepare_refuses_what_must_not_be_signed(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    ids = bulk_people(session, org, 2, doses=1)
    _select(session, org.officer, _doses_of(session, ids))
    with pytest.raises(CertificateRejected):  # nothing registered
        batches.prepare(session, org.officer, pki.rsa.der, context)
    session.rollback()
    _register(session, org, pki.rsa)
    with pytest.raises(CertificateRejected):  # the token holds another certificate
        batches.prepare(session, org.officer, pki.p256.der, context)
    session.rollback()
    expired = make_signer(
        pki.ca,
        "p256",
        not_before=datetime.now(UTC) - timedelta(days=400),
        not_after=datetime.now(UTC) - timedelta(days=1),
    )
    _register(session, org, expired)
    with pytest.raises(CertificateRejected):
        batches.prepare(session, org.officer, expired.der, context)
    session.rollback()
    untrusted = make_signer(devpki.create_ca("Some Other CA"), "p256")
    _register(session, org, untrusted)
    with pytest.raises(CertificateRejected):
        batches.prepare(session, org.officer, untrusted.der, context)
    session.rollback()

    _register(session, org, pki.rsa)
    session.execute(select(SigningSelection))
    prepared = batches.prepare(session, org.officer, pki.rsa.der, context)
    session.commit()
    with pytest.raises(DomainError) as empty:  # the selection went into that batch
        batches.prepare(session, org.officer, pki.rsa.der, context)
    assert empty.value.key == "batches.nothing_selected"
    session.rollback()
    with pytest.raises(DomainError) as foreign:  # another officer's batch is not theirs
        batches.accept_signatures(
            session, org.district_officer, prepared.batch_id, prepared.attempt.id, 0, [b"x"]
        )
    assert foreign.value.key == "batches.not_found"


def test_an_interrupted_batch_resumes_without_signing_twice(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    prepared = _prepare(session, org, context, pki.p256, people=10, doses=2)
    signatures = _sign_all(pki.p256, prepared.attempt)
    batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures[:7]
    )
    session.commit()
    # The agent died; one record was edited while it was down.
    item = session.scalar(
        select(SigningBatchItem).where(
            SigningBatchItem.batch_id == prepared.batch_id, SigningBatchItem.position == 19
        )
    )
    assert item is not None
    dose = session.get(Dose, item.dose_id)
    assert dose is not None
    dose.version += 1
    session.commit()
    assert batches.complete(session, org.officer, prepared.batch_id).status is BatchStatus.OPEN

    resumed = batches.new_attempt(session, org.officer, prepared.batch_id, pki.p256.der, context)
    session.commit()
    assert resumed.id == f"{prepared.batch_id}.2"
    assert resumed.id != prepared.attempt.id
    assert list(resumed.digests) == list(prepared.attempt.digests[7:19])
    progress = batches.accept_signatures(
        session,
        org.officer,
        prepared.batch_id,
        resumed.id,
        0,
        _sign_all(pki.p256, resumed),
    )
    session.commit()
    assert (progress.signed, progress.rejected, progress.pending) == (19, 1, 0)
    assert batches.complete(session, org.officer, prepared.batch_id).status is (
        BatchStatus.COMPLETED
    )
    assert session.scalar(select(func.count()).select_from(DoseSignature)) == 19
    with pytest.raises(DomainError) as done:
        batches.new_attempt(session, org.officer, prepared.batch_id, pki.p256.der, context)
    assert done.value.key == "batches.nothing_pending"


def test_two_batches_racing_for_a_dose_sign_it_once(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    _register(session, org, pki.rsa)
    person = add_person(session, org, "Trần Thị Hoa", doses=1)
    dose_ids = _doses_of(session, [person.id])
    _select(session, org.officer, dose_ids)
    first = batches.prepare(session, org.officer, pki.rsa.der, context)
    session.commit()
    _select(session, org.officer, dose_ids)  # still unsigned: it may be ticked again
    second = batches.prepare(session, org.officer, pki.rsa.der, context)
    session.commit()
    ok = batches.accept_signatures(
        session, org.officer, first.batch_id, first.attempt.id, 0, _sign_all(pki.rsa, first.attempt)
    )
    late = batches.accept_signatures(
        session,
        org.officer,
        second.batch_id,
        second.attempt.id,
        0,
        _sign_all(pki.rsa, second.attempt),
    )
    session.commit()
    assert ok.signed == 1
    assert late.rejections == (batches.Rejection(0, RejectReason.ALREADY_SIGNED),)
    assert session.scalar(select(func.count()).select_from(DoseSignature)) == 1


def test_batch_mode_is_one_token_signature(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki, tmp_path: Path
) -> None:
    org.unit_ben_nghe.batch_mode = True
    session.commit()
    prepared = _prepare(session, org, context, pki.p256, people=6, doses=3)
    assert len(prepared.attempt.digests) == 1
    batch = session.get(SigningBatch, prepared.batch_id)
    assert batch is not None
    assert batch.mode is BatchMode.BATCH
    assert batch.document is not None
    listed = {r["id"]: r["sha256"] for r in json.loads(batch.document)["records"]}
    items = session.scalars(
        select(SigningBatchItem).where(SigningBatchItem.batch_id == batch.id)
    ).all()
    assert len(listed) == len(items) == 18
    for item in items:
        assert listed[documents.record_id(item.dose_id, item.dose_version)] == (
            hashlib.sha256(item.document).hexdigest()
        )
    progress = batches.accept_signatures(
        session,
        org.officer,
        prepared.batch_id,
        prepared.attempt.id,
        0,
        _sign_all(pki.p256, prepared.attempt),
    )
    session.commit()
    assert (progress.signed, progress.pending) == (18, 0)
    session.refresh(batch)
    assert batch.cms is not None
    assert cms.verify_detached(batch.cms, batch.document) == pki.p256.certificate

    summary = export_signed(session, batch.id, tmp_path / "out", load_trust_store(pki.anchors))
    assert summary.records == 18
    assert (tmp_path / "out" / f"batch-{batch.id}.p7s").read_bytes() == batch.cms
    assert (tmp_path / "out" / "chain.pem").exists()


def test_the_database_settles_a_race_that_passed_the_checks(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    """Two posts decided the same dose version at once, both checks saw it unsigned: the
    unique (dose, version) settles it; the loser is rejected, not stored, not queued twice."""
    first = _prepare(session, org, context, pki.rsa, people=1, doses=1)
    batch = session.get(SigningBatch, first.batch_id)
    assert batch is not None
    row = session.execute(signatures._item_rows(batch)).one()
    # Another batch stored a signature of this dose version after our checks ran.
    session.add(DoseSignature(dose_id=row.dose_id, dose_version=row.dose_version))
    session.flush()
    signatures._store_signed(session, batch, [(row, b"cms")], datetime.now(UTC))
    session.commit()
    item = session.get(SigningBatchItem, (batch.id, row.position))
    assert item is not None
    assert (item.state, item.reason) == (ItemState.REJECTED, RejectReason.ALREADY_SIGNED)
    assert (batch.signed, batch.rejected) == (0, 1)
    assert session.scalar(select(func.count()).select_from(PassportQueueEntry)) == 0


def _completions(session: Session, batch_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "signing.batch_completed", AuditEvent.target == batch_id)
        )
        or 0
    )


def test_the_last_chunk_stored_completes_the_batch_without_the_page(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    """Issue 19, 1: the page never got to post ``complete`` (the platform was down longer than
    its retries after the last chunk was stored); the batch must not stay open for good.
    Fails before the fix (status stayed open, completed_at empty, no completion audited)."""
    prepared = _prepare(session, org, context, pki.rsa, people=3, doses=2)
    signatures = _sign_all(pki.rsa, prepared.attempt)
    batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures[:4]
    )
    session.commit()
    batch = session.get(SigningBatch, prepared.batch_id)
    assert batch is not None
    assert batch.status is BatchStatus.OPEN
    last = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 4, signatures[4:]
    )
    session.commit()
    assert (last.status, last.pending) == (BatchStatus.COMPLETED, 0)
    session.expire_all()
    batch = session.get(SigningBatch, prepared.batch_id)
    assert batch is not None
    assert batch.status is BatchStatus.COMPLETED
    assert batch.completed_at is not None
    assert _completions(session, prepared.batch_id) == 1
    # The page's late ``complete`` and a replayed last chunk change nothing and audit nothing.
    assert batches.complete(session, org.officer, prepared.batch_id).status is (
        BatchStatus.COMPLETED
    )
    batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 4, signatures[4:]
    )
    session.commit()
    assert _completions(session, prepared.batch_id) == 1


def test_a_batch_left_open_with_nothing_pending_is_completed_when_listed_or_opened(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    """Issue 19, 1: a batch an older version left open with 0 pending is completed when its
    list or its page is read, once. Fails before the fix (both left it open)."""
    ids = []
    for _ in range(2):
        prepared = _prepare(session, org, context, pki.rsa, people=2, doses=1)
        batches.accept_signatures(
            session,
            org.officer,
            prepared.batch_id,
            prepared.attempt.id,
            0,
            _sign_all(pki.rsa, prepared.attempt),
        )
        session.commit()
        ids.append(prepared.batch_id)
    # As an older version left them: open, nothing pending, no completion audited.
    for batch_id in ids:
        batch = session.get(SigningBatch, batch_id)
        assert batch is not None
        batch.status, batch.completed_at = BatchStatus.OPEN, None
    session.execute(delete(AuditEvent).where(AuditEvent.action == "signing.batch_completed"))
    session.commit()

    opened = batches.result(session, org.officer, ids[0])
    session.commit()
    assert opened.batch.status is BatchStatus.COMPLETED
    listed = {b.id: b.status for b in batches.recent_batches(session, org.officer)}
    session.commit()
    assert listed[ids[0]] is listed[ids[1]] is BatchStatus.COMPLETED
    batches.recent_batches(session, org.officer)
    batches.result(session, org.officer, ids[1])
    session.commit()
    session.expire_all()
    for batch_id in ids:
        batch = session.get(SigningBatch, batch_id)
        assert batch is not None
        assert batch.completed_at is not None
        assert _completions(session, batch_id) == 1


def test_a_batch_lists_its_records_in_vietnamese_alphabetical_order(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    # the positions (the result page's and the export's order) follow the names, Đ after D
    order = ["Duy Văn Bình", "Dương Văn Minh", "Đặng Thị Hoa", "Đoàn Văn Phản", "Lê Văn An"]
    _register(session, org, pki.p256)
    people = [add_person(session, org, name, doses=1) for name in reversed(order)]
    _select(session, org.officer, [p.doses[0].id for p in people])
    prepared = batches.prepare(session, org.officer, pki.p256.der, context)
    session.commit()
    listed = session.execute(
        select(Person.full_name)
        .join(Dose, Dose.person_id == Person.id)
        .join(SigningBatchItem, SigningBatchItem.dose_id == Dose.id)
        .where(SigningBatchItem.batch_id == prepared.batch_id)
        .order_by(SigningBatchItem.position)
    ).scalars()
    assert list(listed) == order


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_post_sends_its_cms_blobs_as_one_bytea_on_postgresql(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    """psycopg quotes a ``bytea[]`` parameter element by element in Python (about a third of a
    500-signature post's CPU); the blobs go as one ``bytea`` and their offsets instead, and
    every item still gets its own CMS (P-256 signatures differ in length)."""

    prepared = _prepare(session, org, context, pki.p256, people=4, doses=2)
    signatures = _sign_all(pki.p256, prepared.attempt)
    sent: list[object] = []

    with recorded_statements(session.connection()) as seen:
        progress = batches.accept_signatures(
            session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures
        )
    for _sql, params, _many in seen:
        for batch in params if isinstance(params, list | tuple) else [params]:
            if isinstance(batch, dict):
                sent.extend(batch.values())
    session.commit()
    assert (progress.signed, progress.rejected) == (8, 0)
    assert not [v for v in sent if isinstance(v, list) and any(isinstance(b, bytes) for b in v)]
    items = session.scalars(
        select(SigningBatchItem).where(SigningBatchItem.batch_id == prepared.batch_id)
    ).all()
    assert len({item.cms for item in items}) == 8
    for item in items:
        assert item.cms is not None
        assert cms.verify_detached(item.cms, item.document) == pki.p256.certificate
