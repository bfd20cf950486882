"""Pairing a new platform origin: the officer allows it, the agent fetches and pins its key.

Threat 1 stays whole: an origin that is not allowed is refused at the handshake (HTTP 403) with
no token operation, as before. The refusal is only *recorded* here as a pairing request that the
desktop app shows the officer:

1. a page from ``https://NEW`` connects: 403, and ``origin_refused`` records a request when the
   origin may be paired (https, written exactly as a browser sends it, a DNS name that is not an
   IP address nor punycode), when no other request is pending, and when the officer did not
   decline or ignore this origin in the last ``COOLDOWN_SECONDS``;
2. pairing listeners are told; the app shows the origin. "Allow" calls ``fetch_key``, which
   GETs ``https://NEW/.well-known/kyso/manifest-key.pem`` over HTTPS with certificate
   verification (never a redirect, at most ``MAX_KEY_BYTES``, ``timeout`` seconds) and returns
   the key and its SHA-256 fingerprint for the officer to compare with the one IT gave them;
3. "Confirm" calls ``approve``: the origin and its PEM key are stored per user with ``keyring``
   (service "Kyso Agent", one JSON entry) and join the allowlist at once; the page retries and
   connects. ``decline`` (or no answer within ``PENDING_SECONDS``) refuses it for 10 minutes.

Origins of the machine config always win: a user entry for the same origin is ignored, and a
machine origin cannot be removed. Nothing here imports Qt; every public method is thread-safe.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import keyring
import keyring.errors
from cryptography.hazmat.primitives import serialization

from kyso.agent import i18n
from kyso.agent.config import (
    AgentConfig,
    AllowedOrigin,
    ConfigError,
    key_fingerprint,
    load_manifest_key,
    normalise_origin,
)
from kyso.agent.errors import AgentError

log = logging.getLogger(__name__)

WELL_KNOWN_PATH: Final = "/.well-known/kyso/manifest-key.pem"
KEYRING_SERVICE: Final = "Kyso Agent"
KEYRING_ENTRY: Final = "approved-origins"
COOLDOWN_SECONDS: Final = 600  # a declined or ignored origin is not asked again before this
PENDING_SECONDS: Final = 120  # an unanswered request counts as ignored after this
MAX_KEY_BYTES: Final = 16 * 1024
DEFAULT_TIMEOUT: Final = 10.0


class PairingError(AgentError):
    """A pairing step failed; ``text`` (vi/en) tells the officer what happened and what to do."""

    def __init__(self, reason: str, **values: object) -> None:
        self.reason = reason  # catalogue key in pairing.toml, e.g. "redirect"
        self.values = values
        self.text = i18n.text(f"pairing.{reason}", **values)
        super().__init__(f"{reason}: {self.text.en}")


@dataclass(frozen=True)
class PairingRequest:
    """An origin refused at the handshake that the officer may allow."""

    origin: str
    requested_at: datetime


@dataclass(frozen=True)
class FetchedKey:
    """The manifest key an origin serves, as fetched for the officer to compare."""

    origin: str
    pem: str
    fingerprint: str  # SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex


@dataclass(frozen=True)
class ApprovedOrigin:
    """An origin of the allowlist, for the Settings window."""

    origin: str
    fingerprint: str
    machine: bool  # set by the administrator: cannot be removed by the user
    approved_at: datetime | None = None  # user entries only
    pem: str | None = None  # user entries only


PairingListener = Callable[[PairingRequest | None], None]


def pairable(origin_header: str) -> str | None:
    """The origin if a handshake from it may become a pairing request, else None.

    The header must already be in the browser's form (``normalise_origin`` gives it back
    unchanged), https, with a DNS name: no IP address, no ``localhost``, no punycode label (a
    look-alike of a real name is exactly what an attacker would ask the officer to allow).
    """
    try:
        origin = normalise_origin(origin_header)
    except ConfigError:
        return None
    if origin != origin_header or not origin.startswith("https://"):
        return None
    host = origin.removeprefix("https://").rsplit(":", 1)[0] if "]" not in origin else ""
    if not host or "." not in host or host.endswith(".localhost"):
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if any(label.startswith("xn--") for label in host.split(".")):
        return None
    return origin


def _key_fingerprint_pem(pem: str, origin: str) -> str:
    return key_fingerprint(load_manifest_key(pem, origin=origin))


# ---------------------------------------------------------------------------------------------
# The per-user store
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredOrigin:
    origin: str
    pem: str
    approved_at: datetime


class OriginStore:
    """The officer's approved origins in the OS keyring: one JSON entry, version 1."""

    def __init__(self, service: str = KEYRING_SERVICE, entry: str = KEYRING_ENTRY) -> None:
        self._service = service
        self._entry = entry

    def load(self) -> list[StoredOrigin]:
        """The stored origins; a damaged or unreadable entry counts as none (logged)."""
        try:
            raw = keyring.get_password(self._service, self._entry)
        except keyring.errors.KeyringError as exc:
            log.warning("cannot read the approved origins from the keyring: %s", exc)
            return []
        if not raw:
            return []
        try:
            data = json.loads(raw)
            entries = data["origins"] if data.get("version") == 1 else []
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("the approved origins in the keyring are damaged; ignoring them")
            return []
        found: list[StoredOrigin] = []
        for entry in entries if isinstance(entries, list) else []:
            try:
                origin = entry["origin"]
                pem = entry["manifest_key"]
                approved_at = datetime.fromisoformat(entry["approved_at"])
                if pairable(origin) != origin:
                    raise ValueError(origin)
                load_manifest_key(pem, origin=origin)
            except (ConfigError, ValueError, TypeError, KeyError):
                log.warning("ignoring a damaged approved origin in the keyring")
                continue
            found.append(StoredOrigin(origin, pem, approved_at))
        return found

    def save(self, origins: list[StoredOrigin]) -> None:
        data = {
            "version": 1,
            "origins": [
                {
                    "origin": o.origin,
                    "manifest_key": o.pem,
                    "approved_at": o.approved_at.isoformat(),
                }
                for o in origins
            ],
        }
        try:
            keyring.set_password(self._service, self._entry, json.dumps(data))
        except keyring.errors.KeyringError as exc:
            raise PairingError("store_failed", error=exc) from exc


# ---------------------------------------------------------------------------------------------
# The pairing manager
# ---------------------------------------------------------------------------------------------


class PairingManager:
    """The allowlist (machine config + the officer's approved origins) and pairing requests.

    ``verify`` is the TLS context for fetching keys (default: the system's trust store); tests
    give one with their own CA. ``resolve`` maps an origin's host to where to connect, keeping
    the name for SNI, certificate verification and ``Host`` (tests only; None: DNS).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: OriginStore | None = None,
        verify: ssl.SSLContext | None = None,
        resolve: Callable[[str], tuple[str, int]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._machine = {o.origin: o for o in config.origins}
        self._store = store or OriginStore()
        self._verify = verify or ssl.create_default_context()
        self._resolve = resolve
        self._timeout = timeout
        self._clock = clock
        # ``_lock`` guards the lists and is taken by every handshake (``allowed_origin``): it is
        # never held across a keyring call, which may wait for an unlock prompt or a stuck
        # daemon. ``_store_lock`` puts the keyring writes in order instead (issue 18).
        self._lock = threading.RLock()
        self._store_lock = threading.Lock()
        self._listeners: list[PairingListener] = []
        self._pending: PairingRequest | None = None
        self._pending_since = 0.0
        self._pending_taken = False  # the officer started on it: it no longer times out
        self._cooldown: dict[str, float] = {}
        # Origins the officer paired in this run: pairing was their consent to this page, so the
        # service does not ask again whether it may read the certificates.
        self._paired_now: set[str] = set()
        self._user: dict[str, tuple[StoredOrigin, AllowedOrigin]] = {}
        for stored in self._store.load():
            if stored.origin in self._machine:
                continue  # the administrator's entry wins
            allowed = AllowedOrigin.create(stored.origin, stored.pem)
            self._user[stored.origin] = (stored, allowed)

    # --- the allowlist ---------------------------------------------------------------------

    def allowed_origin(self, origin_header: str) -> AllowedOrigin | None:
        """The allowed origin equal, byte for byte, to the header: machine first, then user."""
        machine = self._machine.get(origin_header)
        if machine is not None:
            return machine
        with self._lock:
            user = self._user.get(origin_header)
        return user[1] if user is not None else None

    def origins(self) -> list[ApprovedOrigin]:
        """Every allowed origin: the administrator's first, then the officer's."""
        result = [
            ApprovedOrigin(o.origin, o.manifest_key_fingerprint, machine=True)
            for o in self._machine.values()
        ]
        with self._lock:
            for stored, allowed in self._user.values():
                result.append(
                    ApprovedOrigin(
                        stored.origin,
                        allowed.manifest_key_fingerprint,
                        machine=False,
                        approved_at=stored.approved_at,
                        pem=stored.pem,
                    )
                )
        return result

    def remove(self, origin: str) -> None:
        """Removes one of the officer's origins; the administrator's cannot be removed."""
        if origin in self._machine:
            raise PairingError("machine_origin", origin=origin)
        with self._store_lock:
            with self._lock:
                if origin not in self._user:
                    return
                remaining = [s for o, (s, _a) in self._user.items() if o != origin]
            self._store.save(remaining)  # may block: the handshake's lock is free meanwhile
            with self._lock:
                self._user.pop(origin, None)
                self._paired_now.discard(origin)
        log.info("origin %s removed by the user", origin)

    # --- requests ----------------------------------------------------------------------------

    @property
    def pending(self) -> PairingRequest | None:
        with self._lock:
            self._expire()
            return self._pending

    def add_pairing_listener(self, listener: PairingListener) -> Callable[[], None]:
        """``listener(request)`` on a new request, ``listener(None)`` when it is answered or
        dropped. Called on the thread that caused it (the asyncio thread for new requests)."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def origin_refused(self, origin_header: str) -> None:
        """A handshake from this origin was refused (403): maybe a new pairing request."""
        origin = pairable(origin_header)
        if origin is None or self.allowed_origin(origin) is not None:
            return
        with self._lock:
            self._expire()
            now = self._clock()
            if self._pending is not None or self._cooldown.get(origin, 0.0) > now:
                return
            self._pending = PairingRequest(origin, datetime.fromtimestamp(now, UTC))
            self._pending_since = now
            self._pending_taken = False
            request = self._pending
        log.info("pairing requested by %s", origin)
        self._notify(request)

    def decline(self, origin: str) -> None:
        """The officer said no: not asked again for ``COOLDOWN_SECONDS``."""
        with self._lock:
            self._cooldown[origin] = self._clock() + COOLDOWN_SECONDS
            answered = self._pending is not None and self._pending.origin == origin
            if answered:
                self._pending = None
        log.info("pairing of %s declined", origin)
        if answered:
            self._notify(None)

    def _expire(self) -> None:
        """Drops an unanswered request after PENDING_SECONDS (lock held); it counts as ignored."""
        pending = self._pending
        now = self._clock()
        if pending is None or self._pending_taken or now - self._pending_since < PENDING_SECONDS:
            return
        self._pending = None
        self._cooldown[pending.origin] = now + COOLDOWN_SECONDS
        log.info("pairing request of %s ignored", pending.origin)
        threading.Thread(target=self._notify, args=(None,), daemon=True).start()

    def _notify(self, request: PairingRequest | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(request)
            except Exception:
                log.exception("a pairing listener failed")

    # --- fetch and pin -------------------------------------------------------------------

    def fetch_key(self, origin: str) -> FetchedKey:
        """GETs the origin's manifest key over HTTPS (blocking: not on the Qt or asyncio thread).

        Raises PairingError: not_pairable, tls, network, status, redirect, too_large,
        key_invalid, key_not_p256.
        """
        if pairable(origin) != origin:
            raise PairingError("not_pairable", origin=origin)
        with self._lock:
            if self._pending is not None and self._pending.origin == origin:
                self._pending_taken = True
        url, headers, extensions = self._target(origin)
        # Asked unencoded, and read raw: a gzip answer inflates a 64 KB read to 64 MB before
        # MAX_KEY_BYTES could be checked; an encoded answer is refused instead.
        headers["Accept-Encoding"] = "identity"
        # httpx's timeout bounds each connect and read; a server that dribbles its answer
        # would otherwise choose when its key arrives. The whole fetch has this deadline.
        deadline = time.monotonic() + self._timeout
        try:
            with (
                httpx.Client(
                    verify=self._verify,
                    follow_redirects=False,
                    trust_env=False,
                    timeout=self._timeout,
                ) as client,
                client.stream("GET", url, headers=headers, extensions=extensions) as response,
            ):
                if response.is_redirect:
                    where = response.headers.get("Location", "?")[:200]
                    raise PairingError("redirect", origin=origin, location=where)
                if response.status_code != 200:
                    raise PairingError("status", origin=origin, status=response.status_code)
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding != "identity":
                    raise PairingError("key_invalid", origin=origin)
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > MAX_KEY_BYTES:
                        raise PairingError("too_large", origin=origin, limit=MAX_KEY_BYTES)
                    if time.monotonic() > deadline:
                        raise PairingError("network", origin=origin)
        except httpx.ConnectError as exc:
            if isinstance(exc.__cause__, ssl.SSLError) or "CERTIFICATE" in str(exc).upper():
                raise PairingError("tls", origin=origin) from exc
            raise PairingError("network", origin=origin) from exc
        except httpx.HTTPError as exc:
            raise PairingError("network", origin=origin) from exc
        return self._parse_key(origin, bytes(body))

    def _target(self, origin: str) -> tuple[str, dict[str, str], dict[str, Any]]:
        if self._resolve is None:
            return origin + WELL_KNOWN_PATH, {}, {}
        authority = origin.removeprefix("https://")
        host = authority.rsplit(":", 1)[0]
        address, port = self._resolve(host)
        return (
            f"https://{address}:{port}{WELL_KNOWN_PATH}",
            {"Host": authority},
            {"sni_hostname": host},
        )

    @staticmethod
    def _parse_key(origin: str, body: bytes) -> FetchedKey:
        try:
            text = body.decode("ascii").strip()
        except UnicodeDecodeError:
            raise PairingError("key_invalid", origin=origin) from None
        try:
            fingerprint = _key_fingerprint_pem(text, origin)
        except ConfigError as exc:
            if exc.message_id == "config.manifest_key_not_p256":
                raise PairingError(
                    "key_not_p256", origin=origin, kind=exc.values.get("kind")
                ) from None
            raise PairingError("key_invalid", origin=origin) from None
        return FetchedKey(origin, text + "\n", fingerprint)

    def paired_in_this_run(self, origin: str) -> bool:
        with self._lock:
            return origin in self._paired_now

    def approve(self, fetched: FetchedKey) -> ApprovedOrigin:
        """Pins the key the officer compared: stored in the keyring, allowed at once."""
        origin = fetched.origin
        if pairable(origin) != origin:
            raise PairingError("not_pairable", origin=origin)
        if origin in self._machine:
            raise PairingError("machine_origin", origin=origin)
        if _key_fingerprint_pem(fetched.pem, origin) != fetched.fingerprint:
            raise PairingError("key_invalid", origin=origin)
        stored = StoredOrigin(origin, fetched.pem, datetime.now(UTC).replace(microsecond=0))
        allowed = AllowedOrigin.create(origin, fetched.pem)
        with self._store_lock:
            with self._lock:
                others = [s for o, (s, _a) in self._user.items() if o != origin]
            self._store.save([*others, stored])  # may block: the handshake's lock is free
            self._commit_approval(origin, stored, allowed)
        log.info("origin %s paired, manifest key %s", origin, fetched.fingerprint)
        return ApprovedOrigin(
            origin,
            fetched.fingerprint,
            machine=False,
            approved_at=stored.approved_at,
            pem=stored.pem,
        )

    def _commit_approval(self, origin: str, stored: StoredOrigin, allowed: AllowedOrigin) -> None:
        with self._lock:
            self._user[origin] = (stored, allowed)
            self._paired_now.add(origin)
            self._cooldown.pop(origin, None)
            answered = self._pending is not None and self._pending.origin == origin
            if answered:
                self._pending = None
        if answered:
            self._notify(None)


# ---------------------------------------------------------------------------------------------
# The officer's "yes, this page may see the certificates", remembered across runs (issue 17)
# ---------------------------------------------------------------------------------------------

CONSENT_ENTRY: Final = "consented-origins"


class ConsentMemory:
    """The origins the officer allowed to read the certificate list, each with the key it had.

    Kept in the same keyring store as the paired origins (``OriginStore``, its own entry): the
    origin and the PEM of the manifest key it was allowed with. An answer counts again only for
    the same origin with the same key: if the administrator or a new pairing changes the key,
    the officer is asked again. Origins a browser may not pair (http, localhost, IP addresses)
    are not remembered and are asked once per run, as before. Thread-safe; every call may
    block on the keyring (not on the asyncio or Qt thread).
    """

    def __init__(self, store: OriginStore | None = None) -> None:
        self._store = store or OriginStore(entry=CONSENT_ENTRY)
        self._lock = threading.Lock()

    def origins(self) -> list[StoredOrigin]:
        return self._store.load()

    def remembered(self, allowed: AllowedOrigin) -> bool:
        """True if the officer allowed this origin, with this very key, in an earlier run."""
        return any(
            stored.origin == allowed.origin
            and _key_fingerprint_pem(stored.pem, stored.origin) == allowed.manifest_key_fingerprint
            for stored in self._store.load()
        )

    def remember(self, allowed: AllowedOrigin) -> bool:
        """Stores the officer's yes for this origin and key; False if it cannot be remembered."""
        if pairable(allowed.origin) != allowed.origin:
            return False
        pem = allowed.manifest_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
        stored = StoredOrigin(allowed.origin, pem, datetime.now(UTC).replace(microsecond=0))
        with self._lock:
            others = [s for s in self._store.load() if s.origin != allowed.origin]
            self._store.save([*others, stored])
        log.info("origin %s allowed to read the certificates (remembered)", allowed.origin)
        return True

    def forget(self, origin: str) -> bool:
        """Removes the remembered answer for ``origin``; False if there was none."""
        with self._lock:
            stored = self._store.load()
            remaining = [s for s in stored if s.origin != origin]
            if len(remaining) == len(stored):
                return False
            self._store.save(remaining)
        log.info("origin %s forgotten: the officer will be asked again", origin)
        return True
