"""The development CA: certificates shaped like a Vietnamese CA's organisation certificates."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kyso.agent import devpki


@pytest.fixture(scope="module")
def ca() -> devpki.DevCA:
    return devpki.create_ca()


def test_vietnamese_organisation_subject() -> None:
    subject = devpki.vn_organisation_subject("Trạm Y tế Phường Bến Nghé")
    assert subject.rfc4514_string() == (
        "UID=MST:0312345678,CN=Trạm Y tế Phường Bến Nghé,O=Trạm Y tế Phường Bến Nghé,"
        "L=Quận 1,ST=Hồ Chí Minh,C=VN"
    )
    uid = subject.get_attributes_for_oid(NameOID.USER_ID)
    assert uid[0].oid.dotted_string == "0.9.2342.19200300.100.1.1"
    # UTF-8 survives DER and the RFC 4514 string (the platform parses it back)
    assert "Bến Nghé".encode() in subject.public_bytes()
    parsed = x509.Name.from_rfc4514_string(subject.rfc4514_string(), {"UID": NameOID.USER_ID})
    assert parsed == subject


def test_state_body_subject_uses_the_budget_code() -> None:
    subject = devpki.vn_organisation_subject(
        "Sở Y tế Hà Nội", province="Hà Nội", locality=None, tax_code=None, budget_code="1012345"
    )
    assert subject.rfc4514_string() == (
        "UID=MNS:1012345,CN=Sở Y tế Hà Nội,O=Sở Y tế Hà Nội,ST=Hà Nội,C=VN"
    )
    with pytest.raises(ValueError, match="not both"):
        devpki.vn_organisation_subject("X", tax_code="1", budget_code="2")


def test_issued_certificate(ca: devpki.DevCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = devpki.vn_organisation_subject("Trạm Y tế Xã An Phú")
    cert = ca.issue(key.public_key(), subject)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject == subject
    assert cert.issuer == ca.certificate.subject
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.content_commitment
    assert not usage.value.key_encipherment
    now = datetime.now(UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    assert cert.serial_number > 0
    assert cert.serial_number != ca.issue(key.public_key(), subject).serial_number
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert not basic.ca


def test_issue_options(ca: devpki.DevCA) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = datetime(2021, 7, 1, tzinfo=UTC)
    cert = ca.issue(
        key.public_key(),
        devpki.vn_organisation_subject("X"),
        not_before=start,
        not_after=start + timedelta(days=30),
        key_usage=("keyEncipherment",),
        serial_number=0x1234,
    )
    assert cert.not_valid_before_utc == start
    assert cert.serial_number == 0x1234
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    bare = ca.issue(key.public_key(), devpki.vn_organisation_subject("X"), key_usage=None)
    with pytest.raises(x509.ExtensionNotFound):
        bare.extensions.get_extension_for_class(x509.KeyUsage)
    with pytest.raises(ValueError, match="unknown key usage"):
        devpki.key_usage_extension(["signing"])


def test_rsa_ca_and_pem_files(tmp_path: Path) -> None:
    ca = devpki.create_ca("Kyso RSA Root", key_type="RSA")
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    cert_path = devpki.write_pem(tmp_path / "ca.pem", ca.certificate)
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()) == ca.certificate
    key_path = devpki.write_key_pem(tmp_path / "ca.key", ca.key)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    with pytest.raises(ValueError, match="key_type"):
        devpki.create_ca(key_type="DSA")
