"""The test PKI (kyso.platform.testpki) is a real one: OCSP, CRLs and time-stamps over HTTP."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtensionOID

from kyso.agent import devpki
from kyso.platform import testpki
from kyso.platform.testpki import TestPki


def _officer(pki: TestPki) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return pki.issuing.issue(
        key.public_key(), devpki.vn_organisation_subject("Trạm Y tế Phường Bến Nghé")
    )


def _ocsp_status(pki: TestPki, certificate: x509.Certificate) -> ocsp.OCSPResponse:
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, pki.issuing.certificate, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    answer = httpx.post(
        pki.ocsp_url,
        content=request,
        headers={"Content-Type": "application/ocsp-request"},
        timeout=10,
    )
    assert answer.status_code == 200
    return ocsp.load_der_ocsp_response(answer.content)


def test_officer_certificates_point_at_the_running_services(test_pki: TestPki) -> None:
    certificate = _officer(test_pki)
    aia = certificate.extensions.get_extension_for_oid(
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS
    ).value
    urls = {d.access_method.dotted_string: d.access_location.value for d in aia}
    assert test_pki.ocsp_url in urls.values()
    points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_url = points[0].full_name[0].value
    assert crl_url == f"{test_pki.base_url}/crl/issuing.crl"
    assert httpx.get(crl_url, timeout=10).status_code == 200
    # The issuing CA is the root's, with the root's CRL.
    certificate.verify_directly_issued_by(test_pki.issuing.certificate)
    test_pki.issuing.certificate.verify_directly_issued_by(test_pki.root.certificate)


def test_ocsp_answers_good_then_revoked_with_the_date(test_pki: TestPki) -> None:
    certificate = _officer(test_pki)
    answer = _ocsp_status(test_pki, certificate)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD

    since = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    test_pki.revoke(certificate.serial_number, since)
    answer = _ocsp_status(test_pki, certificate)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_time_utc == since
    # Signed by the delegated responder the issuing CA certified.
    responder = answer.certificates[0]
    responder.verify_directly_issued_by(test_pki.issuing.certificate)


def test_crl_lists_revoked_certificates(test_pki: TestPki) -> None:
    kept, revoked = _officer(test_pki), _officer(test_pki)
    test_pki.revoke(revoked.serial_number)
    data = httpx.get(f"{test_pki.base_url}/crl/issuing.crl", timeout=10).content
    crl = x509.load_der_x509_crl(data)
    assert crl.is_signature_valid(test_pki.issuing.key.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    assert asn1_crl.CertificateList.load(data).issuer.native["common_name"].startswith("Kyso")


def test_unknown_certificates_are_not_good(test_pki: TestPki) -> None:
    """A certificate the issuing CA's key signed but the PKI never recorded is "unknown"."""
    stranger = devpki.DevCA(test_pki.issuing.key, test_pki.issuing.certificate).issue(
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        devpki.vn_organisation_subject("Ai đó"),
    )
    assert _ocsp_status(test_pki, stranger).certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_tsa_grants_a_time_stamp(test_pki: TestPki) -> None:
    digest = hashlib.sha256(b"batch KB261204").digest()
    request = asn1_tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "cert_req": True,
        }
    )
    answer = httpx.post(
        test_pki.tsa_url,
        content=request.dump(),
        headers={"Content-Type": "application/timestamp-query"},
        timeout=10,
    )
    response = asn1_tsp.TimeStampResp.load(answer.content)
    assert response["status"]["status"].native == "granted"
    info = response["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == digest
    signer = response["time_stamp_token"]["content"]["certificates"][0].chosen
    assert isinstance(signer, asn1_x509.Certificate)
    assert abs(info["gen_time"].native - datetime.now(UTC)) < timedelta(minutes=1)


def test_revoke_command_is_seen_by_the_running_service(tmp_path: Path) -> None:
    running = testpki.start(tmp_path / "pki")
    try:
        certificate = _officer(running.pki)
        assert _ocsp_status(running.pki, certificate).certificate_status is (
            ocsp.OCSPCertStatus.GOOD
        )
        serial = format(certificate.serial_number, "X")
        spaced = " ".join(serial[i : i + 2] for i in range(0, len(serial), 2))
        assert testpki.main(["revoke", "--dir", str(tmp_path / "pki"), spaced]) == 0
        assert _ocsp_status(running.pki, certificate).certificate_status is (
            ocsp.OCSPCertStatus.REVOKED
        )
    finally:
        running.stop()
    # The PKI is kept in its folder: started again on the same port it is the same PKI.
    again = testpki.TestPki.open(tmp_path / "pki", running.pki.base_url)
    assert again.root.certificate == running.pki.root.certificate
    assert certificate.serial_number in again.revocations()


def test_malformed_ocsp_request_is_answered_not_crashed(test_pki: TestPki) -> None:
    answer = httpx.post(test_pki.ocsp_url, content=b"not der", timeout=10)
    assert answer.status_code == 200
    parsed = asn1_ocsp.OCSPResponse.load(answer.content)
    assert parsed["response_status"].native == "malformed_request"


def test_unknown_revocation_reason_is_refused(test_pki: TestPki) -> None:
    with pytest.raises(ValueError, match="reason must be one of"):
        test_pki.revoke(1, reason="bogus")


def test_the_services_parse_each_key_once_and_the_tsa_signs_with_p256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """certomancer parsed the signer's key for every answer (~130 ms for RSA-2048 under
    OpenSSL 3): the TSA managed a few tokens a second, and 3,000 signatures took minutes."""
    running = testpki.start(tmp_path / "pki")
    try:
        pki = running.pki
        assert isinstance(pki.tsa.key, ec.EllipticCurvePrivateKey)
        parsed: list[int] = []
        original = serialization.load_der_private_key

        def counting(data: bytes, *args: object, **kwargs: object) -> object:
            parsed.append(len(data))
            return original(data, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(serialization, "load_der_private_key", counting)
        for n in range(5):
            request = asn1_tsp.TimeStampReq(
                {
                    "version": "v1",
                    "message_imprint": {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "hashed_message": hashlib.sha256(bytes([n])).digest(),
                    },
                    "cert_req": True,
                }
            )
            answer = httpx.post(
                pki.tsa_url,
                content=request.dump(),
                headers={"Content-Type": "application/timestamp-query"},
                timeout=10,
            )
            status = asn1_tsp.TimeStampResp.load(answer.content)["status"]["status"].native
            assert status == "granted"
        for _ in range(3):
            _ocsp_status(pki, _officer(pki))
        assert len(parsed) <= 2  # the TSA's key and the OCSP responder's, once each
    finally:
        running.stop()
