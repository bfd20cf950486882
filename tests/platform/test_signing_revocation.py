"""Officers' certificates checked for revocation (OCSP/CRL of the test PKI, over HTTP), for the
organisation they sign for, and compromised tokens: issue 14's rules, without HTTP views."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import Seed
from support.signing_data import bulk_people
from support.signing_keys import Signer, make_signer

from kyso.agent import devpki
from kyso.platform.cli import main
from kyso.platform.errors import DomainError
from kyso.platform.models import (
    AuditEvent,
    Dose,
    DoseSignature,
    ItemState,
    RejectReason,
    SigningBatchItem,
    SigningCertificate,
    SigningUnit,
)
from kyso.platform.signing import batches, certificates, revocation
from kyso.platform.signing.certificates import (
    VIETNAM_TIME,
    CertificateRejected,
    Problem,
    TrustStore,
    check_certificate,
)
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.signing.selection import add_doses
from kyso.platform.signing.validation import RevocationChecker, revocation_checker
from kyso.platform.testpki import TestPki
from kyso.platform.users.service import active_certificate, register_certificate

ORIGIN = "https://tiemchung.example.vn"
PEM = serialization.Encoding.PEM


def _context(pki: TestPki, checker: RevocationChecker | None = None) -> batches.SigningContext:
    return batches.SigningContext(
        trust=TrustStore.from_pem(pki.anchors_pem()),
        manifest_signer=ManifestSigner(ec.generate_private_key(ec.SECP256R1())),
        origin=ORIGIN,
        revocation=checker if checker is not None else RevocationChecker("hard"),
    )


def _ready(session: Session, org: Seed, signer: Signer, people: int = 3) -> list[int]:
    register_certificate(session, org.admin, org.officer, signer.serial)
    ids = bulk_people(session, org, people, doses=2)
    doses = list(session.scalars(select(Dose.id).where(Dose.person_id.in_(ids))))
    add_doses(session, org.officer, doses)
    session.commit()
    return doses


def _sign(signer: Signer, attempt: batches.Attempt) -> Sequence[bytes]:
    return [signer.sign(d) for d in attempt.digests]


def test_revoked_certificate_is_refused_at_preparation_with_its_date(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    _ready(session, org, signer)
    revoked_at = datetime(2026, 11, 20, 3, 15, tzinfo=UTC)
    test_pki.revoke(signer.certificate.serial_number, revoked_at)

    with pytest.raises(CertificateRejected) as caught:
        batches.prepare(session, org.officer, signer.der, _context(test_pki))
    error = caught.value
    assert error.problem is Problem.REVOKED
    vi = error.text("vi")
    assert "đã bị thu hồi từ 10:15 ngày 20/11/2026 (giờ Việt Nam)" in vi
    assert "Trạm Y tế Phường Bến Nghé" in vi  # the certificate is named
    assert "2026-11-20 at 10:15" in error.text("en")
    # The CA's revocation date is recorded on the registration (the caller commits it).
    assert error.persist
    session.commit()
    registration = active_certificate(session, org.officer)
    assert registration is not None
    assert registration.compromised_from is not None
    assert registration.compromised_from.replace(tzinfo=UTC) == revoked_at
    assert registration.compromised_source == "ca"
    assert session.scalar(select(func.count()).select_from(SigningBatchItem)) == 0


def test_revoked_between_preparation_and_completion_rejects_the_signatures(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "rsa")
    _ready(session, org, signer)
    context = _context(test_pki, RevocationChecker("hard", cache_seconds=0))
    prepared = batches.prepare(session, org.officer, signer.der, context)
    session.commit()

    test_pki.revoke(signer.certificate.serial_number)
    progress = batches.accept_signatures(
        session,
        org.officer,
        prepared.batch_id,
        prepared.attempt.id,
        0,
        _sign(signer, prepared.attempt),
        context=context,
    )
    session.commit()
    assert progress.signed == 0
    assert progress.rejected == prepared.total
    assert {r.reason for r in progress.rejections} == {RejectReason.CERTIFICATE_REVOKED}
    assert session.scalar(select(func.count()).select_from(DoseSignature)) == 0
    reasons = set(
        session.scalars(
            select(SigningBatchItem.reason).where(SigningBatchItem.state == ItemState.REJECTED)
        )
    )
    assert reasons == {RejectReason.CERTIFICATE_REVOKED}
    assert "thu hồi" in batches.reason_text(RejectReason.CERTIFICATE_REVOKED, "vi")


def test_one_ocsp_request_serves_the_whole_batch(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    _ready(session, org, signer, people=6)
    context = _context(test_pki, RevocationChecker("hard", cache_seconds=300))
    before = test_pki.hits["/ocsp"]
    prepared = batches.prepare(session, org.officer, signer.der, context)
    session.commit()
    signatures = _sign(signer, prepared.attempt)
    for offset in range(0, len(signatures), 4):  # chunks, as the page posts them
        batches.accept_signatures(
            session,
            org.officer,
            prepared.batch_id,
            prepared.attempt.id,
            offset,
            signatures[offset : offset + 4],
            context=context,
        )
        session.commit()
    assert batches.complete(session, org.officer, prepared.batch_id).signed == prepared.total
    assert test_pki.hits["/ocsp"] - before == 1


def test_preparation_validates_the_certificate_path_once(
    session: Session, org: Seed, test_pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Path validation with revocation is the costly part of preparing a batch: it runs once
    (it ran twice, once with revocation and once without, before)."""
    signer = make_signer(test_pki.issuing, "p256")
    _ready(session, org, signer)
    context = _context(test_pki, RevocationChecker("hard", cache_seconds=300))
    validations: list[object] = []
    validate = certificates.validate_path

    def counted(*args: Any, **kwargs: Any) -> Any:
        validations.append(args[0])
        return validate(*args, **kwargs)

    monkeypatch.setattr(certificates, "validate_path", counted)
    batches.inspect_certificate(session, org.officer, signer.der, context)
    assert len(validations) == 1
    batches.prepare(session, org.officer, signer.der, context)
    assert len(validations) == 2


def test_certificate_of_another_organisation_is_refused(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    """Bến Nghé's unit cannot be signed for with Quận 3's token (nor can Quận 1's with
    Bến Nghé's): the subject's MST and O must be the unit's."""
    key = ec.generate_private_key(ec.SECP256R1())
    other = Signer(
        key,
        test_pki.issuing.issue(
            key.public_key(),
            devpki.vn_organisation_subject(
                "Trung tâm Y tế Quận 3", locality="Quận 3", tax_code="0301234567"
            ),
        ),
    )
    _ready(session, org, other)
    with pytest.raises(CertificateRejected) as caught:
        batches.prepare(session, org.officer, other.der, _context(test_pki))
    assert caught.value.problem is Problem.WRONG_ORGANISATION
    vi = caught.value.text("vi")
    assert "“Trung tâm Y tế Quận 3” (MST 0301234567)" in vi
    assert "“Trạm Y tế Phường Bến Nghé” (MST 0312345678)" in vi

    # Same tax code, another organisation name: refused too.
    renamed = Signer(
        key,
        test_pki.issuing.issue(
            key.public_key(), devpki.vn_organisation_subject("Trạm Y tế Phường Bến Thành")
        ),
    )
    register_certificate(session, org.admin, org.officer, renamed.serial)
    session.commit()
    with pytest.raises(CertificateRejected) as caught:
        batches.prepare(session, org.officer, renamed.der, _context(test_pki))
    assert caught.value.problem is Problem.WRONG_ORGANISATION


def test_unit_without_tax_code_accepts_no_certificate(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    _ready(session, org, signer)
    org.unit_ben_nghe.tax_code = None
    session.commit()
    with pytest.raises(CertificateRejected) as caught:
        batches.prepare(session, org.officer, signer.der, _context(test_pki))
    assert caught.value.problem is Problem.WRONG_ORGANISATION
    assert "(MST —)" in caught.value.text("vi")


@pytest.fixture(scope="module")
def dead_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A PKI whose OCSP responder and CRLs are at an address where nothing listens."""
    return TestPki.create(tmp_path_factory.mktemp("dead-pki"), "http://127.0.0.1:9")


def test_unreachable_responder_refuses_under_hard_policy_and_passes_under_soft(
    session: Session, org: Seed, dead_pki: TestPki
) -> None:
    signer = make_signer(dead_pki.issuing, "p256")
    _ready(session, org, signer)
    checker = RevocationChecker("hard", timeout=1)
    with pytest.raises(CertificateRejected) as caught:
        batches.prepare(session, org.officer, signer.der, _context(dead_pki, checker))
    assert caught.value.problem is Problem.REVOCATION_UNAVAILABLE
    assert "không trả lời" in caught.value.text("vi")
    assert not caught.value.persist
    session.rollback()
    # Not cached: the next attempt asks again; under "soft" it is accepted.
    soft = RevocationChecker("soft", timeout=1)
    prepared = batches.prepare(session, org.officer, signer.der, _context(dead_pki, soft))
    assert prepared.total == 6


def test_policy_comes_from_the_settings() -> None:
    assert revocation_checker({}).policy == "hard"
    checker = revocation_checker(
        {
            "REVOCATION_POLICY": "SOFT",
            "REVOCATION_TIMEOUT": "2.5",
            "REVOCATION_CACHE_SECONDS": 0,
        }
    )
    assert (checker.policy, checker.timeout, checker.cache_seconds) == ("soft", 2.5, 0)
    with pytest.raises(ValueError, match="hard, soft or off"):
        revocation_checker({"REVOCATION_POLICY": "lenient"})


def _signed_batch(
    session: Session, org: Seed, signer: Signer, pki: TestPki, at: datetime, people: int
) -> str:
    ids = bulk_people(session, org, people, doses=1)
    add_doses(
        session, org.officer, list(session.scalars(select(Dose.id).where(Dose.person_id.in_(ids))))
    )
    session.commit()
    prepared = batches.prepare(session, org.officer, signer.der, _context(pki), now=at)
    batches.accept_signatures(
        session,
        org.officer,
        prepared.batch_id,
        prepared.attempt.id,
        0,
        _sign(signer, prepared.attempt),
        now=at,
    )
    batches.complete(session, org.officer, prepared.batch_id, now=at)
    session.commit()
    return prepared.batch_id


def test_compromised_from_a_date_flags_later_batches_and_unsigns_their_doses(
    session: Session, org: Seed, test_pki: TestPki, tmp_path: Path
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    register_certificate(session, org.admin, org.officer, signer.serial)
    session.commit()
    now = datetime.now(UTC).replace(microsecond=0)
    before = _signed_batch(session, org, signer, test_pki, now - timedelta(hours=3), 2)
    after = _signed_batch(session, org, signer, test_pki, now - timedelta(minutes=30), 3)
    assert revocation.flagged(session, [before, after]) == set()

    registration = active_certificate(session, org.officer)
    assert registration is not None
    result = revocation.mark_compromised(
        session,
        registration,
        now - timedelta(hours=1),
        source=revocation.SOURCE_ADMINISTRATOR,
        actor=org.admin,
    )
    session.commit()
    assert (result.signatures, result.people) == (3, 3)
    assert revocation.flagged(session, [before, after]) == {after}

    def current(batch_id: str) -> int:
        return int(
            session.scalar(
                select(func.count())
                .select_from(DoseSignature)
                .join(SigningBatchItem, SigningBatchItem.signature_id == DoseSignature.id)
                .where(
                    SigningBatchItem.batch_id == batch_id,
                    DoseSignature.superseded_at.is_(None),
                )
            )
            or 0
        )

    # The later batch's doses are back to "cần ký lại"; the earlier batch stands.
    assert current(after) == 0
    assert current(before) == 2
    # Signing again with the compromised certificate is refused.
    with pytest.raises(DomainError) as caught:
        batches.prepare(session, org.officer, signer.der, _context(test_pki))
    assert caught.value.key == "revocation.compromised"
    assert "bị lộ từ" in caught.value.text("vi")
    # An earlier date later reported by the CA moves the date back; a later one does not.
    stored = session.get(SigningCertificate, registration.id)
    assert stored is not None
    assert stored.compromised_source == "administrator"


# --- registration ("Đăng ký chứng thư số") with the certificate itself -------------------------


def _register_page(
    app: Flask, client: FlaskClient, org: Seed, pki: TestPki, signer: Signer, tmp_path: Path
) -> tuple[int, str]:
    app.config["TRUST_ANCHORS"] = str(pki.write_anchors(tmp_path / "anchors.pem"))
    login(client, org.admin.username)
    path = f"/users/{org.officer.id}/certificate"
    answer = client.post(
        path,
        data={
            "csrf_token": csrf_token(client, path),
            "serial": "",
            "certificate_file": (io.BytesIO(signer.certificate.public_bytes(PEM)), "token.cer"),
        },
        content_type="multipart/form-data",
    )
    return answer.status_code, answer.get_data(as_text=True)


def test_revoked_certificate_is_refused_at_registration(
    app: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    test_pki: TestPki,
    tmp_path: Path,
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    test_pki.revoke(signer.certificate.serial_number, datetime(2026, 10, 1, 1, 0, tzinfo=UTC))
    status, page = _register_page(app, client, org, test_pki, signer, tmp_path)
    assert status == 400
    assert "đã bị thu hồi từ 08:00 ngày 01/10/2026" in html.unescape(page)
    session.expire_all()
    assert active_certificate(session, org.officer) is None
    refused = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "certificate.register_refused")
    ).one()
    assert refused.detail is not None
    assert refused.detail["reason"] == "revoked"


def test_certificate_of_another_organisation_is_refused_at_registration(
    app: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    test_pki: TestPki,
    tmp_path: Path,
) -> None:
    subject = devpki.vn_organisation_subject("Trung tâm Y tế Quận 3", tax_code="0301234567")
    signer = make_signer(test_pki.issuing, "p256", subject)
    status, page = _register_page(app, client, org, test_pki, signer, tmp_path)
    assert status == 400
    text = html.unescape(page)
    assert "“Trung tâm Y tế Quận 3” (MST 0301234567)" in text
    assert "“Trạm Y tế Phường Bến Nghé” (MST 0312345678)" in text
    session.expire_all()
    assert active_certificate(session, org.officer) is None


def test_good_certificate_is_registered_with_its_details(
    app: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    test_pki: TestPki,
    tmp_path: Path,
) -> None:
    signer = make_signer(test_pki.issuing, "rsa")
    status, _ = _register_page(app, client, org, test_pki, signer, tmp_path)
    assert status == 302
    session.expire_all()
    registration = active_certificate(session, org.officer)
    assert registration is not None
    assert registration.serial_hex == signer.serial
    assert registration.der == signer.der


def test_administrator_marks_a_token_compromised_and_the_batch_list_flags_it(
    app: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    test_pki: TestPki,
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    register_certificate(session, org.admin, org.officer, signer.serial)
    session.commit()
    now = datetime.now(UTC).replace(microsecond=0)
    kept = _signed_batch(session, org, signer, test_pki, now - timedelta(hours=5), 1)
    later = _signed_batch(session, org, signer, test_pki, now - timedelta(minutes=20), 2)
    registration = active_certificate(session, org.officer)
    assert registration is not None

    login(client, org.admin.username)
    path = f"/users/{org.officer.id}/certificate"
    since = (now - timedelta(hours=1)).astimezone(VIETNAM_TIME)
    answer = client.post(
        f"/users/{org.officer.id}/certificates/{registration.id}/compromised",
        data={"csrf_token": csrf_token(client, path), "since": since.strftime("%d/%m/%Y %H:%M")},
        follow_redirects=True,
    )
    text = html.unescape(answer.get_data(as_text=True))
    assert "2 chữ ký từ thời điểm đó bị hủy hiệu lực" in text
    assert f"Đã ghi nhận bị lộ từ {since:%d/%m/%Y %H:%M}" in text
    session.expire_all()
    stored = session.get(SigningCertificate, registration.id)
    assert stored is not None
    assert stored.compromised_source == "administrator"

    client = app.test_client()  # the officer, in a browser of their own
    login(client, org.officer.username)
    rows = {
        batch_id: row
        for row in html.unescape(client.get("/signing/batches").get_data(as_text=True)).split(
            "<tr>"
        )
        for batch_id in (kept, later)
        if batch_id in row
    }
    assert "Ký bằng chứng thư số bị lộ/thu hồi" in rows[later]
    assert "Ký bằng chứng thư số bị lộ/thu hồi" not in rows[kept]


def test_the_compromised_from_field_is_a_vietnamese_date_and_time(
    client: FlaskClient, session: Session, org: Seed, test_pki: TestPki
) -> None:
    """Issue 17: no date field depends on the browser's locale (a datetime-local input shows
    mm/dd/yyyy in an English Chromium): dd/mm/yyyy hh:mm typed, read in Vietnam time, and a day
    that does not exist is refused, not moved."""
    signer = make_signer(test_pki.issuing, "p256")
    register_certificate(session, org.admin, org.officer, signer.serial)
    session.commit()
    login(client, org.admin.username)
    page = client.get(f"/users/{org.officer.id}/certificate").get_data(as_text=True)
    field = re.search(r'<input[^>]*name="since"[^>]*>', page)
    assert field is not None
    assert 'type="text"' in field[0]
    assert 'placeholder="dd/mm/yyyy hh:mm"' in field[0]

    vietnam = timedelta(hours=7)
    assert (
        revocation.parse_since("20/11/2026 10:15")
        == datetime(2026, 11, 20, 10, 15).replace(tzinfo=UTC) - vietnam
    )
    assert revocation.parse_since(" 2/1/2026 ") == datetime(2026, 1, 2, tzinfo=UTC) - vietnam
    assert revocation.parse_since("2026-11-20T10:15") == revocation.parse_since("20/11/2026 10:15")
    for wrong in ("", "31/02/2026 10:00", "20/11/20261 10:00", "20/11/2026 24:00", "hôm qua"):
        with pytest.raises(DomainError) as caught:
            revocation.parse_since(wrong)
        assert caught.value.key == "revocation.bad_since", wrong


def test_signing_page_warns_30_days_before_the_registered_certificate_expires(
    app: Flask, client: FlaskClient, session: Session, org: Seed, test_pki: TestPki
) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    signer = make_signer(test_pki.issuing, "p256", not_after=soon)
    registration = register_certificate(session, org.admin, org.officer, signer.serial)
    registration.not_after = signer.certificate.not_valid_after_utc  # read from the token
    session.commit()
    login(client, org.officer.username)
    page = html.unescape(client.get("/signing/").get_data(as_text=True))
    shown = soon.astimezone(VIETNAM_TIME)
    assert f"sẽ hết hạn lúc {shown:%H:%M ngày %d/%m/%Y}" in page

    # Further than 30 days away: no warning.
    registration.not_after = soon + timedelta(days=15)
    session.commit()
    page = html.unescape(client.get("/signing/").get_data(as_text=True))
    assert 'id="certificate-expiry"' not in page


def test_issuers_are_not_fetched_from_the_certificate(test_pki: TestPki) -> None:
    """Only OCSP and CRLs are fetched: a certificate whose issuer is missing from the trust
    bundle is untrusted, and its AIA "CA issuers" URL is never requested."""
    signer = make_signer(test_pki.issuing, "p256")
    before = test_pki.hits["/certs/issuing.crt"]
    with pytest.raises(CertificateRejected) as caught:
        check_certificate(
            signer.der,
            registered_serial=signer.serial,
            trust=TrustStore([test_pki.root.certificate]),
            at=datetime.now(UTC),
            revocation=RevocationChecker("hard"),
        )
    assert caught.value.problem is Problem.UNTRUSTED
    assert test_pki.hits["/certs/issuing.crt"] == before


def test_unit_tax_code_command(
    database_url: str, tmp_path: Path, session: Session, org: Seed
) -> None:
    env = {
        "DATABASE_URL": database_url,
        "KYSO_SECRET_KEY": "test",
        "KYSO_INSTANCE_PATH": str(tmp_path / "cli-instance"),
    }
    done = CliRunner().invoke(main, ["unit-tax-code", "SU-79-760", "0312345600-001"], env=env)
    assert done.exit_code == 0, done.output
    assert "SU-79-760 (Trung tâm Y tế Quận 1): tax code 0312345600-001" in done.output
    session.expire_all()
    unit = session.get(SigningUnit, org.unit_district.id)
    assert unit is not None
    assert unit.tax_code == "0312345600-001"
    wrong = CliRunner().invoke(main, ["unit-tax-code", "SU-79-760", "03123"], env=env)
    assert wrong.exit_code != 0
    assert "not well formed" in wrong.output
    unknown = CliRunner().invoke(main, ["unit-tax-code", "SU-XX", "0312345600"], env=env)
    assert "no signing unit coded “SU-XX”" in unknown.output


def _type_serial(client: FlaskClient, org: Seed, serial: str) -> tuple[int, str]:
    """The administrator types a serial on the registration page (no token, no file)."""
    path = f"/users/{org.officer.id}/certificate"
    answer = client.post(
        path,
        data={"csrf_token": csrf_token(client, path), "serial": serial},
        follow_redirects=True,
    )
    return answer.status_code, html.unescape(answer.get_data(as_text=True))


def test_typed_serial_of_a_certificate_the_ca_revoked_is_refused_at_registration(
    app: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    test_pki: TestPki,
    tmp_path: Path,
) -> None:
    """A serial typed alone names no OCSP responder; when an earlier registration bound that
    serial to its certificate, that certificate is asked about (before: registered unchecked)."""
    signer = make_signer(test_pki.issuing, "p256")
    status, _ = _register_page(app, client, org, test_pki, signer, tmp_path)  # bound, good
    assert status == 302
    other = make_signer(test_pki.issuing, "p256")
    assert _type_serial(client, org, other.serial)[0] == 200  # replaces it
    test_pki.revoke(signer.certificate.serial_number, datetime(2026, 10, 1, 1, 0, tzinfo=UTC))

    status, page = _type_serial(client, org, signer.serial)
    assert status == 400
    assert "đã bị thu hồi từ 08:00 ngày 01/10/2026" in page
    session.expire_all()
    registration = active_certificate(session, org.officer)
    assert registration is not None
    assert registration.serial_hex == other.serial  # unchanged
    refused = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "certificate.register_refused")
    ).all()
    assert [event.detail["reason"] for event in refused if event.detail] == ["revoked"]


def test_typed_serial_of_a_compromised_certificate_is_refused_at_registration(
    client: FlaskClient, session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    registration = register_certificate(session, org.admin, org.officer, signer.serial)
    since = datetime(2026, 11, 20, 3, 15, tzinfo=UTC)
    revocation.mark_compromised(
        session, registration, since, source=revocation.SOURCE_ADMINISTRATOR, actor=org.admin
    )
    register_certificate(
        session, org.admin, org.officer, make_signer(test_pki.issuing, "rsa").serial
    )
    session.commit()

    login(client, org.admin.username)
    status, page = _type_serial(client, org, signer.serial)
    assert status == 400
    assert f"(số serial {signer.serial}) đã được báo là bị lộ từ 10:15 ngày 20/11/2026" in page
    session.expire_all()
    current = active_certificate(session, org.officer)
    assert current is not None
    assert current.serial_hex != signer.serial
    with pytest.raises(DomainError) as raised:  # the command line and any caller alike
        register_certificate(session, org.admin, org.officer, signer.serial)
    assert raised.value.key == "revocation.compromised"


def test_typed_serial_never_seen_is_registered_and_said_to_be_unchecked(
    client: FlaskClient, session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    login(client, org.admin.username)
    status, page = _type_serial(client, org, signer.serial)
    assert status == 200
    assert "mới được đăng ký theo số serial, nên chưa kiểm tra được chứng thư đó" in page
    session.expire_all()
    registration = active_certificate(session, org.officer)
    assert registration is not None
    assert registration.der is None  # the first batch checks it (test above: at preparation)
