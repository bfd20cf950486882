"""Checking the officer's signing certificate, as read from the USB token through the agent.

Before a batch is prepared (and again when it is exported) the certificate must be:

1. a parseable X.509 certificate (``MALFORMED``);
2. the one registered for the officer: same serial, compared as integers (``NOT_REGISTERED``
   when none is registered, ``SERIAL_MISMATCH``);
3. issued through a path that ends at one of the configured trust anchors (``UNTRUSTED``),
   validated by pyhanko-certvalidator (``validation.validate_path``: RFC 5280 path building and
   validation, no certificate signed with MD5 or SHA-1);
4. valid at that time (``NOT_YET_VALID``, ``EXPIRED``), and, given a ``RevocationChecker``, not
   revoked (``REVOKED``, with the date) by the OCSP responder of its AIA or its CRL; under the
   ``hard`` policy a certificate whose responder cannot be reached is refused for now
   (``REVOCATION_UNAVAILABLE``);
5. for signing: key usage with digitalSignature or nonRepudiation (``NO_SIGNING_USAGE``; a
   certificate without the extension is refused too, as the agent does);
6. with a key the protocol can use (``UNSUPPORTED_KEY``): RSA of 2048 bits or more signs
   ``RSA_PKCS1_SHA256``, EC P-256 or P-384 signs ``ECDSA_SHA256``.

Every refusal is a ``CertificateRejected`` (a ``DomainError``): its ``problem`` says which rule,
its catalogue text (``platform/locales/certcheck.toml``) what to do, and ``detail`` the
technical reason in English for logs.

Trust anchors come from a PEM bundle (``load_trust_store``): its self-signed certificates are
the anchors, the others intermediates that may complete a chain (tokens usually hold only the
officer's certificate).

``organisation_problem`` is the binding of a certificate to the signing unit it signs for
(``WRONG_ORGANISATION``): the subject's tax code (``UID=MST:…``) and organisation (``O``) must be
the unit's.
"""

from __future__ import annotations

import enum
import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kyso.platform.errors import DomainError
from kyso.platform.models import SigningCertificate
from kyso.platform.signing.validation import PathRefused, RevocationChecker, validate_path

__all__ = [
    "CertificateRejected",
    "CheckedCertificate",
    "Problem",
    "TrustStore",
    "chain_pem",
    "check_certificate",
    "load_trust_store",
    "organisation_of",
    "organisation_problem",
    "signing_algorithm",
]

MIN_RSA_BITS: Final = 2048
SUPPORTED_CURVES: Final = ("secp256r1", "secp384r1")
VIETNAM_TIME: Final = timezone(timedelta(hours=7), "ICT")


class Problem(enum.StrEnum):
    NOT_REGISTERED = "not_registered"
    SERIAL_MISMATCH = "serial_mismatch"
    UNTRUSTED = "untrusted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    NO_SIGNING_USAGE = "no_signing_usage"
    UNSUPPORTED_KEY = "unsupported_key"
    MALFORMED = "malformed"
    REVOKED = "revoked"
    REVOCATION_UNAVAILABLE = "revocation_unavailable"
    WRONG_ORGANISATION = "wrong_organisation"


class CertificateRejected(DomainError):
    """The certificate cannot sign for this officer. Text: ``certcheck.<problem>``."""

    def __init__(self, problem: Problem, detail: str, **values: Any) -> None:
        super().__init__(f"certcheck.{problem.value}", **values)
        self.problem = problem
        self.detail = detail  # English, technical: for logs and the audit trail
        # Set when the refusal recorded something to keep (the CA's revocation of a
        # registered certificate): the caller commits instead of rolling back.
        self.persist = False

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


def _name(certificate: x509.Certificate) -> str:
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = common_names[0].value if common_names else None
    return str(value) if value else certificate.subject.rfc4514_string()


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the time of the check must be timezone-aware")
    return at.astimezone(UTC)


def check_certificate(
    der: bytes,
    *,
    registered_serial: str | None,
    trust: TrustStore,
    at: datetime,
    revocation: RevocationChecker | None = None,
) -> CheckedCertificate:
    """Checks the certificate ``der`` for signing at ``at``; raises ``CertificateRejected``.

    ``registered_serial`` is the officer's active registration (upper-case hex), None when
    they have none. ``revocation`` checks the revocation status (None: not checked).
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

    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    try:
        chain = validate_path(certificate, trust.anchors, trust.intermediates, at, revocation)
    except PathRefused as refused:
        if refused.kind == "revoked":
            revoked_at = refused.revoked_at or at
            raise CertificateRejected(
                Problem.REVOKED,
                refused.detail,
                serial=shown,
                subject=_name(certificate),
                issuer=_issuer_name(certificate),
                revoked_at=revoked_at.astimezone(VIETNAM_TIME),
            ) from None
        if refused.kind == "revocation_unavailable":
            raise CertificateRejected(
                Problem.REVOCATION_UNAVAILABLE,
                refused.detail,
                serial=shown,
                issuer=_issuer_name(certificate),
            ) from None
        if refused.kind not in ("expired", "not_yet_valid"):
            raise CertificateRejected(
                Problem.UNTRUSTED, refused.detail, serial=shown, issuer=_issuer_name(certificate)
            ) from None
        chain = ()  # the validity checks below say which

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


# ---- organisation binding ------------------------------------------------------------------


def _normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def organisation_of(certificate: x509.Certificate) -> tuple[str | None, str | None]:
    """The subject's organisation (``O``) and tax code (the digits of ``UID=MST:…``)."""
    organisations = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    organisation = str(organisations[0].value) if organisations else None
    tax_code = None
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.USER_ID):
        value = str(attribute.value).strip()
        if value.upper().startswith("MST:"):
            tax_code = value[4:].strip()
            break
    return organisation, tax_code


def organisation_problem(
    certificate: x509.Certificate, unit_name: str, unit_tax_code: str | None
) -> CertificateRejected | None:
    """Why ``certificate`` may not sign for the unit (None when it may): its ``UID=MST:`` must be
    the unit's tax code and its ``O`` the unit's name (compared without case and extra spaces).
    A unit without a tax code accepts no certificate until an administrator records it."""
    organisation, tax_code = organisation_of(certificate)
    if (
        unit_tax_code
        and tax_code == unit_tax_code.strip()
        and organisation is not None
        and _normalised(organisation) == _normalised(unit_name)
    ):
        return None
    return CertificateRejected(
        Problem.WRONG_ORGANISATION,
        f"subject O={organisation!r} MST={tax_code!r}, unit {unit_name!r} MST={unit_tax_code!r}",
        serial=_pairs(certificate.serial_number),
        organisation=organisation or "—",
        tax_code=tax_code or "—",
        unit=unit_name,
        unit_tax_code=unit_tax_code or "—",
    )


def compromised_at(registration: SigningCertificate, at: datetime) -> bool:
    """Is the registration compromised at ``at``? (Here, below ``signing.revocation`` which
    marks registrations compromised, so that passport issuance can ask without an import
    cycle: revocation supersedes passports.)"""
    since = registration.compromised_from
    if since is None:
        return False

    def utc(value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    return utc(since) <= utc(at)
