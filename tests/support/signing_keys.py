"""Officer certificates with software keys, signing what the agent would return.

For service and HTTP tests of the platform's signing (the end-to-end tests sign on SoftHSM).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from kyso.agent import devpki

SUBJECT = devpki.vn_organisation_subject("Trạm Y tế Phường Bến Nghé")


@dataclass(frozen=True)
class Signer:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def serial(self) -> str:
        return f"{self.certificate.serial_number:X}"

    def sign(self, digest: bytes) -> bytes:
        """What the agent returns for a digest (raw r||s for ECDSA, as protocol.md says)."""
        prehashed = utils.Prehashed(hashes.SHA256())
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(digest, padding.PKCS1v15(), prehashed)
        r, s = utils.decode_dss_signature(self.key.sign(digest, ec.ECDSA(prehashed)))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class Pki:
    ca: devpki.DevCA
    anchors: Path
    rsa: Signer
    p256: Signer
    stranger: Signer  # a key of nobody's registered certificate


def make_signer(
    ca: devpki.DevCA, kind: str, subject: x509.Name | None = None, **kw: object
) -> Signer:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return Signer(key, ca.issue(key.public_key(), subject or SUBJECT, **kw))  # type: ignore[arg-type]


def make_pki(directory: Path) -> Pki:
    """A test CA (its certificate written as the trust anchors) and three officer keys."""
    ca = devpki.create_ca("Kyso Test CA")
    anchors = devpki.write_pem(directory / "anchors.pem", ca.certificate)
    return Pki(
        ca, anchors, make_signer(ca, "rsa"), make_signer(ca, "p256"), make_signer(ca, "p256")
    )
