"""Issuing passports from the queue, without HTTP: SoftHSM keys, SQLite and PostgreSQL.

Every issued certificate is checked the way a foreign verifier would: a plain decoder written
here (base45, zlib, cbor2), the signature with ``cryptography`` and the DSC's public key, the
DCC against the EU's DCC.combined-schema.json 1.3.3 (vendored in platform/passport/data/schema,
checked against its recorded SHA-256 by test_vendored_data.py).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from datetime import UTC, date, datetime
from typing import Any

import base45  # type: ignore[import-untyped]
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from support.cms_pki import Officer, Pki, create_pki
from support.passport_data import sign_doses, sign_people
from support.passport_fixtures import *  # noqa: F403
from support.passport_fixtures import context_for
from support.passport_vectors import REPOSITORY
from support.platform_seed import Seed, add_person

from kyso.platform.models import (
    Dose,
    DoseSignature,
    IssuanceError,
    IssuanceRun,
    Passport,
    PassportQueueEntry,
    PassportState,
    RunStatus,
    SigningBatch,
    SigningBatchItem,
    VaccineProduct,
)
from kyso.platform.passport import issuance as service
from kyso.platform.passport.hsm import HsmSigner


def plain_decode(payload: str) -> tuple[dict[Any, Any], dict[Any, Any], bytes, bytes, bytes]:
    """HC1 -> (protected header, claims, protected bytes, payload bytes, signature)."""
    assert payload.startswith("HC1:")
    cose = cbor2.loads(zlib.decompress(base45.b45decode(payload[4:])))
    assert isinstance(cose, cbor2.CBORTag)
    assert cose.tag == 18
    protected, unprotected, body, signature = cose.value
    assert unprotected == {}
    return cbor2.loads(protected), cbor2.loads(body), protected, body, signature


def verify_with_cryptography(certificate: x509.Certificate, payload: str) -> dict[str, Any]:
    header, claims, protected, body, signature = plain_decode(payload)
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert header[4] == hashlib.sha256(der).digest()[:8]
    signed = cbor2.dumps(["Signature1", protected, b"", body])
    key = certificate.public_key()
    if header[1] == -7:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert len(signature) == 64
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    else:
        assert header[1] == -37
        assert isinstance(key, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        key.verify(signature, signed, pss, hashes.SHA256())
    assert claims[1] == "VN"
    issued = datetime.fromtimestamp(claims[6], UTC)
    expires = datetime.fromtimestamp(claims[4], UTC)
    assert (expires.year - issued.year) * 12 + expires.month - issued.month == 12
    dcc: dict[str, Any] = claims[-260][1]
    return dcc


def schema_validator() -> Draft202012Validator:
    path = REPOSITORY / "platform" / "passport" / "data" / "schema" / "DCC.combined-schema.json"
    return Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))


def _people(session: Session, org: Seed) -> list[int]:
    names = ["Nguyễn Văn An", "Trần Thị Đào", "Lê Hoàng Ưng"]
    people = [
        add_person(
            session,
            org,
            name,
            identity_number=f"07909012345{i}",
            birth_date=date(1990, 5, 17 + i),
        ).id
        for i, name in enumerate(names)
    ]
    session.commit()
    return people


def test_every_queued_certificate_is_issued_and_verifies(
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    central_signer: HsmSigner,
    issue: Any,
) -> None:
    people = _people(session, org)
    sign_people(session, org, facility_pki, facility_officer, people)
    summary = issue(context_for(central_signer, facility_pki))
    assert (summary.issued, summary.failed, summary.claimed) == (3, 0, 6)
    assert summary.status is RunStatus.FINISHED
    session.expire_all()
    run = session.get(IssuanceRun, summary.run_id)
    assert run is not None
    assert (run.issued, run.claimed, run.status) == (3, 6, RunStatus.FINISHED)
    states = session.scalars(select(PassportQueueEntry.state)).all()
    assert states == [PassportState.ISSUED] * 6

    validator = schema_validator()
    passports = session.scalars(select(Passport).order_by(Passport.person_id)).all()
    assert [p.person_id for p in passports] == people
    for passport in passports:
        dcc = verify_with_cryptography(central_signer.certificate, passport.payload)
        assert list(validator.iter_errors(dcc)) == []
        assert dcc == passport.dcc
        (vaccination,) = dcc["v"]
        assert (vaccination["dn"], vaccination["sd"], vaccination["dt"]) == (2, 2, "2022-03-29")
        assert vaccination["ci"] == passport.uvci
        assert passport.uvci.startswith("URN:UVCI:01:VN:")
        assert len(passport.uvci) == 47
        assert (vaccination["mp"], vaccination["ma"]) == ("EU/1/20/1528", "ORG-100030215")
        assert vaccination["vp"] == "1119349007"  # the seed's ATC J07BN01 is no DCC code
        assert passport.algorithm == central_signer.algorithm
        assert passport.signature_id is not None
        assert passport.superseded_at is None
    names = [(p.dcc["nam"]["fnt"], p.dcc["nam"]["gnt"]) for p in passports]
    assert names == [("NGUYEN", "VAN<AN"), ("TRAN", "THI<DAO"), ("LE", "HOANG<UNG")]
    assert passports[1].dcc["nam"]["gn"] == "Thị Đào"


def test_batch_mode_proof_is_verified(
    session: Session, org: Seed, facility_pki: Pki, facility_officer: Officer, issue: Any
) -> None:
    people = _people(session, org)
    signed = sign_people(session, org, facility_pki, facility_officer, people, batch_mode=True)
    batch = session.get(SigningBatch, signed.batch_id)
    assert batch is not None
    assert batch.cms is not None
    summary = issue()
    assert (summary.issued, summary.failed) == (3, 0)


def test_a_tampered_facility_signature_fails_that_person_only(
    session: Session, org: Seed, facility_pki: Pki, facility_officer: Officer, issue: Any
) -> None:
    people = _people(session, org)
    sign_people(session, org, facility_pki, facility_officer, people)
    # The second person's latest signed document is changed after signing.
    item = session.scalars(
        select(SigningBatchItem)
        .where(SigningBatchItem.person_id == people[1])
        .order_by(SigningBatchItem.position.desc())
    ).first()
    assert item is not None
    item.document = item.document.replace(b"Tr\xe1\xba\xa7n", b"Tr\xe1\xba\xa5n")
    session.commit()
    summary = issue()
    assert (summary.issued, summary.failed) == (2, 2)
    errors = session.scalars(select(IssuanceError)).all()
    assert {e.code for e in errors} == {"signature_invalid"}
    assert {e.person_id for e in errors} == {people[1]}
    assert session.scalar(select(func.count()).select_from(Passport)) == 2
    shown = service.recent_errors(session)
    assert {r.person_name for r in shown} == {"Trần Thị Đào"}
    # Once fixed, a retry issues it.
    item.document = item.document.replace(b"Tr\xe1\xba\xa5n", b"Tr\xe1\xba\xa7n")
    assert service.retry_failed(session) == 2
    session.commit()
    assert issue().issued == 1
    assert service.recent_errors(session) == []


def test_a_tampered_batch_document_fails(
    session: Session, org: Seed, facility_pki: Pki, facility_officer: Officer, issue: Any
) -> None:
    people = _people(session, org)
    signed = sign_people(session, org, facility_pki, facility_officer, people, batch_mode=True)
    # A record's document changed: its SHA-256 no longer matches the signed batch list.
    (item,) = [
        i
        for i in session.scalars(
            select(SigningBatchItem).where(
                SigningBatchItem.batch_id == signed.batch_id,
                SigningBatchItem.person_id == people[0],
            )
        )
        if b'"lot":"FK1002"' in i.document
    ]
    item.document = item.document.replace(b'"lot":"FK1002"', b'"lot":"FK9999"')
    session.commit()
    summary = issue()
    assert (summary.issued, summary.failed) == (2, 2)
    codes = set(session.scalars(select(IssuanceError.code)))
    assert codes == {"signature_invalid"}


def test_a_certificate_outside_the_trust_anchors_is_refused(
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    central_signer: HsmSigner,
    issue: Any,
) -> None:
    people = _people(session, org)
    sign_people(session, org, facility_pki, facility_officer, people[:1])
    other = create_pki("Another Root CA")
    summary = issue(context_for(central_signer, other))
    assert (summary.issued, summary.failed) == (0, 2)
    error = session.scalars(select(IssuanceError)).first()
    assert error is not None
    assert error.code == "certificate_rejected"
    assert error.values == {"record": error.values["record"], "problem": "untrusted"}


def test_an_unknown_product_is_explained(
    session: Session, org: Seed, facility_pki: Pki, facility_officer: Officer, issue: Any
) -> None:
    made_up = VaccineProduct(
        code="KYSO-TEST-1",
        name="Not a DCC product",
        manufacturer_code="ORG-100030215",
        prophylaxis_code="1119349007",
    )
    session.add(made_up)
    person = add_person(session, org, "Phạm Minh Châu", doses=1)
    session.execute(update(Dose).where(Dose.person_id == person.id).values(product_id=made_up.id))
    session.commit()
    sign_people(session, org, facility_pki, facility_officer, [person.id])
    summary = issue()
    assert (summary.issued, summary.failed) == (0, 1)
    error = session.scalars(select(IssuanceError)).one()
    assert (error.code, error.values["value"]) == ("unknown_product", "KYSO-TEST-1")


def test_nothing_is_issued_twice_and_a_later_dose_supersedes(
    session: Session, org: Seed, facility_pki: Pki, facility_officer: Officer, issue: Any
) -> None:
    person = add_person(session, org, "Võ Thị Sáu", doses=3)
    session.commit()
    doses = session.scalars(
        select(Dose).where(Dose.person_id == person.id).order_by(Dose.dose_number)
    ).all()
    sign_doses(session, org, facility_pki, facility_officer, [d.id for d in doses[:2]])
    first = issue()
    assert (first.issued, first.claimed) == (1, 2)
    again = issue()
    assert (again.issued, again.claimed) == (0, 0)
    old = session.scalars(select(Passport)).one()
    assert old.dcc["v"][0]["dn"] == 2

    sign_doses(session, org, facility_pki, facility_officer, [doses[2].id])
    later = issue()
    assert later.issued == 1
    session.expire_all()
    passports = service.history(session, person.id)
    assert len(passports) == 2
    new, previous = passports
    assert new.dcc["v"][0]["dn"] == 3
    assert new.dcc["v"][0]["sd"] == 3
    assert new.superseded_at is None
    assert previous.id == old.id
    assert previous.superseded_by == new.id
    assert previous.superseded_at is not None
    assert previous.uvci != new.uvci


def test_supersede_for_person_keeps_history_and_reissues(
    session: Session, org: Seed, facility_pki: Pki, facility_officer: Officer, issue: Any
) -> None:
    people = _people(session, org)
    sign_people(session, org, facility_pki, facility_officer, people)
    issue()
    before = session.scalars(select(Passport).where(Passport.person_id == people[0])).one()

    result = service.supersede_for_person(session, people[0], "name corrected", reissue=True)
    session.commit()
    assert result.superseded == (before.id,)
    assert result.requeued is not None
    session.expire_all()
    marked = session.get(Passport, before.id)
    assert marked is not None
    assert marked.superseded_at is not None
    assert marked.superseded_reason == "name corrected"
    assert marked.superseded_by is None

    summary = issue()
    assert summary.issued == 1
    session.expire_all()
    passports = service.history(session, people[0])
    assert [p.id for p in passports][1] == before.id
    assert passports[1].superseded_by == passports[0].id
    assert passports[0].superseded_at is None
    assert session.scalar(select(func.count()).select_from(Passport)) == 4  # none deleted


def test_supersede_without_reissue_waits_for_the_new_signature(
    session: Session, org: Seed, facility_pki: Pki, facility_officer: Officer, issue: Any
) -> None:
    people = _people(session, org)
    sign_people(session, org, facility_pki, facility_officer, people[:1])
    issue()
    result = service.supersede_for_person(session, people[0], "dose date corrected")
    session.commit()
    assert result.requeued is None
    assert issue().issued == 0  # nothing new was signed
    # The correction: the dose is edited, its old signature superseded, and it is signed again.
    dose = session.scalars(
        select(Dose).where(Dose.person_id == people[0]).order_by(Dose.dose_number.desc())
    ).first()
    assert dose is not None
    session.execute(
        update(DoseSignature)
        .where(DoseSignature.dose_id == dose.id)
        .values(superseded_at=datetime.now(UTC))
    )
    dose.vaccinated_on = date(2022, 3, 30)
    dose.version += 1
    session.commit()
    sign_doses(session, org, facility_pki, facility_officer, [dose.id])
    assert issue().issued == 1
    passports = service.history(session, people[0])
    assert passports[0].dcc["v"][0]["dt"] == "2022-03-30"
    assert passports[1].superseded_by == passports[0].id


def test_queue_counts(
    session: Session, org: Seed, facility_pki: Pki, facility_officer: Officer, issue: Any
) -> None:
    people = _people(session, org)
    sign_people(session, org, facility_pki, facility_officer, people)
    counts = service.queue_counts(session)
    assert (counts.pending, counts.issued, counts.failed, counts.passports) == (6, 0, 0, 0)
    issue(limit=2)
    counts = service.queue_counts(session)
    assert counts.pending == 4
    assert counts.passports == 1
    issue()
    counts = service.queue_counts(session)
    assert (counts.pending, counts.issued, counts.passports) == (0, 6, 3)
    runs = service.recent_runs(session)
    assert [r.issued for r in runs] == [2, 1]
