"""Building sign requests and checking signatures, as the platform would."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from support.agent_harness import RunningAgent
from support.platform_keys import ManifestIssuer, b64


def digests(count: int, salt: str = "dose") -> list[bytes]:
    return [hashlib.sha256(f"{salt}-{i}".encode()).digest() for i in range(count)]


def verify(cert_der: bytes, algorithm: str, digest: bytes, signature: bytes) -> None:
    """Raises InvalidSignature unless ``signature`` is the certificate key's over ``digest``."""
    key = x509.load_der_x509_certificate(cert_der).public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    if algorithm == "RSA_PKCS1_SHA256":
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(signature, digest, padding.PKCS1v15(), prehashed)
    elif algorithm == "RSA_PSS_SHA256":
        assert isinstance(key, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        key.verify(signature, digest, pss, prehashed)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        half = (key.curve.key_size + 7) // 8
        assert len(signature) == 2 * half  # raw r || s, as protocol.md says
        r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        key.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(prehashed))


def sign_request(
    source: RunningAgent | ManifestIssuer,
    cert_fp: str,
    algorithm: str,
    items: list[bytes],
    **kw: Any,
) -> dict[str, Any]:
    """A page's sign request, with a manifest from the agent's (or this) platform issuer."""
    issuer = source.issuer if isinstance(source, RunningAgent) else source
    return {
        "type": "sign",
        "id": kw.pop("request_id", "s1"),
        "manifest": issuer.issue(cert_fp, algorithm, items, **kw),
        "certificate": cert_fp,
        "algorithm": algorithm,
        "digests": [b64(d) for d in items],
    }


def collect(replies: list[dict[str, Any]]) -> list[bytes]:
    signatures: list[bytes] = []
    for reply in replies:
        if reply["type"] == "signatures":
            assert reply["offset"] == len(signatures)
            signatures += [base64.b64decode(s) for s in reply["signatures"]]
    return signatures
