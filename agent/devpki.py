"""A throw-away certificate authority for tests and the demo.

It issues the kind of certificates a Vietnamese public CA puts on an officer's token (organisation
subject with the tax code in UID, digitalSignature + nonRepudiation), so the agent and the
platform can be exercised end to end without a real CA. Nothing here is used in production and
nothing here touches PKCS#11: the token side lives in ``kyso.agent.token.softhsm``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = [
    "KEY_USAGE_NAMES",
    "SIGNING_KEY_USAGE",
    "DevCA",
    "IssuerPrivateKey",
    "SubjectPublicKey",
    "create_ca",
    "issue_certificate",
    "key_usage_extension",
    "random_key_id",
    "signing_extended_key_usage",
    "vn_organisation_subject",
    "write_key_pem",
    "write_pem",
]

IssuerPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
SubjectPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# RFC 5280 names of the KeyUsage bits, in bit order, mapped to cryptography's argument names.
KEY_USAGE_NAMES: dict[str, str] = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}

# What Vietnamese CAs put in organisation signing certificates.
SIGNING_KEY_USAGE: tuple[str, ...] = ("digitalSignature", "nonRepudiation")


def key_usage_extension(names: Iterable[str]) -> x509.KeyUsage:
    """Builds a KeyUsage extension from RFC 5280 bit names (unknown names are a bug)."""
    wanted = set(names)
    unknown = wanted - KEY_USAGE_NAMES.keys()
    if unknown:
        raise ValueError(f"unknown key usage names: {sorted(unknown)}")
    flags = {arg: name in wanted for name, arg in KEY_USAGE_NAMES.items()}
    return x509.KeyUsage(**flags)


def vn_organisation_subject(
    organisation: str,
    *,
    province: str = "Hồ Chí Minh",
    locality: str | None = "Quận 1",
    tax_code: str | None = "0312345678",
    budget_code: str | None = None,
    common_name: str | None = None,
) -> x509.Name:
    """Subject as Vietnamese CAs write it for organisations.

    ``C=VN, ST=…, L=…, O=<organisation>, CN=<organisation>, UID=MST:<tax code>`` (or
    ``UID=MNS:<budget code>`` for state bodies). UID is OID 0.9.2342.19200300.100.1.1.
    """
    if tax_code is not None and budget_code is not None:
        raise ValueError("give a tax code (MST) or a budget code (MNS), not both")
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, province),
    ]
    if locality:
        attributes.append(x509.NameAttribute(NameOID.LOCALITY_NAME, locality))
    attributes += [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name or organisation),
    ]
    if tax_code is not None:
        attributes.append(x509.NameAttribute(NameOID.USER_ID, f"MST:{tax_code}"))
    elif budget_code is not None:
        attributes.append(x509.NameAttribute(NameOID.USER_ID, f"MNS:{budget_code}"))
    return x509.Name(attributes)


def _signature_hash(key: IssuerPrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


@dataclass(frozen=True)
class DevCA:
    """A root CA key and its self-signed certificate."""

    key: IssuerPrivateKey
    certificate: x509.Certificate

    @property
    def name(self) -> x509.Name:
        return self.certificate.subject

    def issue(
        self,
        public_key: SubjectPublicKey,
        subject: x509.Name,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        key_usage: Iterable[str] | None = SIGNING_KEY_USAGE,
        serial_number: int | None = None,
        extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    ) -> x509.Certificate:
        """Issues an end-entity certificate for ``public_key``.

        Validity defaults to yesterday .. one year from now. ``key_usage=None`` leaves the
        extension out (a certificate that says nothing about its use). The serial is random
        (159 bits, positive) unless given, as RFC 5280 CAs do. ``extensions``: more, as
        (extension, critical) pairs (a CA's AIA and CRL distribution point).
        """
        return issue_certificate(
            self.key,
            self.certificate,
            public_key,
            subject,
            key_usage=key_usage,
            extended_key_usage=signing_extended_key_usage(key_usage),
            extensions=extensions,
            not_before=not_before,
            not_after=not_after,
            serial_number=serial_number,
        )


def signing_extended_key_usage(key_usage: Iterable[str] | None) -> tuple[ObjectIdentifier, ...]:
    """The extended key usages an officer's signing certificate carries: clientAuth and
    emailProtection when it may sign (digitalSignature or nonRepudiation), none otherwise."""
    if key_usage is not None and {"digitalSignature", "nonRepudiation"} & set(key_usage):
        return (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION)
    return ()


def issue_certificate(
    issuer_key: IssuerPrivateKey,
    issuer: x509.Certificate | None,
    public_key: SubjectPublicKey,
    subject: x509.Name,
    *,
    ca: bool = False,
    path_length: int | None = None,
    key_usage: Iterable[str] | None = SIGNING_KEY_USAGE,
    extended_key_usage: Iterable[ObjectIdentifier] = (),
    extended_key_usage_critical: bool = False,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    valid_days: int = 365,
    serial_number: int | None = None,
    hash_algorithm: hashes.SHA256 | hashes.SHA384 | None = None,
) -> x509.Certificate:
    """The one certificate builder of the tests, the demo and the test PKIs.

    ``issuer=None`` makes a self-signed certificate (``issuer_key`` is then the subject's own
    key). Every certificate gets BasicConstraints (critical), a SubjectKeyIdentifier, an
    AuthorityKeyIdentifier when it has an issuer, KeyUsage (critical; left out when ``None``),
    ExtendedKeyUsage when any is given, then ``extensions`` as (extension, critical) pairs.
    Validity defaults to yesterday .. ``valid_days`` from now; the serial is random unless
    given; the hash follows the issuer key (SHA-384 above P-256) unless given.
    """
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial_number is None else serial_number)
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=valid_days))
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if key_usage is not None:
        builder = builder.add_extension(key_usage_extension(key_usage), critical=True)
    usages = list(extended_key_usage)
    if usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(usages), critical=extended_key_usage_critical
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hash_algorithm or _signature_hash(issuer_key))


def create_ca(
    common_name: str = "Kyso Dev Root CA",
    *,
    key_type: str = "EC",
    organisation: str = "Kyso (test only)",
    valid_days: int = 3650,
) -> DevCA:
    """Creates a self-signed root (P-256 by default, or RSA-2048 with ``key_type="RSA"``)."""
    key: IssuerPrivateKey
    if key_type == "EC":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"key_type must be 'EC' or 'RSA', not {key_type!r}")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    certificate = issue_certificate(
        key,
        None,
        key.public_key(),
        name,
        ca=True,
        path_length=0,
        key_usage=("keyCertSign", "cRLSign", "digitalSignature"),
        valid_days=valid_days,
    )
    return DevCA(key=key, certificate=certificate)


def write_pem(path: Path, *certificates: x509.Certificate) -> Path:
    """Writes one or more certificates as PEM (a chain file when several)."""
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


def write_key_pem(path: Path, key: IssuerPrivateKey, password: bytes | None = None) -> Path:
    """Writes a private key as PKCS#8 PEM, owner-readable only (dev keys still deserve it)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)
    return path


def random_key_id() -> bytes:
    """A 20-byte CKA_ID like the SHA-1 key identifiers most token tools write."""
    return secrets.token_bytes(20)
