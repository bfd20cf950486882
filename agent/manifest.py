"""Verifying the batch manifest the platform signs, and remembering which batches were used.

The manifest is what makes a batch of bare digests signable: the platform, which prepared the
documents, commits to the exact list of digests, the origin, the certificate, the algorithm and
a human summary with a short verification code. The agent signs nothing a manifest does not
commit to. Format: a compact JWS (JWT) signed with ES256 by the key pinned for the origin in the
agent's machine config; see protocol.md, "Batch manifest".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from kyso.agent.protocol import MAX_BATCH, ErrorCode, ProtocolError
from kyso.agent.safetext import first_refused
from kyso.agent.token.model import Algorithm

MANIFEST_TYPE: Final = "kyso-batch+jwt"
AUDIENCE: Final = "kyso-agent"
LEEWAY_SECONDS: Final = 60

_BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_CODE = re.compile(r"[A-Z0-9]{3,6}(-[A-Z0-9]{3,6}){0,2}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_COMMITMENT = re.compile(r"sha256:[0-9a-f]{64}")
_CLAIMS: Final = frozenset(
    {
        "aud",
        "iat",
        "exp",
        "jti",
        "origin",
        "certificate",
        "algorithm",
        "count",
        "digests",
        "summary",
        "code",
    }
)
_SUMMARY: Final = frozenset({"facility", "people", "doses", "first_date", "last_date"})


@dataclass(frozen=True)
class Summary:
    """What the officer is asked to approve, stated by the platform (shown framed as such)."""

    facility: str
    people: int
    doses: int
    first_date: date
    last_date: date


@dataclass(frozen=True)
class BatchManifest:
    batch_id: str
    origin: str
    certificate: str  # SHA-256 fingerprint of the signer certificate, lower-case hex
    algorithm: Algorithm
    count: int
    digests: str  # "sha256:" + hex of SHA-256 over the concatenated 32-byte digests
    summary: Summary
    code: str  # short verification code, also shown by the page next to its Sign button
    issued_at: int
    expires_at: int


def commitment(digests: Sequence[bytes]) -> str:
    """The manifest's commitment to an ordered list of digests."""
    return "sha256:" + hashlib.sha256(b"".join(digests)).hexdigest()


def verify_manifest(
    token: str,
    *,
    key: EllipticCurvePublicKey,
    origin: str,
    now: float,
    max_lifetime: int,
    request_id: str,
) -> BatchManifest:
    """Checks signature, type, audience, time and schema; raises ProtocolError."""

    def invalid(reason: str) -> ProtocolError:
        return ProtocolError(
            ErrorCode.MANIFEST_INVALID, request_id, detail={"reason": reason}, reason=reason
        )

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise invalid("format") from None
    if header.get("typ") != MANIFEST_TYPE or header.get("alg") != "ES256":
        raise invalid("header")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=["ES256"],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": ["aud", "iat", "exp", "jti"], "verify_exp": False},
        )
    except jwt.InvalidSignatureError:
        raise invalid("signature") from None
    except jwt.PyJWTError:
        raise invalid("claims") from None

    exp, iat = claims["exp"], claims["iat"]
    if type(exp) is not int or type(iat) is not int:
        raise invalid("time")
    if exp + LEEWAY_SECONDS < now:
        raise ProtocolError(ErrorCode.MANIFEST_EXPIRED, request_id)
    if iat - LEEWAY_SECONDS > now or exp <= iat or exp - iat > max_lifetime:
        raise invalid("time")
    if set(claims) != _CLAIMS:
        raise invalid("claims")
    if claims["origin"] != origin:
        # A manifest made for another platform is never valid here, even if signed correctly.
        raise ProtocolError(
            ErrorCode.MANIFEST_MISMATCH, request_id, detail={"field": "origin"}, field="origin"
        )
    try:
        return BatchManifest(
            batch_id=_match(_BATCH_ID, claims["jti"]),
            origin=origin,
            certificate=_match(_FINGERPRINT, claims["certificate"]),
            algorithm=Algorithm(claims["algorithm"]),
            count=_int(claims["count"], 1, MAX_BATCH),
            digests=_match(_COMMITMENT, claims["digests"]),
            summary=_summary(claims["summary"]),
            code=_match(_CODE, claims["code"]),
            issued_at=iat,
            expires_at=exp,
        )
    except (ValueError, TypeError, KeyError):
        raise invalid("claims") from None


def _match(pattern: re.Pattern[str], value: object) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(pattern.pattern)
    return value


def _int(value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError("int")
    return value


def _summary(value: object) -> Summary:
    if not isinstance(value, dict) or set(value) != _SUMMARY:
        raise ValueError("summary")
    facility = value["facility"]
    if (
        not isinstance(facility, str)
        or not 0 < len(facility) <= 200
        or first_refused(facility) is not None
    ):
        raise ValueError("facility")
    first = date.fromisoformat(value["first_date"])
    last = date.fromisoformat(value["last_date"])
    if last < first:
        raise ValueError("dates")
    return Summary(
        facility=facility.strip(),
        people=_int(value["people"], 1, 1000),
        doses=_int(value["doses"], 1, MAX_BATCH),
        first_date=first,
        last_date=last,
    )


class ReplayGuard:
    """Batch ids whose signatures left the agent; refused until their manifest expires.

    An id is consumed when the first signature of its batch is delivered, not when the dialog
    opens: a batch the officer declined, or a mistyped PIN, can be retried with the same
    manifest, but a batch that produced signatures can never be signed again. The list is
    persisted (per user) so restarting the agent does not reopen replays.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._used: dict[str, int] = self._load()

    def _load(self) -> dict[str, int]:
        if self._path is None or not self._path.exists():
            return {}
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # A damaged file must not stop signing; ids in it expire within the manifest
            # lifetime anyway. Keep the damaged copy for diagnostics.
            self._path.replace(self._path.with_suffix(".damaged"))
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and type(v) is int}

    @staticmethod
    def key(origin: str, batch_id: str) -> str:
        return f"{origin} {batch_id}"

    def is_used(self, origin: str, batch_id: str) -> bool:
        with self._lock:
            return self.key(origin, batch_id) in self._used

    def consume(self, origin: str, batch_id: str, expires_at: int, now: float) -> None:
        with self._lock:
            self._used = {k: exp for k, exp in self._used.items() if exp + LEEWAY_SECONDS >= now}
            self._used[self.key(origin, batch_id)] = expires_at
            self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".used-batches.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self._used, fh)
        os.replace(tmp, self._path)
