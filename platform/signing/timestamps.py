"""RFC 3161 signature time-stamps: CAdES-BES becomes CAdES-T.

After a signature is verified, the platform asks the time-stamping authority at ``KYSO_TSA_URL``
for a token over SHA-256 of the signature value (ETSI EN 319 122-1 5.3) and adds it to the
``SignerInfo`` as the unsigned attribute ``id-aa-signatureTimeStampToken``
(1.2.840.113549.1.9.16.2.14). Signed attributes and signature value are unchanged, so
``openssl cms -verify`` still passes; the token proves the signature existed at its time, so it
can be validated after the certificate expires.

Signatures are stored first, as CAdES-BES, and time-stamped after storage from the
``timestamp_queue`` (``stamping.py``, run by ``kyso-platform signing timestamp``): the officer
never waits for the TSA, and a TSA that cannot be reached delays the time-stamps, never the
signing. The queue asks for the tokens of many signatures concurrently (a bounded pool of
connections, one standard request per signature, ``KYSO_TSA_CONNECTIONS``). Batch mode stamps
its one batch signature at once when the TSA answers, and queues it otherwise.

An empty ``KYSO_TSA_URL`` disables time-stamping (development without a TSA).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import httpx
from asn1crypto import cms as asn1_cms
from asn1crypto import tsp as asn1_tsp

__all__ = [
    "TimestampFailed",
    "Timestamper",
    "add_timestamp",
    "signature_value",
    "timestamp_token",
    "timestamper",
    "token_time",
]

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_CONNECTIONS: Final = 8
CONTENT_TYPE: Final = "application/timestamp-query"


class TimestampFailed(Exception):
    """No usable token: the TSA is unreachable, refused or answered something else."""


def signature_value(cms_der: bytes) -> bytes:
    """The signature value of the single ``SignerInfo``: what the time-stamp is over."""
    signer_info = _signer_info(asn1_cms.ContentInfo.load(cms_der))
    value: bytes = signer_info["signature"].native
    return value


def _signer_info(content_info: Any) -> Any:
    return content_info["content"]["signer_infos"][0]


def add_timestamp(cms_der: bytes, token_der: bytes) -> bytes:
    """``cms_der`` with ``token_der`` as its signer's ``signature_time_stamp_token``.

    Only the unsigned attributes change; asn1crypto re-encodes the untouched parts from their
    parsed bytes, so the signed attributes and the signature are byte for byte the same."""
    content_info = asn1_cms.ContentInfo.load(cms_der)
    signer_info = _signer_info(content_info)
    token = asn1_cms.ContentInfo.load(token_der)
    signer_info["unsigned_attrs"] = asn1_cms.CMSAttributes(
        [asn1_cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]})]
    )
    der: bytes = content_info.dump(force=False)
    return der


def timestamp_token(cms_der: bytes) -> bytes | None:
    """The signature time-stamp token (DER ``ContentInfo``) of a CMS, if it has one."""
    signer_info = _signer_info(asn1_cms.ContentInfo.load(cms_der))
    for attribute in signer_info["unsigned_attrs"] or []:
        if attribute["type"].native == "signature_time_stamp_token":
            token: bytes = attribute["values"][0].dump()
            return token
    return None


def token_time(token_der: bytes) -> datetime:
    """The ``genTime`` of a time-stamp token (not verified: see ``verify-signed``)."""
    tst_info = _tst_info(asn1_cms.ContentInfo.load(token_der))
    moment: datetime = tst_info["gen_time"].native
    return moment


def _tst_info(token: Any) -> Any:
    return token["content"]["encap_content_info"]["content"].parsed


class Timestamper:
    """A TSA client: one request per signature, ``connections`` of them at a time."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.connections = connections
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.requests = 0  # tokens asked for (tests and bench)
        self.seconds = 0.0  # wall time spent waiting for the TSA (bench)

    def _client(self) -> httpx.Client:
        """One client (thread-safe) for the process: its pool keeps up to ``connections``
        connections alive between chunks, and its threads are started once."""
        with self._lock:
            if self._http is None:
                limits = httpx.Limits(
                    max_connections=self.connections, max_keepalive_connections=self.connections
                )
                self._http = httpx.Client(timeout=self.timeout, limits=limits)
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.connections, thread_name_prefix="kyso-tsa"
                )
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._http, self._pool = None, None

    def stamp(self, signature: bytes, *, timeout: float | None = None) -> bytes:
        """A verified-shape token over SHA-256 of ``signature``; raises ``TimestampFailed``.
        ``timeout`` (seconds) shortens this request's wait (default: the client's)."""
        imprint = hashlib.sha256(signature).digest()
        nonce = secrets.randbits(63)
        request = asn1_tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": imprint,
                },
                "nonce": nonce,
                "cert_req": True,
            }
        ).dump()
        try:
            answer = self._client().post(
                self.url,
                content=request,
                headers={"Content-Type": CONTENT_TYPE},
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise TimestampFailed(f"the TSA at {self.url} cannot be reached: {exc}") from exc
        if answer.status_code != 200:
            raise TimestampFailed(f"the TSA at {self.url} answered HTTP {answer.status_code}")
        try:
            response = asn1_tsp.TimeStampResp.load(answer.content)
            status = response["status"]["status"].native
            if status not in ("granted", "granted_with_mods"):
                raise TimestampFailed(f"the TSA refused the request ({status})")
            token = response["time_stamp_token"]
            tst_info = _tst_info(token)
            mi = tst_info["message_imprint"]
            if mi["hashed_message"].native != imprint or tst_info["nonce"].native != nonce:
                raise TimestampFailed("the TSA's token is not for the request (imprint or nonce)")
            der: bytes = token.dump()
        except TimestampFailed:
            raise
        except Exception as exc:  # asn1crypto's ValueError, TypeError, KeyError...
            raise TimestampFailed(f"the TSA's answer cannot be read: {exc}") from exc
        return der

    def stamp_each(self, signatures: Sequence[bytes]) -> list[bytes | TimestampFailed]:
        """A token or the failure for each of ``signatures``, in order, asked concurrently.

        The first is asked alone: when the TSA cannot answer it, the others are not asked
        (each would wait for its own time-out) and all fail with its reason."""
        if not signatures:
            return []
        started = time.perf_counter()
        try:
            first = self._attempt(signatures[0])
            if isinstance(first, TimestampFailed):
                return [first] * len(signatures)
            if len(signatures) == 1:
                return [first]
            self._client()
            assert self._pool is not None
            return [first, *self._pool.map(self._attempt, signatures[1:])]
        finally:
            self.requests += len(signatures)
            self.seconds += time.perf_counter() - started

    def _attempt(self, signature: bytes) -> bytes | TimestampFailed:
        try:
            return self.stamp(signature)
        except TimestampFailed as exc:
            return exc


def timestamper(settings: Mapping[str, Any]) -> Timestamper | None:
    """The platform's TSA client (``TSA_URL``, ``TSA_TIMEOUT``, ``TSA_CONNECTIONS``); None when
    no TSA is configured."""
    url = str(settings.get("TSA_URL") or "").strip()
    if not url:
        return None
    return Timestamper(
        url,
        timeout=float(settings.get("TSA_TIMEOUT") or DEFAULT_TIMEOUT),
        connections=int(settings.get("TSA_CONNECTIONS") or DEFAULT_CONNECTIONS),
    )
