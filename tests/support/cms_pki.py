"""A small test PKI for the signing tests: root → intermediate → officer certificates.

    pki = create_pki()                       # a root + one intermediate ("Kyso Test Issuing CA")
    officer = pki.officer("RSA")             # or "P256", "P384"; DevCA.issue options pass through
    officer.sign(digest, "RSA_PKCS1_SHA256") # as the agent returns it (raw r‖s for ECDSA)
    pki.write_chain(tmp_path / "chain.pem")  # intermediate + root: openssl -CAfile
    pki.write_anchors(tmp_path / "trust.pem")# the root only: the platform's trust-anchor file
    pki.trust()                              # certificates.TrustStore(anchor, intermediate)

Officer certificates look like a Vietnamese public CA's (``devpki.vn_organisation_subject``,
digitalSignature + nonRepudiation). ``issue_ca`` makes further (or broken) intermediates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

from kyso.agent import devpki
from kyso.platform.signing.certificates import TrustStore

__all__ = [
    "KEY_TYPES",
    "Officer",
    "Pki",
    "agent_signature",
    "create_pki",
    "create_root",
    "der",
    "issue_ca",
    "new_key",
]

KEY_TYPES = ("RSA", "P256", "P384")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def new_key(key_type: str) -> PrivateKey:
    if key_type == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "P256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "P384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"key_type must be one of {KEY_TYPES}, not {key_type!r}")


def agent_signature(key: PrivateKey, algorithm: str, digest: bytes) -> bytes:
    """What the agent returns for ``digest`` (protocol.md 2.3): raw r‖s for ECDSA."""
    prehashed = utils.Prehashed(hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert algorithm == "ECDSA_SHA256"
        r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(prehashed)))
        half = (key.curve.key_size + 7) // 8
        return r.to_bytes(half, "big") + s.to_bytes(half, "big")
    if algorithm == "RSA_PSS_SHA256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return key.sign(digest, pss, prehashed)
    assert algorithm == "RSA_PKCS1_SHA256"
    return key.sign(digest, padding.PKCS1v15(), prehashed)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kyso (test only)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_root(
    common_name: str = "Kyso Test Root CA",
    *,
    key_type: str = "P256",
    not_before: datetime | None = None,
) -> devpki.DevCA:
    """A self-signed root that may have intermediates below it.

    (``devpki.create_ca`` roots carry pathLenConstraint 0: they issue officers directly, as the
    SoftHSM fixtures' CA does, and a chain check must refuse an intermediate under them.)
    """
    key = new_key(key_type)
    return _issue_ca(key, _ca_name(common_name), key, None, not_before=not_before)


def issue_ca(
    parent: devpki.DevCA,
    common_name: str,
    *,
    key_type: str = "P256",
    ca: bool = True,
    key_usage: Iterable[str] | None = ("keyCertSign", "cRLSign"),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> devpki.DevCA:
    """An intermediate CA under ``parent`` (pathLenConstraint 0: it issues officers only);
    ``ca=False`` or a ``key_usage`` without keyCertSign make the broken ones a chain check must
    refuse."""
    return _issue_ca(
        new_key(key_type),
        _ca_name(common_name),
        parent.key,
        parent.certificate,
        ca=ca,
        path_length=0,
        key_usage=key_usage,
        not_before=not_before,
        not_after=not_after,
    )


def _issue_ca(
    key: PrivateKey,
    name: x509.Name,
    issuer_key: PrivateKey,
    issuer: x509.Certificate | None,
    *,
    ca: bool = True,
    path_length: int | None = None,
    key_usage: Iterable[str] | None = ("keyCertSign", "cRLSign"),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> devpki.DevCA:
    certificate = devpki.issue_certificate(
        issuer_key,
        issuer,
        key.public_key(),
        name,
        ca=ca,
        path_length=path_length,
        key_usage=key_usage,
        not_before=not_before,
        not_after=not_after,
        valid_days=1825,
        hash_algorithm=hashes.SHA256(),
    )
    return devpki.DevCA(key=key, certificate=certificate)


@dataclass(frozen=True)
class Officer:
    """An officer's key and certificate, and the issuers above it (nearest first)."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def der(self) -> bytes:
        return der(self.certificate)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "X")

    @property
    def algorithms(self) -> tuple[str, ...]:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return ("RSA_PKCS1_SHA256", "RSA_PSS_SHA256")
        return ("ECDSA_SHA256",)

    def sign(self, digest: bytes, algorithm: str | None = None) -> bytes:
        """Signs a SHA-256 digest as the agent would (default: the key's first algorithm)."""
        return agent_signature(self.key, algorithm or self.algorithms[0], digest)


@dataclass
class Pki:
    root: devpki.DevCA
    intermediate: devpki.DevCA
    _officers: dict[str, Officer] = field(default_factory=dict)

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Issuers of an officer certificate, nearest first: intermediate, root."""
        return (self.intermediate.certificate, self.root.certificate)

    def officer(
        self,
        key_type: str = "RSA",
        *,
        organisation: str = "Trạm Y tế Phường Bến Nghé",
        issuer: devpki.DevCA | None = None,
        chain: tuple[x509.Certificate, ...] | None = None,
        **issue: Any,
    ) -> Officer:
        """A new officer certificate from the intermediate (or ``issuer``, with ``chain``).

        ``issue`` passes through to ``DevCA.issue``: ``not_before``, ``not_after``,
        ``key_usage``, ``serial_number``.
        """
        key = new_key(key_type)
        ca = issuer or self.intermediate
        certificate = ca.issue(
            key.public_key(), devpki.vn_organisation_subject(organisation), **issue
        )
        if chain is None:
            chain = self.chain if issuer is None else (issuer.certificate,)
        return Officer(key=key, certificate=certificate, chain=chain)

    def cached_officer(self, key_type: str) -> Officer:
        """One officer per key type for the PKI's lifetime (RSA key generation is slow)."""
        if key_type not in self._officers:
            self._officers[key_type] = self.officer(key_type)
        return self._officers[key_type]

    def write_chain(self, path: Path) -> Path:
        """chain.pem for ``openssl cms -verify -CAfile``: intermediate then root."""
        return devpki.write_pem(path, *self.chain)

    def write_anchors(self, path: Path, *, with_intermediate: bool = False) -> Path:
        """The platform's trust-anchor bundle: the root (and the intermediate if asked)."""
        extra = (self.intermediate.certificate,) if with_intermediate else ()
        return devpki.write_pem(path, self.root.certificate, *extra)

    def trust(self) -> TrustStore:
        return TrustStore(
            anchors=[self.root.certificate], intermediates=[self.intermediate.certificate]
        )


def create_pki(root_name: str = "Kyso Test Root CA") -> Pki:
    root = create_root(root_name)
    return Pki(root=root, intermediate=issue_ca(root, "Kyso Test Issuing CA"))
