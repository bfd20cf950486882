"""The revocation list of superseded passports, in the EU DCC revocation format.

Every passport that was superseded (a correction, a later dose, a compromised batch) and has
not expired yet is revoked: its old QR code must stop verifying. The list follows the EU
gateway's DCC revocation list: batches of hashes, each batch for one signer ``kid`` and one
hash type, each hash the first 16 bytes of a SHA-256:

=================  ==========================================================================
``SIGNATURE``      of the COSE signature; for ECDSA (ES256) of its ``r`` value only (the first
                   half of r‖s), for RSA (PS256) of the whole signature
``UCI``            of the certificate identifier (``ci``, e.g. ``URN:UVCI:01:VN:…``), UTF-8
``COUNTRYCODEUCI`` of the issuing country code (the CWT ``iss``, "VN") followed by the UCI
=================  ==========================================================================

The platform publishes every revoked passport under all three types. A batch holds at most
``CHUNK`` hashes (the gateway's limit is 1000); its id is the first 16 bytes (hex) of SHA-256
of its document, so an unchanged batch keeps its id and a verifier downloads only new ones.

Published documents (each a JWS signed by the central passport key, see ``signedlist``):

- the index, at ``/.well-known/kyso/dcc/revocation-list`` (``index.jws`` in an exported
  directory): ``{"lastUpdated", "generatedAt", "more": false, "batches": [{"batchId",
  "country", "kid", "hashType", "date", "expires", "entries", "deleted": false}]}``;
- each batch, at ``…/revocation-list/<batchId>`` (``<batchId>.jws``): ``{"country",
  "expires", "kid", "hashType", "entries": [{"hash"}]}``, as the gateway serves it.

A verifier (``RevocationList.load``) checks the index's and every batch's signature against its
anchors and that each batch's content gives its id: a list altered anywhere is refused whole.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import base45  # type: ignore[import-untyped]
import cbor2
from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.models import Passport
from kyso.platform.passport.dcc import COUNTRY, CWT_ISS, HEADER_KID, PREFIX, parse_cose
from kyso.platform.passport.signedlist import ListError, read_source, sign_list, verify_list

__all__ = [
    "CHUNK",
    "HASH_TYPES",
    "Batch",
    "PlatformRevocations",
    "Publication",
    "RevocationList",
    "Revocations",
    "Revoked",
    "current_batches",
    "export",
    "index_document",
    "list_signer",
    "platform_list",
    "revocation_hashes",
]

HASH_TYPES: Final = ("SIGNATURE", "UCI", "COUNTRYCODEUCI")
CHUNK: Final = 1000
INDEX: Final = "index"


def _hash16(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


def revocation_hashes(
    *, signature: bytes, algorithm: str | None, uci: str | None, country: str | None
) -> dict[str, bytes]:
    """The revocation hash of a certificate under each hash type that applies to it."""
    hashes: dict[str, bytes] = {}
    if signature:
        part = signature[: len(signature) // 2] if algorithm == "ES256" else signature
        hashes["SIGNATURE"] = _hash16(part)
    if uci:
        hashes["UCI"] = _hash16(uci.encode("utf-8"))
        if country:
            hashes["COUNTRYCODEUCI"] = _hash16((country + uci).encode("utf-8"))
    return hashes


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Revoked:
    kid: bytes
    hashes: Mapping[str, bytes]
    revoked_at: datetime
    expires_at: datetime


def revoked_passports(session: Session, now: datetime | None = None) -> list[Revoked]:
    """Every superseded passport that has not expired, oldest revocation first."""
    now = now or datetime.now(UTC)
    rows = session.execute(
        select(
            Passport.payload,
            Passport.uvci,
            Passport.algorithm,
            Passport.superseded_at,
            Passport.expires_at,
        )
        .where(Passport.superseded_at.is_not(None), Passport.expires_at > now)
        .order_by(Passport.superseded_at, Passport.id)
    )
    revoked: list[Revoked] = []
    for payload, uvci, algorithm, superseded_at, expires_at in rows:
        cose = zlib.decompress(base45.b45decode(payload[len(PREFIX) :]))
        _, protected, unprotected, claims_bytes, signature = parse_cose(cose)
        claims = cbor2.loads(claims_bytes)
        kid = protected.get(HEADER_KID, unprotected.get(HEADER_KID))
        country = claims.get(CWT_ISS)
        revoked.append(
            Revoked(
                kid=kid if isinstance(kid, bytes) else b"",
                hashes=revocation_hashes(
                    signature=signature,
                    algorithm=algorithm,
                    uci=uvci,
                    country=country if isinstance(country, str) else COUNTRY,
                ),
                revoked_at=superseded_at,
                expires_at=expires_at,
            )
        )
    return revoked


@dataclass(frozen=True)
class Batch:
    kid: bytes
    hash_type: str
    hashes: tuple[bytes, ...]
    date: datetime  # the latest revocation it holds
    expires: datetime  # when its last certificate expires
    country: str = COUNTRY

    def document(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "expires": _iso(self.expires),
            "kid": base64.b64encode(self.kid).decode("ascii"),
            "hashType": self.hash_type,
            "entries": [{"hash": base64.b64encode(h).decode("ascii")} for h in self.hashes],
        }

    @property
    def batch_id(self) -> str:
        return batch_id(self.document())


def batch_id(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(canonical).digest()[:16].hex()


def build_batches(
    revoked: Sequence[Revoked], hash_types: Iterable[str] = HASH_TYPES, chunk: int = CHUNK
) -> list[Batch]:
    """The revoked certificates as batches per (kid, hash type), ``chunk`` hashes at most."""
    grouped: dict[tuple[bytes, str], list[Revoked]] = defaultdict(list)
    for hash_type in hash_types:
        if hash_type not in HASH_TYPES:
            raise ValueError(f"hash type {hash_type!r} is not one of {', '.join(HASH_TYPES)}")
        for entry in revoked:
            if hash_type in entry.hashes:
                grouped[(entry.kid, hash_type)].append(entry)
    batches: list[Batch] = []
    for (kid, hash_type), entries in grouped.items():
        for start in range(0, len(entries), chunk):
            part = entries[start : start + chunk]
            batches.append(
                Batch(
                    kid=kid,
                    hash_type=hash_type,
                    hashes=tuple(e.hashes[hash_type] for e in part),
                    date=max(e.revoked_at for e in part),
                    expires=max(e.expires_at for e in part),
                )
            )
    return batches


def current_batches(
    session: Session,
    *,
    now: datetime | None = None,
    hash_types: Iterable[str] = HASH_TYPES,
    chunk: int = CHUNK,
) -> list[Batch]:
    return build_batches(revoked_passports(session, now), hash_types, chunk)


def index_document(batches: Sequence[Batch], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    latest = max((b.date for b in batches), default=None)
    return {
        "generatedAt": _iso(now),
        "lastUpdated": _iso(latest) if latest else None,
        "more": False,
        "batches": [
            {
                "batchId": b.batch_id,
                "country": b.country,
                "kid": base64.b64encode(b.kid).decode("ascii"),
                "hashType": b.hash_type,
                "date": _iso(b.date),
                "expires": _iso(b.expires),
                "entries": len(b.hashes),
                "deleted": False,
            }
            for b in batches
        ],
    }


Signer = Callable[[dict[str, Any]], str]


def list_signer(sign: Callable[[bytes], bytes], algorithm: str, certificate_der: bytes) -> Signer:
    return lambda document: sign_list(document, sign, algorithm, certificate_der)


def export(
    directory: Path, batches: Sequence[Batch], signer: Signer, now: datetime | None = None
) -> list[Path]:
    """Writes ``index.jws`` and one ``<batchId>.jws`` per batch; removes batches no longer
    listed. Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    keep = {f"{b.batch_id}.jws" for b in batches} | {f"{INDEX}.jws"}
    for batch in batches:
        path = directory / f"{batch.batch_id}.jws"
        path.write_text(signer(batch.document()), encoding="ascii")
        written.append(path)
    index = directory / f"{INDEX}.jws"
    index.write_text(signer(index_document(batches, now)), encoding="ascii")
    written.append(index)
    for stale in directory.glob("*.jws"):
        if stale.name not in keep and len(stale.stem) == 32:
            stale.unlink()
    return written


class Publication:
    """The signed index and batches, rebuilt at most every ``ttl`` seconds per process.

    Building the list decodes every superseded, unexpired passport; the well-known URLs serve
    this instead (verifiers are told to cache them as long: ``Cache-Control: max-age``)."""

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._built = -math.inf
        self._index: str | None = None
        self._batches: dict[str, str] = {}

    def _refresh(self, session: Session, signer: Signer) -> None:
        with self._lock:
            if self._index is not None and time.monotonic() - self._built < self.ttl:
                return
            batches = current_batches(session)
            self._batches = {b.batch_id: signer(b.document()) for b in batches}
            self._index = signer(index_document(batches))
            self._built = time.monotonic()

    def index(self, session: Session, signer: Signer) -> str:
        self._refresh(session, signer)
        assert self._index is not None
        return self._index

    def batch(self, session: Session, signer: Signer, identifier: str) -> str | None:
        self._refresh(session, signer)
        return self._batches.get(identifier)


class Revocations(Protocol):
    """What the verifier asks: is this certificate revoked, and under which hash type."""

    updated: datetime | None

    def find(
        self, kid: bytes | None, hashes: Mapping[str, bytes], uci: str | None = None
    ) -> str | None: ...


@dataclass
class PlatformRevocations:
    """The platform's own passports, asked in the database (the verify page and the CLI with
    a database): a certificate is revoked when the platform superseded the passport with its
    UCI and it has not expired. One indexed lookup (``passports.uvci`` is unique), where the
    published list would decode every superseded passport for each request."""

    session: Session
    now: datetime | None = None
    updated: datetime | None = None  # live: the database is always current

    def find(
        self, kid: bytes | None, hashes: Mapping[str, bytes], uci: str | None = None
    ) -> str | None:
        if not uci:
            return None
        found = self.session.execute(
            select(Passport.signer_kid, Passport.superseded_at, Passport.expires_at).where(
                Passport.uvci == uci
            )
        ).first()
        if found is None or found.superseded_at is None:
            return None
        if kid is not None and base64.b64encode(kid).decode("ascii") != found.signer_kid:
            return None  # the same UCI under another signer: not a certificate we issued
        return "UCI"


def platform_list(session: Session) -> PlatformRevocations:
    return PlatformRevocations(session)


# --- the verifier's side -------------------------------------------------------------------------


@dataclass
class RevocationList:
    """Revoked hashes by (kid, hash type), from the platform's database or a signed list."""

    entries: dict[tuple[bytes, str], set[bytes]] = field(default_factory=dict)
    updated: datetime | None = None
    batches: int = 0

    def add(self, batch: Batch) -> None:
        self.entries.setdefault((batch.kid, batch.hash_type), set()).update(batch.hashes)
        self.batches += 1
        if self.updated is None or batch.date > self.updated:
            self.updated = batch.date

    @classmethod
    def from_batches(cls, batches: Iterable[Batch]) -> RevocationList:
        found = cls()
        for batch in batches:
            found.add(batch)
        return found

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def find(
        self, kid: bytes | None, hashes: Mapping[str, bytes], uci: str | None = None
    ) -> str | None:
        """The hash type under which the certificate is revoked, or None."""
        for hash_type, value in hashes.items():
            if value in self.entries.get((kid or b"", hash_type), ()):
                return hash_type
        return None

    @classmethod
    def load(
        cls,
        source: str,
        anchors: Sequence[x509.Certificate],
        at: datetime | None = None,
    ) -> RevocationList:
        """The list published at ``source`` (its URL, or an exported directory); every
        document's signature is checked against ``anchors``. ``ListError`` says what is wrong.
        """
        at = at or datetime.now(UTC)
        index = verify_list(read_source(source), anchors, at)  # the URL itself, or index.jws
        listed = index.get("batches")
        if not isinstance(listed, list):
            raise ListError("the revocation list's index lists no batches")
        found = cls(updated=_parse_time(index.get("lastUpdated")))
        for entry in listed:
            if not isinstance(entry, dict) or not isinstance(entry.get("batchId"), str):
                raise ListError("the revocation list's index has a malformed batch entry")
            if entry.get("deleted"):
                continue
            expires = _parse_time(entry.get("expires"))
            if expires is not None and expires < at:
                continue  # every certificate of the batch has expired anyway
            identifier = entry["batchId"]
            if not identifier.isalnum():
                raise ListError(f"the batch id {identifier!r} is malformed")
            document = verify_list(read_source(source, identifier), anchors, at)
            if batch_id(document) != identifier:
                raise ListError(f"batch {identifier} does not hold what its id names")
            found.add(_batch_from(document, identifier))
        found.updated = _parse_time(index.get("lastUpdated"))
        return found


def _batch_from(document: Mapping[str, Any], identifier: str) -> Batch:
    try:
        hash_type = str(document["hashType"])
        if hash_type not in HASH_TYPES:
            raise ValueError(f"unknown hash type {hash_type!r}")
        hashes = tuple(base64.b64decode(e["hash"], validate=True) for e in document["entries"])
        kid = base64.b64decode(document["kid"], validate=True)
        expires = _parse_time(document.get("expires")) or datetime.max.replace(tzinfo=UTC)
    except (KeyError, TypeError, ValueError) as exc:
        raise ListError(f"batch {identifier} is malformed: {exc}") from exc
    return Batch(kid, hash_type, hashes, date=datetime.min.replace(tzinfo=UTC), expires=expires)
