"""The platform's side of the manifest contract, as the tests need it.

The real platform signs manifests in kyso.platform.signing; the agent must never import the
platform, so the tests carry this small issuer, which follows protocol.md section 3.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.agent.manifest import AUDIENCE, MANIFEST_TYPE, commitment


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class ManifestIssuer:
    origin: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def claims(
        self,
        certificate: str,
        algorithm: str,
        digests: Sequence[bytes],
        *,
        batch_id: str | None = None,
        now: float | None = None,
        lifetime: int = 600,
    ) -> dict[str, Any]:
        issued = int(time.time() if now is None else now)
        return {
            "aud": AUDIENCE,
            "jti": batch_id or f"B{uuid.uuid4().hex[:20]}",
            "iat": issued,
            "exp": issued + lifetime,
            "origin": self.origin,
            "certificate": certificate,
            "algorithm": algorithm,
            "count": len(digests),
            "digests": commitment(digests),
            "summary": {
                "facility": "Trạm Y tế Phường Bến Nghé",
                "people": max(1, min(1000, (len(digests) + 2) // 3)),
                "doses": len(digests),
                "first_date": "2022-03-01",
                "last_date": "2022-03-31",
            },
            "code": "K7Q-4MZ",
        }

    def sign_claims(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims,
            self.key,
            algorithm="ES256",
            headers={"typ": MANIFEST_TYPE, **(headers or {})},
        )

    def issue(self, certificate: str, algorithm: str, digests: Sequence[bytes], **kw: Any) -> str:
        return self.sign_claims(self.claims(certificate, algorithm, digests, **kw))
