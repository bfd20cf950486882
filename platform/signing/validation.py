"""Path validation of officers' certificates, with revocation, by pyhanko-certvalidator.

``validate_path`` builds and validates the path from the officer's certificate to one of the
trust anchors (RFC 5280: signatures, names, basic constraints and path length, key usage of the
issuers, validity at the time of the check, no MD5/SHA-1 signatures), and, when a
``RevocationChecker`` is given, the revocation status of every certificate of the path: OCSP at
the URL of the certificate's AIA, the CRL of its distribution point when there is no OCSP answer.

The revocation policy when no answer can be had (``KYSO_REVOCATION_POLICY``):

- ``hard`` (the default): a certificate that names an OCSP responder or a CRL is refused while
  neither can be reached (``REVOCATION_UNAVAILABLE``: "try again later"); certificates that name
  neither are accepted (their CA offers no revocation service to ask);
- ``soft``: accepted when no answer can be had; a "revoked" answer still refuses;
- ``off``: no revocation check (tests and offline development only).

One outcome (a validated path, or a revocation) is cached per certificate for
``KYSO_REVOCATION_CACHE_SECONDS`` (300): a 3,000-dose batch prepared and stored in chunks costs one
OCSP request. A failure to reach the responder is never cached.

``RevocationChecker.prefetch`` starts a certificate's validation in a thread of its own, so that
the caller's other work (the batch preparation's SQL) overlaps the responder's answer; a
``validate_path`` of the same certificate meanwhile waits for that validation and gets its
outcome (its refusal included) instead of asking the responder again. Nothing more is kept than
without it: the outcome is cached (or not) by the same rules.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import enum
import hashlib
import threading
import time
from collections.abc import AsyncGenerator, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.authority import CertTrustAnchor, derive_quals_from_cert
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    PathBuildingError,
    PathError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.fetchers.api import CertificateFetcher, Fetchers

__all__ = [
    "Evidence",
    "PathRefused",
    "RevocationChecker",
    "RevocationPolicy",
    "revocation_checker",
    "validate_path",
]

DEFAULT_TIMEOUT: Final = 5.0  # seconds, per OCSP/CRL request
DEFAULT_CACHE_SECONDS: Final = 300

T = TypeVar("T")


class RevocationPolicy(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    OFF = "off"


class PathRefused(Exception):
    """Why the path cannot be validated: ``kind`` is one of untrusted, expired, not_yet_valid,
    revoked, revocation_unavailable; ``detail`` in English for logs."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        revoked_at: datetime | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.revoked_at = revoked_at
        self.reason = reason


@dataclass(frozen=True)
class _Outcome:
    chain: tuple[x509.Certificate, ...] | None
    refused: PathRefused | None
    expires: float


@dataclass(frozen=True)
class Evidence:
    """The revocation answers a validation used (DER OCSP responses and CRLs): kept with the
    batches signed on them, so that their signatures can be validated later, offline."""

    ocsp: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()


class RevocationChecker:
    """The revocation policy, the responders' timeout and the per-certificate cache."""

    def __init__(
        self,
        policy: RevocationPolicy | str = RevocationPolicy.HARD,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        self.policy = RevocationPolicy(policy)
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._cache: dict[str, _Outcome] = {}
        self._evidence: dict[str, Evidence] = {}
        self._lock = threading.Lock()
        # Validations running now, by certificate: later callers wait for them.
        self._running: dict[str, concurrent.futures.Future[tuple[x509.Certificate, ...]]] = {}
        self.lookups = 0  # validations that went to the network (for tests and metrics)
        self.seconds = 0.0  # wall time of those validations (the bench reports it)

    def cached(self, key: str) -> _Outcome | None:
        with self._lock:
            outcome = self._cache.get(key)
            if outcome is not None and outcome.expires < time.monotonic():
                del self._cache[key]
                return None
            return outcome

    def remember(self, key: str, outcome: _Outcome) -> None:
        with self._lock:
            self._cache[key] = outcome

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def keep_evidence(self, key: str, evidence: Evidence) -> None:
        with self._lock:
            self._evidence[key] = evidence

    def prefetch(
        self,
        certificate: x509.Certificate,
        anchors: tuple[x509.Certificate, ...],
        intermediates: tuple[x509.Certificate, ...],
        at: datetime,
    ) -> bool:
        """Starts ``validate_path`` of ``certificate`` in a daemon thread unless its outcome is
        cached or a validation of it is already running; True when one was started.

        Its outcome is cached by ``validate_path``'s rules (a refusal for lack of an answer is
        not) and handed to every ``validate_path`` of the certificate that starts meanwhile."""
        if self.policy is RevocationPolicy.OFF:
            return False
        key = _key(certificate)
        if self.cached(key) is not None:
            return False
        with self._lock:
            if key in self._running:
                return False
            future: concurrent.futures.Future[tuple[x509.Certificate, ...]]
            future = concurrent.futures.Future()
            self._running[key] = future

        def run() -> None:
            try:
                result = _validate_and_cache(certificate, anchors, intermediates, at, self, key)
            except BaseException as exc:  # handed to the waiters, who raise it
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                with self._lock:
                    self._running.pop(key, None)

        threading.Thread(target=run, name="kyso-revocation-prefetch", daemon=True).start()
        return True

    def running(self, key: str) -> concurrent.futures.Future[tuple[x509.Certificate, ...]] | None:
        with self._lock:
            return self._running.get(key)

    def evidence(self, certificate_der: bytes) -> Evidence | None:
        """The OCSP responses and CRLs of the last validation of this certificate that went
        to the network (None when it never did)."""
        with self._lock:
            return self._evidence.get(hashlib.sha256(certificate_der).hexdigest())


def revocation_checker(settings: Mapping[str, Any]) -> RevocationChecker:
    """The checker of the platform's settings (``REVOCATION_POLICY``, ``REVOCATION_TIMEOUT``,
    ``REVOCATION_CACHE_SECONDS``)."""
    policy = str(settings.get("REVOCATION_POLICY") or RevocationPolicy.HARD.value).lower()
    try:
        parsed = RevocationPolicy(policy)
    except ValueError:
        raise ValueError(
            f"KYSO_REVOCATION_POLICY must be hard, soft or off, not {policy!r}"
        ) from None
    return RevocationChecker(
        parsed,
        timeout=_setting(settings, "REVOCATION_TIMEOUT", DEFAULT_TIMEOUT),
        cache_seconds=float(_setting(settings, "REVOCATION_CACHE_SECONDS", DEFAULT_CACHE_SECONDS)),
    )


class _NoIssuerFetching(CertificateFetcher):
    async def _nothing(self) -> AsyncGenerator[Any, None]:
        return
        yield  # an async generator that yields nothing

    def fetch_cert_issuers(self, cert: Any) -> AsyncGenerator[Any, None]:
        return self._nothing()

    def fetch_crl_issuers(self, certificate_list: Any) -> AsyncGenerator[Any, None]:
        return self._nothing()

    def fetched_certs(self) -> Iterable[Any]:
        return ()


def _setting(settings: Mapping[str, Any], name: str, default: float) -> float:
    value = settings.get(name)
    return default if value is None or value == "" else float(value)


def _asn1(certificate: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _anchor(certificate: x509.Certificate) -> CertTrustAnchor:
    """The anchor with its own constraints (pathLenConstraint, name constraints) applied.

    pyhanko-certvalidator 0.33 takes the attribute-authority path length from the qualifiers
    whenever a path length is set, and fails on None: it is given the same value."""
    asn1 = _asn1(certificate)
    qualifiers = derive_quals_from_cert(asn1)
    if qualifiers.max_path_length is not None:
        qualifiers = dataclasses.replace(qualifiers, max_aa_path_length=qualifiers.max_path_length)
    return CertTrustAnchor(asn1, quals=qualifiers)


def _cryptography(certificate: Any) -> x509.Certificate:
    return x509.load_der_x509_certificate(certificate.dump())


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to completion from synchronous code (a Flask view, a CLI command)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def validate_path(
    certificate: x509.Certificate,
    anchors: tuple[x509.Certificate, ...],
    intermediates: tuple[x509.Certificate, ...],
    at: datetime,
    revocation: RevocationChecker | None,
) -> tuple[x509.Certificate, ...]:
    """The issuers from ``certificate`` up to an anchor; raises ``PathRefused``.

    ``revocation=None`` (or a checker with policy ``off``) checks no revocation.
    """
    checking = revocation is not None and revocation.policy is not RevocationPolicy.OFF
    if not checking:
        chain, _ = _run(_validate(certificate, anchors, intermediates, at, revocation))
        return chain
    assert revocation is not None
    key = _key(certificate)
    # The cache is read again after looking for a running prefetch: one that ended in between
    # left its outcome there.
    for _ in range(2):
        outcome = revocation.cached(key)
        if outcome is not None:
            if outcome.refused is not None:
                raise outcome.refused
            assert outcome.chain is not None
            return outcome.chain
        running = revocation.running(key)
        if running is not None:
            # A prefetch of this certificate is asking the responder now: its answer is this
            # one's. A deadline well past the responder timeout, in case it never finishes.
            done, _ = concurrent.futures.wait([running], timeout=4 * revocation.timeout + 5)
            if done:
                return running.result()
            break
    return _validate_and_cache(certificate, anchors, intermediates, at, revocation, key)


def _key(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _validate_and_cache(
    certificate: x509.Certificate,
    anchors: tuple[x509.Certificate, ...],
    intermediates: tuple[x509.Certificate, ...],
    at: datetime,
    revocation: RevocationChecker,
    key: str,
) -> tuple[x509.Certificate, ...]:
    """The validation with revocation, its outcome cached (a revocation or a validated path;
    never a failure to get an answer)."""
    started = time.perf_counter()
    try:
        chain, evidence = _run(_validate(certificate, anchors, intermediates, at, revocation))
    except PathRefused as refused:
        if refused.kind == "revoked":
            revocation.remember(
                key, _Outcome(None, refused, time.monotonic() + revocation.cache_seconds)
            )
        raise
    finally:
        revocation.seconds += time.perf_counter() - started
    if evidence.ocsp or evidence.crls:
        revocation.keep_evidence(key, evidence)
    revocation.remember(key, _Outcome(chain, None, time.monotonic() + revocation.cache_seconds))
    return chain


async def _validate(
    certificate: x509.Certificate,
    anchors: tuple[x509.Certificate, ...],
    intermediates: tuple[x509.Certificate, ...],
    at: datetime,
    revocation: RevocationChecker | None,
) -> tuple[tuple[x509.Certificate, ...], Evidence]:
    policy = revocation.policy if revocation is not None else RevocationPolicy.OFF
    backend = AIOHttpFetcherBackend(
        per_request_timeout=revocation.timeout if revocation else DEFAULT_TIMEOUT
    )
    async with backend as fetched:
        # OCSP and CRLs are fetched; issuers' certificates are not (the trust bundle holds the
        # intermediates): a certificate the officer's page sends cannot make the platform
        # fetch URLs of its choosing before its path to an anchor is known.
        fetchers = Fetchers(fetched.ocsp_fetcher, fetched.crl_fetcher, _NoIssuerFetching())
        context = ValidationContext(
            trust_roots=[_anchor(c) for c in anchors],
            other_certs=[_asn1(c) for c in intermediates],
            moment=at,
            allow_fetching=policy is not RevocationPolicy.OFF,
            revocation_mode="hard-fail" if policy is RevocationPolicy.HARD else "soft-fail",
            fetchers=fetchers,
            # Today's OCSP answer or CRL also speaks for an earlier moment (a batch prepared
            # or a passport issued for a signature of the past): "good" now means it was not
            # revoked then, and "revoked since" is compared with that moment.
            retroactive_revinfo=True,
        )
        validator = CertificateValidator(_asn1(certificate), validation_context=context)
        if revocation is not None and policy is not RevocationPolicy.OFF:
            revocation.lookups += 1
        try:
            path = await validator.async_validate_path()
        except RevokedError as exc:
            if exc.is_ee_cert:
                raise PathRefused(
                    "revoked",
                    str(exc),
                    revoked_at=exc.revocation_dt,
                    reason=str(exc.reason.native) if exc.reason is not None else None,
                ) from None
            raise PathRefused("untrusted", str(exc)) from None
        except InsufficientRevinfoError as exc:
            raise PathRefused("revocation_unavailable", str(exc)) from None
        except ExpiredError as exc:
            raise PathRefused("expired" if exc.is_ee_cert else "untrusted", str(exc)) from None
        except NotYetValidError as exc:
            kind = "not_yet_valid" if exc.is_ee_cert else "untrusted"
            raise PathRefused(kind, str(exc)) from None
        except (PathBuildingError, PathError) as exc:
            raise PathRefused("untrusted", str(exc)) from None
        except ValidationError as exc:
            raise PathRefused("untrusted", str(exc)) from None
        evidence = Evidence(
            tuple(bytes(r.dump()) for r in context.ocsps),
            tuple(bytes(c.dump()) for c in context.crls),
        )
    issuers = tuple(_cryptography(c) for c in path.iter_certs(include_root=True))
    # iter_certs runs from the anchor down to the end-entity certificate: reverse it, and
    # leave the officer's own certificate out.
    ordered = tuple(reversed(issuers))
    return (ordered[1:] if ordered and ordered[0] == certificate else ordered), evidence
