"""CAdES-BES detached signatures (CMS ``SignedData``, RFC 5652 + ETSI EN 319 122-1).

The agent signs a SHA-256 digest and nothing else (``protocol.md`` 2.3). The platform therefore
builds the CAdES *signed attributes* of each document, and the digest the agent signs is
SHA-256 of their DER (the ``SET OF Attribute``, tag 0x31, RFC 5652 5.4):

- ``content-type`` = id-data,
- ``message-digest`` = SHA-256 of the document,
- ``signing-time`` (UTCTime, whole seconds; GeneralizedTime from 2050 on, as RFC 5652 says),
- ``signing-certificate-v2`` (RFC 5035): one ``ESSCertIDv2`` with SHA-256 of the signer
  certificate's DER (hash algorithm left at its DEFAULT, so omitted in DER) and its
  issuer and serial.

When the signature comes back, ``Assembler`` checks it against the certificate's key over
exactly those bytes and wraps it in a detached ``ContentInfo``/``SignedData`` (version 1,
``digestAlgorithms`` {sha256}, no ``eContent``, the signer certificate and its chain, one
``SignerInfo`` identified by issuer and serial number). The algorithm identifiers:

============================  =================================================================
``RSA_PKCS1_SHA256``          rsaEncryption (NULL parameters), as OpenSSL writes it
``RSA_PSS_SHA256``            id-RSASSA-PSS: SHA-256, MGF1 with SHA-256, salt 32, trailer 1
``ECDSA_SHA256``              ecdsa-with-SHA256; the agent's raw r‖s becomes DER ECDSA-Sig-Value
============================  =================================================================

SHA-256 ``AlgorithmIdentifier`` s are written without parameters (RFC 5754 2); inside the PSS
parameters with NULL (RFC 4055, and what OpenSSL writes).

Structures are defined once with ``asn1crypto`` (``signed_attributes``, ``assemble_reference``);
the per-record hot path (``AttributesBuilder.build``, ``Assembler.assemble``) fills byte
templates precomputed from those structures, and the tests check both give identical bytes.

Any verifier can check a stored signature with OpenSSL::

    openssl cms -verify -binary -inform DER -in dose-123-v2.p7s \\
        -content dose-123-v2.json -CAfile chain.pem -purpose any -out /dev/null

``-binary``: the content is bytes, not S/MIME text (no CRLF canonicalisation); ``-inform DER``:
the ``.p7s`` is DER, not PEM/S-MIME; ``-content``: the signature is detached; ``-CAfile``: the
trust anchor (the intermediates are inside the CMS, and may be in the file too); ``-purpose
any``: OpenSSL would otherwise apply its S/MIME signing purpose to the certificate's extended
key usage, which Vietnamese CAs fill in their own ways. ``openssl cms -verify`` (3.0) does not
check the ``signing-certificate-v2`` attribute; ``verify_detached`` does.

``verify_detached`` is the platform's own check of a finished ``.p7s`` (and what the central
passport issuer's side re-runs): structure, attributes, signer certificate, signature.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "Algorithm",
    "Assembler",
    "AttributesBuilder",
    "CmsError",
    "CmsInvalid",
    "SignatureInvalid",
    "SignedAttributes",
    "assemble_reference",
    "raw_ecdsa_to_der",
    "signed_attributes",
    "verify_detached",
    "verify_signature",
]

DIGEST_LENGTH: Final = 32


class Algorithm(enum.StrEnum):
    """The protocol's ``algorithm`` values (``protocol.md`` 2.3)."""

    RSA_PKCS1_SHA256 = "RSA_PKCS1_SHA256"
    RSA_PSS_SHA256 = "RSA_PSS_SHA256"
    ECDSA_SHA256 = "ECDSA_SHA256"


class CmsError(Exception):
    """Base of this module's errors. ``reason`` is a short stable code, the message says more."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SignatureInvalid(CmsError):
    """The signature is not the certificate key's over exactly the signed attributes.

    Reasons: ``length`` (not the key's signature size), ``algorithm`` (does not fit the key),
    ``mismatch`` (does not verify).
    """


class CmsInvalid(CmsError):
    """A CMS signature failed ``verify_detached``; ``reason`` says which check."""


class SignedAttributes(NamedTuple):
    der: bytes  # the DER SET OF Attribute (tag 0x31): the bytes the signature is over
    digest: bytes  # SHA-256 of ``der``: what the agent signs


# ---- DER helpers ----------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, contents: bytes) -> bytes:
    return bytes((tag,)) + _length(len(contents)) + contents


def _certificate_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the signing time must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


def raw_ecdsa_to_der(raw: bytes, key_size: int) -> bytes:
    """The agent's r‖s (P1363) as DER ``ECDSA-Sig-Value``; wrong length is ``SignatureInvalid``."""
    half = (key_size + 7) // 8
    if len(raw) != 2 * half:
        raise SignatureInvalid(
            "length",
            f"an ECDSA signature of a {key_size}-bit key is {2 * half} bytes (r‖s), not {len(raw)}",
        )
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


# ---- algorithms ------------------------------------------------------------------------------

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=DIGEST_LENGTH)

_SHA256_ID: Final[dict[str, Any]] = {"algorithm": "sha256", "parameters": None}


def _signature_algorithm(algorithm: Algorithm) -> Any:
    if algorithm is Algorithm.RSA_PKCS1_SHA256:
        return asn1_algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
    if algorithm is Algorithm.RSA_PSS_SHA256:
        # Hash identifiers inside the PSS parameters carry NULL, as RFC 4055 and OpenSSL do.
        sha256 = {"algorithm": "sha256"}
        return asn1_algos.SignedDigestAlgorithm(
            {
                "algorithm": "rsassa_pss",
                "parameters": {
                    "hash_algorithm": sha256,
                    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": sha256},
                    "salt_length": DIGEST_LENGTH,
                },
            }
        )
    return asn1_algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})


_PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def _public_key(certificate: x509.Certificate, algorithm: Algorithm) -> _PublicKey:
    key = certificate.public_key()
    wants_ec = algorithm is Algorithm.ECDSA_SHA256
    if isinstance(key, ec.EllipticCurvePublicKey) and wants_ec:
        return key
    if isinstance(key, rsa.RSAPublicKey) and not wants_ec:
        return key
    raise SignatureInvalid(
        "algorithm", f"{algorithm} cannot be used with this certificate's {_key_name(key)} key"
    )


def _key_name(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__


class _Verifier:
    """A certificate key, parsed once, checking signatures as ``algorithm`` makes them."""

    def __init__(self, certificate: x509.Certificate, algorithm: str) -> None:
        self.algorithm = Algorithm(algorithm)
        self.key = _public_key(certificate, self.algorithm)

    def der_signature(self, signature: bytes) -> bytes:
        """The signature as CMS carries it (DER for ECDSA); raises on a wrong length."""
        key = self.key
        if isinstance(key, ec.EllipticCurvePublicKey):
            return raw_ecdsa_to_der(signature, key.curve.key_size)
        size = (key.key_size + 7) // 8
        if len(signature) != size:
            raise SignatureInvalid(
                "length",
                f"an RSA-{key.key_size} signature is {size} bytes, not {len(signature)}",
            )
        return signature

    def verify_der(self, signed: bytes, der_signature: bytes) -> None:
        key = self.key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(der_signature, signed, ec.ECDSA(hashes.SHA256()))
            elif self.algorithm is Algorithm.RSA_PSS_SHA256:
                key.verify(der_signature, signed, _PSS, hashes.SHA256())
            else:
                key.verify(der_signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise SignatureInvalid(
                "mismatch",
                f"the {self.algorithm} signature does not verify with the certificate's key "
                "over the signed attributes",
            ) from None

    def verify(self, signed: bytes, signature: bytes) -> bytes:
        der = self.der_signature(signature)
        self.verify_der(signed, der)
        return der


@functools.lru_cache(maxsize=32)
def _verifier(certificate: x509.Certificate, algorithm: str) -> _Verifier:
    return _Verifier(certificate, algorithm)


def verify_signature(
    certificate: x509.Certificate, algorithm: str, signed_attrs_der: bytes, signature: bytes
) -> None:
    """Raises ``SignatureInvalid`` unless ``signature`` (as the agent returns it: raw r‖s for
    ECDSA) is the certificate key's signature over exactly ``signed_attrs_der``.

    The certificate's key is parsed once per (certificate, algorithm) and kept (LRU of 32), so
    calling this per record of a batch costs the signature check only.
    """
    _verifier(certificate, algorithm).verify(signed_attrs_der, signature)


# ---- signed attributes -------------------------------------------------------------------------


def _signing_time(moment: datetime) -> Any:
    choice = "utc_time" if 1950 <= moment.year < 2050 else "generalized_time"
    return asn1_cms.Time({choice: moment})


def _asn1_certificate(certificate: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(_certificate_der(certificate))


def _signed_attributes_asn1(
    message_digest: bytes, signing_time: datetime, certificate: x509.Certificate
) -> Any:
    cert = _asn1_certificate(certificate)
    ess_cert_id = asn1_tsp.ESSCertIDv2(
        {
            # hash_algorithm stays at its DEFAULT (sha256), which DER omits.
            "cert_hash": hashlib.sha256(cert.dump()).digest(),
            "issuer_serial": {
                "issuer": [asn1_x509.GeneralName({"directory_name": cert.issuer})],
                "serial_number": cert.serial_number,
            },
        }
    )
    return asn1_cms.CMSAttributes(
        [
            asn1_cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            asn1_cms.CMSAttribute({"type": "message_digest", "values": [message_digest]}),
            asn1_cms.CMSAttribute(
                {"type": "signing_time", "values": [_signing_time(_utc(signing_time))]}
            ),
            asn1_cms.CMSAttribute(
                {
                    "type": "signing_certificate_v2",
                    "values": [asn1_tsp.SigningCertificateV2({"certs": [ess_cert_id]})],
                }
            ),
        ]
    )


def signed_attributes(
    content: bytes, signing_time: datetime, certificate: x509.Certificate
) -> SignedAttributes:
    """The CAdES-BES signed attributes of ``content``, built with asn1crypto (the reference)."""
    der = _signed_attributes_asn1(
        hashlib.sha256(content).digest(), signing_time, certificate
    ).dump()
    return SignedAttributes(der, hashlib.sha256(der).digest())


# OID 1.2.840.113549.1.9.4 (message-digest), then SET { OCTET STRING (32) }.
_MESSAGE_DIGEST_VALUE: Final = bytes.fromhex("06092a864886f70d010904" + "3122" + "0420")


class AttributesBuilder:
    """Signed attributes for one certificate and signing time: a template and the digest.

    Only the message digest differs between the records of a batch, and it neither changes any
    length nor the DER order of the attributes (they sort by their OIDs' encodings first), so
    the DER is ``prefix + SHA-256(content) + suffix``.
    """

    def __init__(self, certificate: x509.Certificate, signing_time: datetime) -> None:
        self.certificate = certificate
        self.signing_time = _utc(signing_time)
        time_der = _signing_time(self.signing_time).dump()
        before, after, slot = _template(certificate, self.signing_time.year)
        if len(time_der) != len(slot):
            raise AssertionError("the signing time's encoding is not the slot's length")
        self._prefix = before.replace(slot, time_der, 1)
        self._suffix = after.replace(slot, time_der, 1)

    def build(self, content: bytes) -> SignedAttributes:
        der = self._prefix + hashlib.sha256(content).digest() + self._suffix
        return SignedAttributes(der, hashlib.sha256(der).digest())


# A UTCTime / GeneralizedTime no real signing time encodes to, marking where the time goes.
_UTC_SLOT: Final = _signing_time(datetime(2049, 12, 31, 23, 59, 58, tzinfo=UTC)).dump()
_GENERALIZED_SLOT: Final = _signing_time(datetime(2999, 12, 31, 23, 59, 58, tzinfo=UTC)).dump()


@functools.lru_cache(maxsize=32)
def _template(certificate: x509.Certificate, year: int) -> tuple[bytes, bytes, bytes]:
    """The signed attributes of ``certificate`` around the message digest (before, after),
    with a slot time (the third) in place of the signing time (built with asn1crypto once per
    certificate and kind of time, not once per batch). The slot is in one of the two (DER
    sorts the attributes by their encodings: signing-time's is the shorter, so first)."""
    slot = _UTC_SLOT if 1950 <= year < 2050 else _GENERALIZED_SLOT
    moment = datetime(2049 if slot is _UTC_SLOT else 2999, 12, 31, 23, 59, 58, tzinfo=UTC)
    zeros, ones = (
        _signed_attributes_asn1(bytes([fill]) * DIGEST_LENGTH, moment, certificate).dump()
        for fill in (0x00, 0xFF)
    )
    at = zeros.index(_MESSAGE_DIGEST_VALUE) + len(_MESSAGE_DIGEST_VALUE)
    prefix, suffix = zeros[:at], zeros[at + DIGEST_LENGTH :]
    if ones != prefix + b"\xff" * DIGEST_LENGTH + suffix:
        raise AssertionError("the signed attributes' layout depends on the message digest")
    if prefix.count(slot) + suffix.count(slot) != 1:
        raise AssertionError("the signing time is not in one place of the signed attributes")
    return prefix, suffix, slot


# ---- SignedData ----------------------------------------------------------------------------


def _check_signed_attrs(signed_attrs_der: bytes) -> None:
    if len(signed_attrs_der) < 2 or signed_attrs_der[0] != 0x31:
        raise ValueError("signed attributes must be the DER SET OF Attribute (tag 0x31)")


def assemble_reference(
    certificate: x509.Certificate,
    algorithm: str,
    signed_attrs_der: bytes,
    der_signature: bytes,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """The detached ``ContentInfo`` built with asn1crypto (``Assembler.assemble`` is the fast
    equivalent). ``der_signature`` is as CMS carries it: DER for ECDSA."""
    _check_signed_attrs(signed_attrs_der)
    cert = _asn1_certificate(certificate)
    signer_info = asn1_cms.SignerInfo(
        {
            "version": "v1",
            "sid": asn1_cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": cert.issuer,
                        "serial_number": cert.serial_number,
                    }
                }
            ),
            "digest_algorithm": _SHA256_ID,
            "signed_attrs": asn1_cms.CMSAttributes.load(signed_attrs_der),
            "signature_algorithm": _signature_algorithm(Algorithm(algorithm)),
            "signature": der_signature,
        }
    )
    signed_data = asn1_cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [_SHA256_ID],
            "encap_content_info": {"content_type": "data"},
            "certificates": [cert, *(_asn1_certificate(c) for c in chain)],
            "signer_infos": [signer_info],
        }
    )
    content_info = asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    der: bytes = content_info.dump()
    return der


class Assembler:
    """Checks the agent's signatures and wraps them in detached CMS, for one signer.

    ``chain`` is the issuers to embed after the signer certificate (intermediates; the anchor
    may be left out). The certificate's key is parsed once; ``assemble`` only joins bytes.
    """

    def __init__(
        self,
        certificate: x509.Certificate,
        algorithm: str,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        self.certificate = certificate
        self.algorithm = Algorithm(algorithm)
        self._verifier = _verifier(certificate, self.algorithm)
        # Everything but the signed attributes and the signature, from asn1crypto's encoding
        # of a SignedData with placeholders (so both stay the same structure by construction).
        cert = _asn1_certificate(certificate)
        sid = asn1_cms.IssuerAndSerialNumber(
            {"issuer": cert.issuer, "serial_number": cert.serial_number}
        ).dump()
        digest_algorithm = asn1_algos.DigestAlgorithm(_SHA256_ID).dump()
        self._signer_info_head = bytes.fromhex("020101") + sid + digest_algorithm
        self._signature_algorithm = _signature_algorithm(self.algorithm).dump()
        certificates = sorted(_certificate_der(c) for c in (certificate, *chain))
        self._signed_data_head = (
            bytes.fromhex("020101")
            + _tlv(0x31, digest_algorithm)
            + asn1_cms.EncapsulatedContentInfo({"content_type": "data"}).dump()
            + _tlv(0xA0, b"".join(certificates))
        )

    def verify(self, signed_attrs_der: bytes, signature: bytes) -> None:
        """``verify_signature`` with this signer's key (parsed once)."""
        self._verifier.verify(signed_attrs_der, signature)

    def assemble(self, signed_attrs_der: bytes, signature: bytes) -> bytes:
        """The DER ``ContentInfo`` for a signature as the agent returns it (raw r‖s for ECDSA).

        Does not verify: call ``verify`` first, or use ``accept``.
        """
        _check_signed_attrs(signed_attrs_der)
        return self._assemble(signed_attrs_der, self._verifier.der_signature(signature))

    def accept(self, signed_attrs_der: bytes, signature: bytes) -> bytes:
        """Verifies the agent's signature and assembles it: the per-record path of a batch."""
        _check_signed_attrs(signed_attrs_der)
        der_signature = self._verifier.verify(signed_attrs_der, signature)
        return self._assemble(signed_attrs_der, der_signature)

    def _assemble(self, signed_attrs_der: bytes, der_signature: bytes) -> bytes:
        signer_info = _tlv(
            0x30,
            self._signer_info_head
            + b"\xa0"  # [0] IMPLICIT SET OF Attribute: the same bytes, retagged
            + signed_attrs_der[1:]
            + self._signature_algorithm
            + _tlv(0x04, der_signature),
        )
        signed_data = _tlv(0x30, self._signed_data_head + _tlv(0x31, signer_info))
        return _tlv(0x30, _SIGNED_DATA_OID + _tlv(0xA0, signed_data))


_SIGNED_DATA_OID: Final = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2


# ---- verifying a finished CMS ------------------------------------------------------------------


def _fail(reason: str, message: str) -> CmsInvalid:
    return CmsInvalid(reason, message)


def _single_value(attributes: Any, name: str) -> Any:
    found = [attribute for attribute in attributes if attribute["type"].native == name]
    if not found:
        raise _fail("attributes", f"the signed attributes have no {name}")
    if len(found) > 1 or len(found[0]["values"]) != 1:
        raise _fail("attributes", f"the signed attributes must have exactly one {name}")
    return found[0]["values"][0]


def _parse_signed_data(cms_der: bytes) -> Any:
    try:
        content_info = asn1_cms.ContentInfo.load(cms_der, strict=True)
        if content_info["content_type"].native != "signed_data":
            raise _fail("structure", "the CMS is not SignedData")
        signed_data = content_info["content"]
        signed_data.native  # noqa: B018  (parses every field now: errors surface here)
    except CmsInvalid:
        raise
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, KeyError, ...
        raise _fail("malformed", f"the signature file is not valid DER CMS: {exc}") from exc
    return signed_data


def _signer_certificate(signed_data: Any, signer_info: Any) -> Any:
    sid = signer_info["sid"]
    for choice in signed_data["certificates"] or []:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                cert.issuer == wanted["issuer"]
                and cert.serial_number == wanted["serial_number"].native
            ):
                return cert
        elif cert.key_identifier == sid.chosen.native:
            return cert
    raise _fail("certificate", "the CMS does not contain the signer's certificate")


def _signature_scheme(signer_info: Any) -> Algorithm:
    if signer_info["digest_algorithm"]["algorithm"].native != "sha256":
        raise _fail("algorithm", "the digest algorithm is not SHA-256")
    algorithm = signer_info["signature_algorithm"]
    name = algorithm["algorithm"].native
    if name in ("rsassa_pkcs1v15", "sha256_rsa"):
        return Algorithm.RSA_PKCS1_SHA256
    if name in ("sha256_ecdsa", "ecdsa"):
        return Algorithm.ECDSA_SHA256
    if name == "rsassa_pss":
        params = algorithm["parameters"]
        if (
            params["hash_algorithm"]["algorithm"].native == "sha256"
            and params["mask_gen_algorithm"]["algorithm"].native == "mgf1"
            and params["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256"
            and params["salt_length"].native == DIGEST_LENGTH
            and params["trailer_field"].native == "trailer_field_bc"
        ):
            return Algorithm.RSA_PSS_SHA256
        raise _fail("algorithm", "RSASSA-PSS parameters other than SHA-256/MGF1-SHA-256/salt 32")
    raise _fail("algorithm", f"unsupported signature algorithm {name}")


def verify_detached(cms_der: bytes, content: bytes) -> x509.Certificate:
    """Checks a detached CAdES-BES signature of ``content``; returns the signer certificate.

    Checks: DER ``SignedData`` without encapsulated content, of id-data, one signer; signed
    attributes with one content-type (id-data), one message-digest equal to SHA-256 of
    ``content`` and a signing-certificate-v2 naming the embedded signer certificate by its
    SHA-256 (and issuer/serial when given); SHA-256 digest algorithm; the signature valid with
    the signer certificate's key. Trust in that certificate is the caller's question
    (``certificates.check_certificate``). Raises ``CmsInvalid`` saying which check failed.
    """
    signed_data = _parse_signed_data(cms_der)
    encap = signed_data["encap_content_info"]
    if encap["content_type"].native != "data":
        raise _fail("structure", "the signed content type is not id-data")
    if encap["content"].native is not None:
        raise _fail("structure", "the CMS is not detached: it carries the content itself")
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise _fail("structure", f"expected one signer, found {len(signer_infos)}")
    signer_info = signer_infos[0]
    attributes = signer_info["signed_attrs"]
    if not attributes:
        raise _fail("attributes", "the signature has no signed attributes")

    if _single_value(attributes, "content_type").native != "data":
        raise _fail("attributes", "the content-type attribute is not id-data")
    if _single_value(attributes, "message_digest").native != hashlib.sha256(content).digest():
        raise _fail("content", "the message digest does not match the content: it was changed")
    _single_value(attributes, "signing_time")

    cert = _signer_certificate(signed_data, signer_info)
    cert_der: bytes = cert.dump()
    signing_certificate = _single_value(attributes, "signing_certificate_v2")
    ess = signing_certificate["certs"][0]
    if ess["hash_algorithm"]["algorithm"].native != "sha256":
        raise _fail("signing_certificate", "signing-certificate-v2 does not use SHA-256")
    if ess["cert_hash"].native != hashlib.sha256(cert_der).digest():
        raise _fail(
            "signing_certificate",
            "signing-certificate-v2 names another certificate than the embedded signer's",
        )
    issuer_serial = ess["issuer_serial"]
    if issuer_serial.native is not None and (
        issuer_serial["serial_number"].native != cert.serial_number
        or not any(
            name.name == "directory_name" and name.chosen == cert.issuer
            for name in issuer_serial["issuer"]
        )
    ):
        raise _fail("signing_certificate", "signing-certificate-v2 issuer/serial do not match")

    algorithm = _signature_scheme(signer_info)
    try:
        certificate = x509.load_der_x509_certificate(cert_der)
        verifier = _Verifier(certificate, algorithm)
        signed = _tlv(0x31, attributes.contents)  # as signed: the SET OF, not the [0] tag
        verifier.verify_der(signed, signer_info["signature"].native)
    except SignatureInvalid as exc:
        raise _fail("signature", f"the signature is invalid: {exc}") from exc
    except ValueError as exc:
        raise _fail("certificate", f"the signer certificate cannot be read: {exc}") from exc
    return certificate
