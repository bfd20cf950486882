"""What the agent reads from a certificate, and the checks a signature or a key gets against it.

No PKCS#11 here: the DER comes from the token layer, the parsing and verification from
``cryptography``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kyso.agent.token.cryptoki import DIGEST_LENGTH
from kyso.agent.token.model import Algorithm, CertificateInfo, TokenInfo

log = logging.getLogger(__name__)

_KEY_USAGE_BITS = (
    ("digitalSignature", "digital_signature"),
    ("nonRepudiation", "content_commitment"),
    ("keyEncipherment", "key_encipherment"),
    ("dataEncipherment", "data_encipherment"),
    ("keyAgreement", "key_agreement"),
    ("keyCertSign", "key_cert_sign"),
    ("cRLSign", "crl_sign"),
)


def key_usage_names(usage: x509.KeyUsage) -> tuple[str, ...]:
    """RFC 5280 names of the bits set (encipherOnly/decipherOnly exist only with keyAgreement)."""
    names = [name for name, attribute in _KEY_USAGE_BITS if getattr(usage, attribute)]
    if usage.key_agreement:
        if usage.encipher_only:
            names.append("encipherOnly")
        if usage.decipher_only:
            names.append("decipherOnly")
    return tuple(names)


def certificate_info(token: TokenInfo, key_id: bytes, der: bytes) -> CertificateInfo | None:
    """What the agent shows and checks about a certificate; None if it cannot be used here."""
    parsed = _parse_certificate(der)
    if parsed is None:
        return None
    return CertificateInfo(token=token, key_id=key_id, der=der, **parsed)


@functools.lru_cache(maxsize=64)
def _parse_certificate(der: bytes) -> dict[str, Any] | None:
    """The DER's fields, parsed once: every batch lists the token's certificates again and
    checks its own (a few hundred microseconds each). Keyed by the whole DER, so a changed
    certificate is parsed afresh; the cached dict is only ever unpacked, never changed."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        public_key = certificate.public_key()
        try:
            usage = key_usage_names(
                certificate.extensions.get_extension_for_class(x509.KeyUsage).value
            )
        except x509.ExtensionNotFound:
            usage = ()
        subject = certificate.subject.rfc4514_string()
        issuer = certificate.issuer.rfc4514_string()
    except (ValueError, UnsupportedAlgorithm) as exc:
        log.info("ignoring a certificate the agent cannot parse: %s", exc)
        return None
    curve: str | None
    if isinstance(public_key, rsa.RSAPublicKey):
        key_type, key_size, curve = "RSA", public_key.key_size, None
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        key_type, key_size, curve = "EC", public_key.curve.key_size, public_key.curve.name
    else:
        return None  # Ed25519, DSA, ...: no algorithm of ours can use them
    return {
        "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
        "subject": subject,
        "issuer": issuer,
        "serial_hex": format(certificate.serial_number, "X"),
        "not_before": certificate.not_valid_before_utc,
        "not_after": certificate.not_valid_after_utc,
        "key_usage": usage,
        "key_type": key_type,
        "key_size": key_size,
        "curve": curve,
    }


def ec_point_encodings(public_key: ec.EllipticCurvePublicKey) -> tuple[bytes, bytes]:
    """CKA_EC_POINT as the standard wants it (DER OCTET STRING) and as some tokens store it."""
    point = public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    length = bytes([len(point)]) if len(point) < 0x80 else bytes([0x81, len(point)])
    return b"\x04" + length + point, point


def _ecdsa_der(raw: bytes) -> bytes:
    """CKM_ECDSA gives r || s (what the agent returns); ``cryptography`` verifies DER."""
    half = len(raw) >> 1
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


def verify_signature(
    certificate: CertificateInfo, algorithm: Algorithm, digest: bytes, sig: bytes
) -> bool:
    public_key = x509.load_der_x509_certificate(certificate.der).public_key()
    prehashed = Prehashed(hashes.SHA256())
    try:
        if algorithm is Algorithm.ECDSA_SHA256:
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            public_key.verify(_ecdsa_der(sig), digest, ec.ECDSA(prehashed))
        else:
            assert isinstance(public_key, rsa.RSAPublicKey)
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=DIGEST_LENGTH)
                if algorithm is Algorithm.RSA_PSS_SHA256
                else padding.PKCS1v15()
            )
            public_key.verify(sig, digest, pad, prehashed)
    except InvalidSignature:
        return False
    return True


def checked_certificate(certificate: CertificateInfo, algorithm: Algorithm) -> None:
    """The signer trusts key_type and key_size: they must be the DER's, and fit the algorithm."""
    parsed = certificate_info(certificate.token, certificate.key_id, certificate.der)
    if parsed is None or (parsed.key_type, parsed.key_size) != (
        certificate.key_type,
        certificate.key_size,
    ):
        raise ValueError("the CertificateInfo does not describe its own DER")
    if algorithm.key_type != certificate.key_type:
        raise ValueError(f"{algorithm} needs an {algorithm.key_type} key")
