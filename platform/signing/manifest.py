"""The platform's batch-manifest key and the manifests the agent requires (protocol.md §3).

The agent signs only digests that a manifest signed with the key pinned for the page's origin
commits to. The private key stays on the platform server: a PEM file readable by the platform
only (``KYSO_MANIFEST_KEY``; by default ``manifest-key.pem`` in the instance folder, created on
first use). Its public half is what administrators pin in the agent's machine config, and what
``/.well-known/kyso/manifest-key.pem`` publishes for pairing.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

AUDIENCE = "kyso-agent"
MANIFEST_TYPE = "kyso-batch+jwt"
# Crockford's base32 without I, L, O, U: nothing an officer can misread when comparing codes.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class Summary:
    """What the agent's dialog shows as the platform's statement about the batch."""

    facility: str
    people: int
    doses: int
    first_date: date
    last_date: date


def commitment(digests: Sequence[bytes]) -> str:
    """The manifest's ``digests`` claim: SHA-256 over the concatenated raw digests."""
    return "sha256:" + hashlib.sha256(b"".join(digests)).hexdigest()


def verification_code(batch_id: str, digests: Sequence[bytes]) -> str:
    """A short code bound to the batch id and its digests, e.g. ``K7Q-4MZ``."""
    value = int.from_bytes(hashlib.sha256(batch_id.encode() + b"".join(digests)).digest()[:5])
    chars = "".join(_CODE_ALPHABET[(value >> (5 * i)) & 31] for i in range(6))
    return f"{chars[:3]}-{chars[3:]}"


class ManifestSigner:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("the manifest key must be an EC P-256 key (ES256)")
        self._key = key

    @property
    def public_pem(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def issue(
        self,
        *,
        batch_id: str,
        origin: str,
        certificate: str,
        algorithm: str,
        digests: Sequence[bytes],
        summary: Summary,
        code: str,
        issued_at: datetime,
        lifetime: timedelta,
    ) -> str:
        issued = int(issued_at.timestamp())
        claims = {
            "aud": AUDIENCE,
            "jti": batch_id,
            "iat": issued,
            "exp": issued + int(lifetime.total_seconds()),
            "origin": origin,
            "certificate": certificate,
            "algorithm": algorithm,
            "count": len(digests),
            "digests": commitment(digests),
            "summary": {
                "facility": displayable(summary.facility)[:200],
                "people": summary.people,
                "doses": summary.doses,
                "first_date": summary.first_date.isoformat(),
                "last_date": summary.last_date.isoformat(),
            },
            "code": code,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"typ": MANIFEST_TYPE})


# What the agent shows in its consent dialog must read on screen exactly as it is, and the agent
# refuses a manifest whose summary holds anything else (protocol.md: invisible, bidi, control and
# format characters, blanks other than U+0020). The platform's texts come from records typed or
# imported by people, so they are reduced to what the agent accepts before they are signed:
# letters, digits, punctuation, symbols, combining diacritics and U+0020.
_SHOWN_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lo", "Lm", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
                               "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk"})  # fmt: skip
# Letters and marks that show nothing: Hangul fillers, the combining grapheme joiner.
_INVISIBLE = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F})


def displayable(text: str) -> str:
    """``text`` with every character the agent's consent dialog refuses replaced by a space (a
    blank of any kind) or dropped, and runs of spaces collapsed."""
    kept = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category in ("Zs", "Zl", "Zp", "Cc"):
            kept.append(" ")
        elif ord(char) in _INVISIBLE:
            continue
        elif category in _SHOWN_CATEGORIES or (category == "Mn" and 0x0300 <= ord(char) <= 0x036F):
            kept.append(char)
    return " ".join("".join(kept).split())


def load_signer(path: Path, *, create: bool) -> ManifestSigner:
    """The signer from a PEM private key; with ``create``, a new key is written if none exists."""
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"manifest key {path} does not exist")
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return ManifestSigner(loaded)
