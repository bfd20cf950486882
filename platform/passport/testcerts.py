"""Test and demo certificates of the central passport keys: never for production.

The DCC Document Signer Certificates (from a test Country Signing CA, "CSCA") and the PDF
passport's document-signing certificate (from a test document root, with a CRL distribution
point and an empty CRL) that the tests' SoftHSM2 token (``tests/support/passport_hsm.py``),
the bench and ``make demo`` (``scripts/demo.py``) put next to the keys they generate on a
token. One place, so the demo's certificates are the ones the tests prove PDF readers and
verifiers accept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from kyso.agent import devpki

DOCUMENT_CRL_URL: Final = "http://crl.kyso.test/documents.crl"
SUBJECT_ORGANISATION: Final = "Cục Y tế dự phòng (test only)"

EKU_TEST: Final = ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.1")
EKU_VACCINATION: Final = ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.2")
EKU_RECOVERY: Final = ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.3")


def _subject(name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def create_csca(
    name: str = "Kyso Test CSCA Viet Nam", organisation: str = "Bộ Y tế (test only)"
) -> devpki.DevCA:
    """A test Country Signing CA for Viet Nam (EC P-256, self-signed)."""
    return devpki.create_ca(name, organisation=organisation, key_type="EC")


def issue_dsc(
    csca: devpki.DevCA,
    public_key: Any,
    *,
    name: str = "Kyso Test DSC",
    organisation: str = SUBJECT_ORGANISATION,
    eku: tuple[ObjectIdentifier, ...] | None = (EKU_VACCINATION,),
    key_usage: tuple[str, ...] = ("digitalSignature", "nonRepudiation"),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A Document Signer Certificate from the CSCA (``eku=None``: no extended key usage).

    nonRepudiation besides digitalSignature: the same key PAdES-signs the PDF passports, and
    PDF validators (pyHanko's default policy) ask for it on a document signature."""
    return devpki.issue_certificate(
        csca.key,
        csca.certificate,
        public_key,
        _subject(name, organisation),
        key_usage=key_usage,
        extended_key_usage=eku or (),
        not_before=not_before,
        not_after=not_after,
        valid_days=730,
    )


def create_document_ca(
    name: str = "Kyso Test Root (documents)", organisation: str = "Bộ Y tế (test only)"
) -> devpki.DevCA:
    """A test root for the PDF passport's document-signing certificate (EC P-256)."""
    return devpki.create_ca(name, organisation=organisation, key_type="EC")


def issue_document_certificate(
    ca: devpki.DevCA,
    public_key: Any,
    *,
    name: str = "Kyso Test PDF Signer",
    organisation: str = SUBJECT_ORGANISATION,
    eku: tuple[ObjectIdentifier, ...] | None = (
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # documentSigning (RFC 9336)
    ),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """The document-signing certificate of the PDF passports (CRL distribution point set)."""
    crl_distribution = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier(DOCUMENT_CRL_URL)], None, None, None
            )
        ]
    )
    return devpki.issue_certificate(
        ca.key,
        ca.certificate,
        public_key,
        _subject(name, organisation),
        key_usage=("digitalSignature", "nonRepudiation"),
        extended_key_usage=eku or (),
        extensions=[(crl_distribution, False)],
        not_before=not_before,
        not_after=not_after,
        valid_days=730,
    )


def issue_crl(ca: devpki.DevCA, *, days: int = 7) -> x509.CertificateRevocationList:
    """An empty CRL of ``ca`` valid ``days`` days."""
    now = datetime.now(UTC)
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
