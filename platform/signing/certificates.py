"""Checking the officer's signing certificate, as read from the USB token through the agent.

Before a batch is prepared (and again when it is exported) the certificate must be:

1. a parseable X.509 certificate (``MALFORMED``);
2. the one registered for the officer: same serial, compared as integers (``NOT_REGISTERED``
   when none is registered, ``SERIAL_MISMATCH``);
3. issued through a chain that ends at one of the configured trust anchors (``UNTRUSTED``):
   each link's signature verified with the issuer's key (``verify_directly_issued_by``, which
   also compares the names), each issuer a CA (basicConstraints cA, keyCertSign when it has a
   key usage, pathLenConstraint respected) and valid at the time of the check, no certificate
   signed with MD5 or SHA-1;
4. valid at that time (``NOT_YET_VALID``, ``EXPIRED``);
5. for signing: key usage with digitalSignature or nonRepudiation (``NO_SIGNING_USAGE``; a
   certificate without the extension is refused too, as the agent does);
6. with a key the protocol can use (``UNSUPPORTED_KEY``): RSA of 2048 bits or more signs
   ``RSA_PKCS1_SHA256``, EC P-256 or P-384 signs ``ECDSA_SHA256``.

Every refusal is a ``CertificateRejected`` (a ``DomainError``): its ``problem`` says which rule,
its catalogue text (``platform/locales/certcheck.toml``) what to do, and ``detail`` the
technical reason in English for logs.

Trust anchors come from a PEM bundle (``load_trust_store``): its self-signed certificates are
the anchors, the others intermediates that may complete a chain (tokens usually hold only the
officer's certificate). Revocation (CRL/OCSP) is not checked here.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kyso.platform.i18n import DomainError

__all__ = [
    "CertificateRejected",
    "CheckedCertificate",
    "Problem",
    "TrustStore",
    "chain_pem",
    "check_certificate",
    "load_trust_store",
    "signing_algorithm",
]

MIN_RSA_BITS: Final = 2048
SUPPORTED_CURVES: Final = ("secp256r1", "secp384r1")
MAX_CHAIN_LENGTH: Final = 6  # issuers above the officer's certificate, anchor included
VIETNAM_TIME: Final = timezone(timedelta(hours=7), "ICT")
_WEAK_HASHES: Final = (hashes.MD5, hashes.SHA1)


class Problem(enum.StrEnum):
    NOT_REGISTERED = "not_registered"
    SERIAL_MISMATCH = "serial_mismatch"
    UNTRUSTED = "untrusted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    NO_SIGNING_USAGE = "no_signing_usage"
    UNSUPPORTED_KEY = "unsupported_key"
    MALFORMED = "malformed"


class CertificateRejected(DomainError):
    """The certificate cannot sign for this officer. Text: ``certcheck.<problem>``."""

    def __init__(self, problem: Problem, detail: str, **values: Any) -> None:
        super().__init__(f"certcheck.{problem.value}", **values)
        self.problem = problem
        self.detail = detail  # English, technical: for logs and the audit trail

    def __str__(self) -> str:
        return f"{self.problem.value}: {self.detail}"


@dataclass(frozen=True)
class CheckedCertificate:
    """A certificate that passed every check, with what the platform stores and uses of it."""

    certificate: x509.Certificate
    der: bytes
    fingerprint: str  # SHA-256 of the DER, lower-case hex (the protocol's ``certificate``)
    serial_hex: str  # upper-case hex, no separators, no leading zeros (as registered)
    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    not_before: datetime  # UTC
    not_after: datetime  # UTC
    algorithm: str  # the protocol's algorithm: RSA_PKCS1_SHA256 or ECDSA_SHA256
    chain: tuple[x509.Certificate, ...]  # issuers from the officer's up to the anchor


# ---- trust store ---------------------------------------------------------------------------


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.subject != certificate.issuer:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


class TrustStore:
    """Trust anchors, and intermediates that may complete an officer's chain to them."""

    def __init__(
        self,
        anchors: Iterable[x509.Certificate],
        intermediates: Iterable[x509.Certificate] = (),
    ) -> None:
        self.anchors: tuple[x509.Certificate, ...] = tuple(dict.fromkeys(anchors))
        if not self.anchors:
            raise ValueError("a trust store needs at least one trust anchor")
        self.intermediates: tuple[x509.Certificate, ...] = tuple(
            c for c in dict.fromkeys(intermediates) if c not in self.anchors
        )
        self._by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for certificate in (*self.anchors, *self.intermediates):
            self._by_subject.setdefault(certificate.subject, []).append(certificate)

    @classmethod
    def from_pem(cls, data: bytes) -> TrustStore:
        """Self-signed certificates of the bundle are anchors, the others intermediates."""
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ValueError(f"the trust bundle is not PEM certificates: {exc}") from exc
        anchors = [c for c in certificates if _self_signed(c)]
        if not anchors:
            raise ValueError(
                "the trust bundle has no self-signed (root) certificate to anchor chains to"
            )
        return cls(anchors, [c for c in certificates if c not in anchors])

    def is_anchor(self, certificate: x509.Certificate) -> bool:
        return certificate in self.anchors

    def issuers_of(self, certificate: x509.Certificate) -> list[x509.Certificate]:
        """Candidate issuers: certificates of the store whose subject is its issuer."""
        return list(self._by_subject.get(certificate.issuer, ()))


def load_trust_store(path: Path | str) -> TrustStore:
    """The trust store of a PEM bundle file (see ``TrustStore.from_pem``)."""
    return TrustStore.from_pem(Path(path).read_bytes())


# ---- checks --------------------------------------------------------------------------------


def signing_algorithm(public_key: object) -> str | None:
    """The protocol algorithm a key signs with here, or None if it cannot sign here."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA_PKCS1_SHA256" if public_key.key_size >= MIN_RSA_BITS else None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ECDSA_SHA256" if public_key.curve.name in SUPPORTED_CURVES else None
    return None


def _key_description(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size} bit"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {public_key.curve.name}"
    return type(public_key).__name__.removesuffix("PublicKey").lstrip("_") or "?"


def _pairs(serial: int) -> str:
    """A serial as people read it from CA tools: even-length upper-case hex in pairs."""
    text = format(serial, "X")
    text = text if len(text) % 2 == 0 else "0" + text
    return " ".join(text[i : i + 2] for i in range(0, len(text), 2))


def _registered_pairs(serial_hex: str) -> str:
    try:
        return _pairs(int(serial_hex, 16))
    except ValueError:
        return serial_hex


def _extension(certificate: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _weak_signature(certificate: x509.Certificate) -> bool:
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return True
    return isinstance(algorithm, _WEAK_HASHES)


def _name(certificate: x509.Certificate) -> str:
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = common_names[0].value if common_names else None
    return str(value) if value else certificate.subject.rfc4514_string()


def _issuer_problem(issuer: x509.Certificate, intermediates_below: int, at: datetime) -> str | None:
    """Why ``issuer`` cannot issue here (None when it can)."""
    constraints = _extension(issuer, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return f"issuer {_name(issuer)!r} is not a CA (basicConstraints cA is not set)"
    if constraints.path_length is not None and intermediates_below > constraints.path_length:
        return (
            f"issuer {_name(issuer)!r} allows {constraints.path_length} intermediate CAs "
            f"below it, the chain has {intermediates_below}"
        )
    usage = _extension(issuer, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return f"issuer {_name(issuer)!r} may not sign certificates (no keyCertSign)"
    if not issuer.not_valid_before_utc <= at <= issuer.not_valid_after_utc:
        return (
            f"issuer {_name(issuer)!r} is valid from {issuer.not_valid_before_utc:%Y-%m-%d} "
            f"to {issuer.not_valid_after_utc:%Y-%m-%d}, not at {at:%Y-%m-%d %H:%M}Z"
        )
    return None


def _chain(
    certificate: x509.Certificate, trust: TrustStore, at: datetime
) -> tuple[x509.Certificate, ...]:
    """The issuers from ``certificate`` up to an anchor, or ValueError saying why not."""
    reasons: list[str] = []

    def climb(current: x509.Certificate, above: tuple[x509.Certificate, ...]) -> tuple[Any, ...]:
        if len(above) >= MAX_CHAIN_LENGTH:
            reasons.append(f"no anchor within {MAX_CHAIN_LENGTH} issuers")
            return ()
        candidates = trust.issuers_of(current)
        if not candidates:
            reasons.append(f"no trusted or known issuer named {current.issuer.rfc4514_string()}")
        for issuer in candidates:
            if issuer in above:
                continue  # a loop
            try:
                current.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                reasons.append(f"{_name(current)!r} is not signed by {_name(issuer)!r}")
                continue
            if _weak_signature(current):
                reasons.append(f"{_name(current)!r} is signed with a weak hash (MD5 or SHA-1)")
                continue
            problem = _issuer_problem(issuer, len(above), at)
            if problem is not None:
                reasons.append(problem)
                continue
            if trust.is_anchor(issuer):
                return (*above, issuer)
            found = climb(issuer, (*above, issuer))
            if found:
                return found
        return ()

    found = climb(certificate, ())
    if not found:
        raise ValueError("; ".join(dict.fromkeys(reasons)) or "no chain to a trust anchor")
    return found


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the time of the check must be timezone-aware")
    return at.astimezone(UTC)


def check_certificate(
    der: bytes, *, registered_serial: str | None, trust: TrustStore, at: datetime
) -> CheckedCertificate:
    """Checks the certificate ``der`` for signing at ``at``; raises ``CertificateRejected``.

    ``registered_serial`` is the officer's active registration (upper-case hex), None when
    they have none.
    """
    at = _utc(at)
    try:
        certificate = x509.load_der_x509_certificate(der)
        serial = certificate.serial_number
        subject = certificate.subject.rfc4514_string()
        issuer = certificate.issuer.rfc4514_string()
        certificate.extensions  # noqa: B018  (parsed lazily: a malformed one raises here)
    except ValueError as exc:
        raise CertificateRejected(Problem.MALFORMED, f"not a DER X.509 certificate: {exc}") from exc
    shown = _pairs(serial) if serial > 0 else str(serial)

    if registered_serial is None:
        raise CertificateRejected(
            Problem.NOT_REGISTERED, "the officer has no registered certificate", serial=shown
        )
    try:
        registered = int(registered_serial, 16)
    except ValueError:
        registered = None
    if registered != serial:
        raise CertificateRejected(
            Problem.SERIAL_MISMATCH,
            f"serial {format(serial, 'X')} is not the registered {registered_serial}",
            serial=shown,
            registered=_registered_pairs(registered_serial),
        )

    try:
        chain = _chain(certificate, trust, at)
    except ValueError as exc:
        raise CertificateRejected(
            Problem.UNTRUSTED, str(exc), serial=shown, issuer=_issuer_name(certificate)
        ) from None

    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if at < not_before:
        raise CertificateRejected(
            Problem.NOT_YET_VALID,
            f"valid from {not_before.isoformat()}, checked at {at.isoformat()}",
            serial=shown,
            not_before=not_before.astimezone(VIETNAM_TIME),
        )
    if at > not_after:
        raise CertificateRejected(
            Problem.EXPIRED,
            f"expired at {not_after.isoformat()}, checked at {at.isoformat()}",
            serial=shown,
            not_after=not_after.astimezone(VIETNAM_TIME),
        )

    usage = _extension(certificate, x509.KeyUsage)
    if usage is None or not (usage.digital_signature or usage.content_commitment):
        raise CertificateRejected(
            Problem.NO_SIGNING_USAGE,
            "no key usage extension"
            if usage is None
            else "neither digitalSignature nor nonRepudiation in the key usage",
            serial=shown,
        )

    try:
        public_key: object = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateRejected(
            Problem.UNSUPPORTED_KEY,
            f"unreadable public key: {exc}",
            serial=shown,
            key_type="?",
        ) from exc
    algorithm = signing_algorithm(public_key)
    if algorithm is None:
        key = _key_description(public_key)
        raise CertificateRejected(
            Problem.UNSUPPORTED_KEY, f"{key} keys cannot sign here", serial=shown, key_type=key
        )

    return CheckedCertificate(
        certificate=certificate,
        der=bytes(der),
        fingerprint=hashlib.sha256(der).hexdigest(),
        serial_hex=format(serial, "X"),
        subject=subject,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
        algorithm=algorithm,
        chain=chain,
    )


def _issuer_name(certificate: x509.Certificate) -> str:
    common_names = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = common_names[0].value if common_names else None
    return str(value) if value else certificate.issuer.rfc4514_string()


def chain_pem(chain: Sequence[x509.Certificate]) -> bytes:
    """The chain as PEM (the export's chain.pem)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
