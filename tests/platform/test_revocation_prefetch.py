"""The certificate's revocation check started ahead (``revocation.prefetch``): batch preparation
reads its records while the OCSP responder answers, and nothing is decided differently for it."""

from __future__ import annotations

import hashlib
import importlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.platform_seed import Seed
from support.signing_data import bulk_people
from support.signing_keys import Signer, make_signer
from werkzeug.wrappers import Request, Response

from kyso.platform.models import Dose, SigningBatchItem
from kyso.platform.signing import batches, revocation
from kyso.platform.signing.certificates import CertificateRejected, Problem, TrustStore
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.signing.selection import add_doses
from kyso.platform.signing.validation import RevocationChecker
from kyso.platform.testpki import TestPki
from kyso.platform.users.service import active_certificate, register_certificate

ORIGIN = "https://tiemchung.example.vn"
# The module (the package re-exports its function under the same name).
prepare_module = importlib.import_module("kyso.platform.signing.batches.prepare")


def _context(pki: TestPki, checker: RevocationChecker) -> batches.SigningContext:
    return batches.SigningContext(
        trust=TrustStore.from_pem(pki.anchors_pem()),
        manifest_signer=ManifestSigner(ec.generate_private_key(ec.SECP256R1())),
        origin=ORIGIN,
        revocation=checker,
    )


def _ready(session: Session, org: Seed, signer: Signer) -> None:
    register_certificate(session, org.admin, org.officer, signer.serial)
    ids = bulk_people(session, org, 3, doses=2)
    add_doses(
        session, org.officer, list(session.scalars(select(Dose.id).where(Dose.person_id.in_(ids))))
    )
    session.commit()


def _prefetch(session: Session, org: Seed, signer: Signer, context: batches.SigningContext) -> bool:
    return revocation.prefetch(
        active_certificate(session, org.officer),
        signer.der,
        trust=context.trust,
        revocation=context.revocation,
        at=datetime.now(UTC),
    )


def _wait_idle(checker: RevocationChecker, der: bytes) -> None:
    key = hashlib.sha256(der).hexdigest()
    deadline = time.monotonic() + 20
    while checker.running(key) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checker.running(key) is None


def test_preparation_reads_its_records_while_the_responder_answers(
    session: Session, org: Seed, test_pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cold cache the OCSP request is already out when the records are read, and the
    certificate check then takes its answer: one request, not two, and no round trip added."""
    signer = make_signer(test_pki.issuing, "p256")
    _ready(session, org, signer)
    context = _context(test_pki, RevocationChecker("hard", cache_seconds=300))
    asked, release, answered = threading.Event(), threading.Event(), threading.Event()
    ocsp = test_pki._ocsp

    def held_ocsp(request_der: bytes, now: datetime) -> bytes:
        asked.set()
        release.wait(10)
        try:
            return ocsp(request_der, now)
        finally:
            answered.set()

    monkeypatch.setattr(test_pki, "_ocsp", held_ocsp)
    rows = prepare_module._certificate_rows
    seen: list[tuple[bool, bool]] = []

    def reading(*args: Any) -> Any:
        seen.append((asked.wait(10), answered.is_set()))
        try:
            return rows(*args)
        finally:
            release.set()

    monkeypatch.setattr(prepare_module, "_certificate_rows", reading)
    before = test_pki.hits["/ocsp"]
    prepared = batches.prepare(session, org.officer, signer.der, context)
    assert seen == [(True, False)]  # asked before the read, answered after it
    assert prepared.total == 6
    assert test_pki.hits["/ocsp"] - before == 1
    assert context.revocation is not None
    assert context.revocation.lookups == 1


def test_a_revoked_certificate_is_still_refused_after_a_warm_up(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "rsa")
    _ready(session, org, signer)
    revoked_at = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    test_pki.revoke(signer.certificate.serial_number, revoked_at)
    context = _context(test_pki, RevocationChecker("hard", cache_seconds=300))
    before = test_pki.hits["/ocsp"]
    assert _prefetch(session, org, signer, context)
    with pytest.raises(CertificateRejected) as caught:
        batches.prepare(session, org.officer, signer.der, context)
    assert caught.value.problem is Problem.REVOKED
    assert caught.value.persist  # the revocation date is recorded, as without the warm-up
    assert "thu hồi" in caught.value.text("vi")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(SigningBatchItem)) == 0
    assert test_pki.hits["/ocsp"] - before == 1  # the warm-up's answer was the check's


def test_a_responder_outage_met_by_a_warm_up_is_never_cached(
    session: Session, org: Seed, test_pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    _ready(session, org, signer)
    checker = RevocationChecker("hard", timeout=2, cache_seconds=300)
    context = _context(test_pki, checker)
    dispatch: Callable[[Request], Response] = test_pki._dispatch

    def down(request: Request) -> Response:
        return Response("down\n", status=503)  # neither OCSP nor the CRLs answer

    monkeypatch.setattr(test_pki, "_dispatch", down)
    assert _prefetch(session, org, signer, context)
    _wait_idle(checker, signer.der)
    with pytest.raises(CertificateRejected) as caught:
        batches.prepare(session, org.officer, signer.der, context)
    assert caught.value.problem is Problem.REVOCATION_UNAVAILABLE
    assert not caught.value.persist
    session.rollback()
    assert checker.lookups == 2  # the preparation asked again: the outage was not kept

    monkeypatch.setattr(test_pki, "_dispatch", dispatch)  # the responder is back
    prepared = batches.prepare(session, org.officer, signer.der, context)
    assert prepared.total == 6
    assert checker.lookups == 3


def test_a_warm_up_answer_expires_with_the_cache(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    """The warm-up keeps its answer no longer than any answer: with no cache time, the
    preparation asks again and sees a revocation made meanwhile."""
    signer = make_signer(test_pki.issuing, "p256")
    _ready(session, org, signer)
    checker = RevocationChecker("hard", cache_seconds=0)
    context = _context(test_pki, checker)
    assert _prefetch(session, org, signer, context)
    _wait_idle(checker, signer.der)
    test_pki.revoke(signer.certificate.serial_number)
    with pytest.raises(CertificateRejected) as caught:
        batches.prepare(session, org.officer, signer.der, context)
    assert caught.value.problem is Problem.REVOKED
    assert checker.lookups == 2


def test_no_warm_up_for_an_unregistered_or_other_certificate(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    other = make_signer(test_pki.issuing, "p256")
    context = _context(test_pki, RevocationChecker("hard"))
    assert not _prefetch(session, org, signer, context)  # nothing registered yet
    _ready(session, org, signer)
    assert not _prefetch(session, org, other, context)  # not the registered serial
    assert context.revocation is not None
    assert context.revocation.lookups == 0
