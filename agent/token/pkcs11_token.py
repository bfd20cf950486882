"""The token layer on python-pkcs11: the only agent module that speaks PKCS#11.

Every PKCS#11 call runs on one worker thread that the ``Pkcs11Token`` owns, because tokens and
their middleware are often not thread-safe and because a batch must be one uninterrupted
session: open, one C_Login, sign, C_Logout, close. Public methods block and may be called from
any thread; a call made from the worker itself (e.g. inside ``on_chunk``) runs inline.

The batch loop is the hot path (a P-256 signature on SoftHSM2 takes ~0.1 ms): it runs on the
worker in one task, with the mechanism, its parameters and the key object prepared once, and
touches ``on_chunk`` and the counters once per chunk.

C_Login/C_Logout go through the module's own function table (``cryptoki.py``), so the
certificate is found first, a wrong PIN leaves no session behind, and the one session is logged
out and closed in every case. Beside this file: ``library.py`` (one initialised module per
process), ``certificates.py`` (what is read from a certificate, and the checks against it).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import (
    Attribute,
    CertificateType,
    KeyType,
    ObjectClass,
    TokenFlag,
)
from pkcs11 import exceptions as p11

from kyso.agent.errors import AgentError
from kyso.agent.token.certificates import (
    certificate_info,
    checked_certificate,
    ec_point_encodings,
    key_usage_names,
    verify_signature,
)
from kyso.agent.token.cryptoki import DIGEST_LENGTH, Cryptoki
from kyso.agent.token.library import (
    MODULE_LOCK,
    acquire_library,
    reinitialize_module,
    release_library,
)
from kyso.agent.token.model import (
    Algorithm,
    CertificateInfo,
    CertificateNotFound,
    ChunkSink,
    KeyMismatch,
    ModuleLoadError,
    PinIncorrect,
    PinInvalid,
    PinLocked,
    PinStatus,
    SigningCancelled,
    SigningInterrupted,
    TokenError,
    TokenInfo,
    TokenNotPresent,
    TokenRemoved,
    TokenStats,
)

__all__ = [
    "DIGEST_INFO_SHA256_PREFIX",
    "MODULE_LOCK",
    "Pkcs11Token",
    "certificate_info",
    "key_usage_names",
    "reinitialize_module",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# While no token is present, the module is re-initialised at most this often (refresh_presence).
RESCAN_SECONDS = 1.0
# DER of DigestInfo { AlgorithmIdentifier { id-sha256, NULL }, OCTET STRING (32 bytes) } minus
# the digest (RFC 8017 section 9.2 note 1). CKM_RSA_PKCS pads exactly what we give it, so the
# agent builds this itself: the page never chooses what the RSA key is applied to.
DIGEST_INFO_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")

# python-pkcs11 errors that mean the token (or our session on it) is gone.
_GONE: tuple[type[p11.PKCS11Error], ...] = (
    p11.DeviceRemoved,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.SlotIDInvalid,
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.DeviceError,
)
# In the middle of a batch, a key handle that was valid a moment ago only stops being valid when
# the token went away (a pulled and reinserted token invalidates every handle): the token is
# gone, whatever C_GetTokenInfo says while the middleware catches up.
_GONE_MID_BATCH: tuple[type[p11.PKCS11Error], ...] = (
    *_GONE,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
)


def _checked_digests(digests: Sequence[bytes]) -> list[bytes]:
    if all(type(digest) is bytes and len(digest) == DIGEST_LENGTH for digest in digests):
        return list(digests)  # the service's case, in a third of the loop's time
    checked = []
    for index, digest in enumerate(digests):
        if not isinstance(digest, bytes | bytearray | memoryview):
            raise ValueError(f"digest {index} is {type(digest).__name__}, not bytes")
        value = bytes(digest)
        if len(value) != DIGEST_LENGTH:
            raise ValueError(f"digest {index} has {len(value)} bytes; SHA-256 has 32")
        checked.append(value)
    return checked


# --- the token ---------------------------------------------------------------------------


@dataclass
class _Counters:
    """Mutated on the worker thread only; read from anywhere through ``snapshot``."""

    listings: int = 0
    status_reads: int = 0
    sessions_opened: int = 0
    logins: int = 0
    signatures: int = 0

    def snapshot(self) -> TokenStats:
        return TokenStats(
            listings=self.listings,
            status_reads=self.status_reads,
            sessions_opened=self.sessions_opened,
            logins=self.logins,
            signatures=self.signatures,
        )


def _pin_status(flags: int) -> PinStatus:
    return PinStatus(
        count_low=bool(flags & TokenFlag.USER_PIN_COUNT_LOW),
        final_try=bool(flags & TokenFlag.USER_PIN_FINAL_TRY),
        locked=bool(flags & TokenFlag.USER_PIN_LOCKED),
    )


def _token_info(slot_id: int, token: Any) -> TokenInfo:
    return TokenInfo(
        slot_id=slot_id,
        label=token.label,
        manufacturer=token.manufacturer_id,
        model=token.model,
        serial=token.serial.decode("utf-8", "replace").strip(),
    )


def _general_error(exc: p11.PKCS11Error) -> TokenError:
    """The model's error for a python-pkcs11 error outside the PIN and batch paths."""
    if isinstance(exc, _GONE):
        return TokenNotPresent(f"token not present ({type(exc).__name__})")
    return TokenError(f"PKCS#11 error: {type(exc).__name__} {exc}".strip())


def _attributes(obj: Any, keys: Sequence[Attribute]) -> dict[Attribute, Any]:
    """Reads the attributes the object has; tokens differ in which ones they expose."""
    try:
        values: dict[Attribute, Any] = obj.get_attributes(list(keys))
        return values
    except (p11.AttributeTypeInvalid, p11.AttributeSensitive, p11.FunctionFailed):
        pass
    values = {}
    for key in keys:
        try:
            values[key] = obj[key]
        except (p11.AttributeTypeInvalid, p11.AttributeSensitive, p11.FunctionFailed):
            continue
    return values


class Pkcs11Token:
    """``Token`` on a PKCS#11 module, e.g. the Vietnamese CAs' token drivers or SoftHSM2.

    ``Pkcs11Token(module_path)`` loads the module (absolute path; ModuleLoadError otherwise).
    Close it with ``close()`` or use it as a context manager.
    """

    def __init__(self, module_path: str) -> None:
        if not os.path.isabs(module_path):
            raise ModuleLoadError("the PKCS#11 module path must be absolute")
        self._module_path = module_path
        self._counters = _Counters()
        self._worker: int | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._lib: Any = None
        self._cryptoki: Cryptoki | None = None
        self._batch_running = False  # worker-side: a batch holds the token's one login
        self._last_rescan = time.monotonic()  # worker-side: see refresh_presence
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kyso-pkcs11", initializer=self._mark_worker
        )
        try:
            self._run(self._load)
        except BaseException:
            self._closed = True
            self._executor.shutdown(wait=True)
            raise

    # -- plumbing ------------------------------------------------------------------------

    def _mark_worker(self) -> None:
        self._worker = threading.get_ident()

    def _run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs ``function`` on the worker and waits for it (inline when already there)."""
        if threading.get_ident() == self._worker:
            return function(*args, **kwargs)
        if self._closed:
            raise ModuleLoadError("the token layer is closed")

        def locked() -> T:
            with MODULE_LOCK:
                return function(*args, **kwargs)

        try:
            future = self._executor.submit(locked)
        except RuntimeError as exc:  # shut down between the check and the submit
            raise ModuleLoadError("the token layer is closed") from exc
        return future.result()

    def _load(self) -> None:
        lib = acquire_library(self._module_path)
        try:
            self._cryptoki = Cryptoki(self._module_path)
        except (OSError, AttributeError) as exc:
            release_library(self._module_path, lib)
            raise ModuleLoadError(f"{self._module_path} has no usable C_GetFunctionList") from exc
        except BaseException:
            release_library(self._module_path, lib)
            raise
        self._lib = lib

    def _unload(self) -> None:
        if self._lib is not None:
            release_library(self._module_path, self._lib)
            self._lib = None

    def __enter__(self) -> Pkcs11Token:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Token protocol --------------------------------------------------------------------

    @property
    def stats(self) -> TokenStats:
        return self._counters.snapshot()

    def present_tokens(self) -> list[TokenInfo]:
        """Initialised tokens in their slots now; not counted in ``stats`` (no object is read)."""
        return self._run(self._present_tokens)

    def refresh_presence(self) -> list[TokenInfo]:
        """``present_tokens`` for the hot-plug monitor (see ``Token.refresh_presence``).

        While no token is present, the module is re-initialised (C_Finalize, C_Initialize) at
        most every ``RESCAN_SECONDS``: modules that enumerate tokens only in C_Initialize then
        see an inserted token too. Everything runs on the worker, so this never interrupts a
        session of ours; with no token present there is no session to lose.
        """
        return self._run(self._refresh_presence)

    def list_certificates(self) -> list[CertificateInfo]:
        """Certificates with a key of the same CKA_ID, from public sessions (no login).

        Tokens hide private objects until login, so a certificate counts as having its key when
        a private key OR a public key with its CKA_ID is visible (as NSS decides it); signing
        then insists on the private key.
        """
        return self._run(self._list_certificates)

    def pin_status(self, token: TokenInfo) -> PinStatus:
        return self._run(self._read_pin_status, token)

    def sign_batch(
        self,
        certificate: CertificateInfo,
        algorithm: Algorithm,
        digests: Sequence[bytes],
        pin: str,
        on_chunk: ChunkSink,
        cancel: threading.Event,
        chunk_size: int = 100,
    ) -> int:
        """See ``Token.sign_batch``. ``on_chunk`` runs on the worker thread: keep it short.

        Refused before any token operation: an algorithm of the wrong key type, a digest that is
        not 32 bytes (ValueError), an empty PIN (PinInvalid: it would only spend a try), a batch
        already cancelled (SigningCancelled(0)).
        """
        algorithm = Algorithm(algorithm)
        checked_certificate(certificate, algorithm)
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        checked = _checked_digests(digests)
        if not pin or "\x00" in pin:
            raise PinInvalid("empty PIN, or a NUL character in it")
        if cancel.is_set():
            raise SigningCancelled(0)
        if not checked:
            return 0
        return self._run(
            self._sign_batch,
            certificate,
            algorithm,
            checked,
            pin,
            on_chunk,
            cancel,
            chunk_size,
        )

    def close(self) -> None:
        """Finalises the module (when no other Pkcs11Token uses it) and stops the worker.

        A running batch finishes first: cancel it through its event to stop it sooner.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if threading.get_ident() == self._worker:
            self._unload()
            self._executor.shutdown(wait=False)
            return
        try:
            self._executor.submit(self._unload).result()
        finally:
            self._executor.shutdown(wait=True)

    # -- worker side ---------------------------------------------------------------------

    def _present(self) -> list[tuple[Any, TokenInfo]]:
        """(python-pkcs11 Token, TokenInfo) for each initialised token; one C_GetTokenInfo each."""
        try:
            slots = self._lib.get_slots(token_present=True)
        except p11.PKCS11Error as exc:
            raise _general_error(exc) from exc
        present = []
        for slot in slots:
            try:
                token = slot.get_token()
            except p11.PKCS11Error:
                continue  # removed since C_GetSlotList, or broken: not a usable token
            if token.flags & TokenFlag.TOKEN_INITIALIZED:
                present.append((token, _token_info(slot.slot_id, token)))
        return present

    def _present_tokens(self) -> list[TokenInfo]:
        return [info for _token, info in self._present()]

    def _refresh_presence(self) -> list[TokenInfo]:
        present = self._present_tokens()
        now = time.monotonic()
        if present or self._batch_running or now - self._last_rescan < RESCAN_SECONDS:
            return present
        self._last_rescan = now
        try:
            reinitialize_module(self._lib)
        except p11.PKCS11Error as exc:
            log.warning("re-initialising the PKCS#11 module failed: %s", type(exc).__name__)
            return []
        return self._present_tokens()

    def _find(self, wanted: TokenInfo) -> Any:
        """The token the TokenInfo names (by serial and manufacturer), with fresh flags."""
        matches = [
            token
            for token, info in self._present()
            if info.serial == wanted.serial and info.manufacturer == wanted.manufacturer
        ]
        if not matches:
            raise TokenNotPresent(f"token {wanted.label!r} is not present")
        for token in matches:
            if token.slot.slot_id == wanted.slot_id:
                return token
        return matches[0]

    def _read_pin_status(self, wanted: TokenInfo) -> PinStatus:
        token = self._find(wanted)
        self._counters.status_reads += 1
        return _pin_status(token.flags)

    def _open_session(self, token: Any) -> Any:
        try:
            session = token.open()
        except p11.PKCS11Error as exc:
            raise _general_error(exc) from exc
        self._counters.sessions_opened += 1
        return session

    @staticmethod
    def _close_session(session: Any) -> None:
        try:
            session.close()
        except p11.PKCS11Error as exc:
            log.info("C_CloseSession failed: %s", type(exc).__name__)

    def _list_certificates(self) -> list[CertificateInfo]:
        found: list[CertificateInfo] = []
        for token, info in self._present():
            try:
                found.extend(self._certificates_on(token, info))
            except (p11.PKCS11Error, TokenNotPresent) as exc:
                log.warning("skipping the token in slot %s: %s", info.slot_id, exc)
        return found

    def _certificates_on(self, token: Any, info: TokenInfo) -> list[CertificateInfo]:
        session = self._open_session(token)
        try:
            self._counters.listings += 1
            certificates: list[tuple[bytes, bytes]] = []
            for obj in session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                }
            ):
                values = _attributes(obj, (Attribute.ID, Attribute.VALUE))
                key_id, der = values.get(Attribute.ID), values.get(Attribute.VALUE)
                if key_id and der:
                    certificates.append((bytes(key_id), bytes(der)))
            key_ids: set[bytes] = set()
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in session.get_objects({Attribute.CLASS: object_class}):
                    key_id = _attributes(obj, (Attribute.ID,)).get(Attribute.ID)
                    if key_id:
                        key_ids.add(bytes(key_id))
        finally:
            self._close_session(session)
        result = []
        for key_id, der in certificates:
            if key_id in key_ids:
                parsed = certificate_info(info, key_id, der)
                if parsed is not None:
                    result.append(parsed)
        return result

    def _login(self, session: Any, token: Any, pin: str) -> None:
        """One C_Login(CKU_USER); a wrong PIN reports what the token's flags say is left."""
        assert self._cryptoki is not None
        handle = int(session.handle)
        for attempt in (1, 2):
            self._counters.logins += 1
            try:
                self._cryptoki.login(handle, pin)
                return
            except p11.UserAlreadyLoggedIn:
                # A login left over in this process would let a wrong PIN sign: end it and
                # log in again, so that this batch's PIN is the one checked.
                if attempt == 2:
                    raise TokenError("the token stays logged in") from None
                self._cryptoki.logout(handle)
            except p11.PinIncorrect:
                raise PinIncorrect(self._retries_left(token)) from None
            except p11.PinLocked:
                raise PinLocked("the token refused the login: PIN locked") from None
            except (p11.PinInvalid, p11.PinLenRange):
                raise PinInvalid("the token refuses this PIN's length or characters") from None
            except p11.PinExpired:
                raise TokenError("the PIN has expired: change it with the CA's tool") from None
            except p11.PKCS11Error as exc:
                raise _general_error(exc) from None

    def _retries_left(self, token: Any) -> int | None:
        try:
            flags = token.slot.get_token().flags
        except p11.PKCS11Error:
            return None
        self._counters.status_reads += 1
        return _pin_status(flags).retries_left

    def _still_present(self, token: Any, certificate: CertificateInfo) -> bool:
        """After a failed C_Sign: is the token, with the certificate we sign for, still there?

        A token being pulled (or SoftHSM's token being deleted) fails in stages: the key handle
        first, the token information later. So the certificate is looked for too: when it is
        gone, the token the batch was signing on is gone.
        """
        try:
            fresh = token.slot.get_token()
            self._counters.status_reads += 1
            if not (fresh.flags & TokenFlag.TOKEN_INITIALIZED and fresh.serial == token.serial):
                return False
            session = self._open_session(fresh)
            try:
                return self._certificate_on_token(session, certificate)
            finally:
                self._close_session(session)
        except (p11.PKCS11Error, TokenError):
            return False

    @staticmethod
    def _certificate_on_token(session: Any, certificate: CertificateInfo) -> bool:
        # Whole searches (list) so that C_FindObjectsFinal runs before the next one.
        found = list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: certificate.key_id}
            )
        )
        return any(
            _attributes(obj, (Attribute.VALUE,)).get(Attribute.VALUE) == certificate.der
            for obj in found
        )

    @staticmethod
    def _find_private_key(session: Any, certificate: CertificateInfo) -> Any:
        """The private key whose public half is the certificate's (KeyMismatch otherwise)."""
        candidates = list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: certificate.key_id}
            )
        )
        if not candidates:
            raise CertificateNotFound("no private key carries the certificate's CKA_ID")
        public_key = x509.load_der_x509_certificate(certificate.der).public_key()
        for key in candidates:
            if _key_matches(session, key, certificate.key_id, public_key):
                return key
        raise KeyMismatch("the private key with this CKA_ID does not belong to the certificate")

    def _sign_batch(
        self,
        certificate: CertificateInfo,
        algorithm: Algorithm,
        digests: list[bytes],
        pin: str,
        on_chunk: ChunkSink,
        cancel: threading.Event,
        chunk_size: int,
    ) -> int:
        if cancel.is_set():
            raise SigningCancelled(0)
        if self._batch_running:  # sign_batch from inside on_chunk: it would end our login
            raise TokenError("a batch is already running on this token layer")
        self._batch_running = True
        try:
            return self._sign_batch_alone(
                certificate, algorithm, digests, pin, on_chunk, cancel, chunk_size
            )
        finally:
            self._batch_running = False

    def _sign_batch_alone(
        self,
        certificate: CertificateInfo,
        algorithm: Algorithm,
        digests: list[bytes],
        pin: str,
        on_chunk: ChunkSink,
        cancel: threading.Event,
        chunk_size: int,
    ) -> int:
        token = self._find(certificate.token)
        self._counters.status_reads += 1  # _find read the flags with C_GetTokenInfo
        if token.flags & TokenFlag.USER_PIN_LOCKED:
            raise PinLocked("the token's PIN is locked")
        session = self._open_session(token)
        logged_in = False
        try:
            try:
                # Before the login, so that a stale certificate costs no PIN try.
                if not self._certificate_on_token(session, certificate):
                    raise CertificateNotFound("the certificate is not on the token any more")
                self._login(session, token, pin)
                logged_in = True
                key = self._find_private_key(session, certificate)
                always_authenticate = bool(
                    _attributes(key, (Attribute.ALWAYS_AUTHENTICATE,)).get(
                        Attribute.ALWAYS_AUTHENTICATE, False
                    )
                )
                if not isinstance(key, pkcs11.types.SignMixin):
                    raise KeyMismatch("the private key may not sign (CKA_SIGN is false)")
            except p11.PKCS11Error as exc:
                raise _general_error(exc) from exc
            assert self._cryptoki is not None
            signer = _signer(
                self._cryptoki,
                session,
                key,
                certificate,
                algorithm,
                pin if always_authenticate else None,
            )
            return self._sign_all(
                token,
                signer,
                certificate,
                algorithm,
                digests,
                on_chunk,
                cancel,
                chunk_size,
                always_authenticate,
            )
        finally:
            if logged_in:
                try:
                    assert self._cryptoki is not None
                    self._cryptoki.logout(int(session.handle))
                except p11.PKCS11Error as exc:
                    log.info("C_Logout failed: %s", type(exc).__name__)
            self._close_session(session)

    def _sign_all(
        self,
        token: Any,
        signer: _Signer,
        certificate: CertificateInfo,
        algorithm: Algorithm,
        digests: list[bytes],
        on_chunk: ChunkSink,
        cancel: threading.Event,
        chunk_size: int,
        always_authenticate: bool,
    ) -> int:
        """The hot loop: per digest one cancel check, one C_Sign and one append.

        Everything else happens once per chunk (on_chunk, the counters) or once per batch
        (building RSA DigestInfos, verifying the first signature against the certificate).
        """
        sign = signer.sign
        inputs = digests if signer.prepare is None else list(map(signer.prepare, digests))
        is_cancelled = cancel.is_set
        total = len(inputs)
        delivered = 0  # signatures handed to on_chunk
        pending: list[bytes] = []  # token output since then
        try:
            pending.append(sign(inputs[0]))
            # Whatever CKA_ID and the key's attributes said, the key is the certificate's only
            # if its signature verifies: check once, before signing anything else.
            if not verify_signature(certificate, algorithm, digests[0], pending[0]):
                raise KeyMismatch("the token's signature does not verify with the certificate")
            for start in range(0, total, chunk_size):
                end = min(start + chunk_size, total)
                append = pending.append
                for data in inputs[start + len(pending) : end]:
                    if is_cancelled():
                        raise _Cancelled
                    append(sign(data))
                chunk, pending = pending, []
                self._count(len(chunk), always_authenticate)
                on_chunk(start, chunk)
                delivered = end
        except KeyMismatch:
            self._count(len(pending), always_authenticate)
            raise
        except _Cancelled:
            signed = self._deliver_rest(on_chunk, delivered, pending, always_authenticate)
            raise SigningCancelled(signed) from None
        except p11.PKCS11Error as exc:
            signed = self._deliver_rest(on_chunk, delivered, pending, always_authenticate)
            if isinstance(exc, _GONE_MID_BATCH) or not self._still_present(token, certificate):
                raise TokenRemoved(signed, TokenNotPresent(type(exc).__name__)) from exc
            raise SigningInterrupted(signed, _general_error(exc)) from exc
        return total

    def _count(self, signatures: int, always_authenticate: bool) -> None:
        self._counters.signatures += signatures
        if always_authenticate:
            self._counters.logins += signatures  # one context-specific C_Login each

    def _deliver_rest(
        self,
        on_chunk: ChunkSink,
        offset: int,
        pending: list[bytes],
        always_authenticate: bool,
    ) -> int:
        """Hands over what was signed before a stop; returns the batch's count of signatures."""
        if pending:
            self._count(len(pending), always_authenticate)
            on_chunk(offset, pending)
        return offset + len(pending)


class _Cancelled(AgentError):
    """Internal: the cancel event was seen between two signatures."""


def _key_matches(session: Any, key: Any, key_id: bytes, public_key: Any) -> bool:
    """Compares the key's public part with the certificate's where the token shows it.

    RSA private keys carry CKA_MODULUS and CKA_PUBLIC_EXPONENT; EC private keys carry no point,
    so the public-key object with the same CKA_ID is read. When the token shows neither, the
    first signature's verification decides (see ``_sign_all``).
    """
    key_type = _attributes(key, (Attribute.KEY_TYPE,)).get(Attribute.KEY_TYPE)
    if isinstance(public_key, rsa.RSAPublicKey):
        if key_type != KeyType.RSA:
            return False
        numbers = public_key.public_numbers()
        values = _attributes(key, (Attribute.MODULUS, Attribute.PUBLIC_EXPONENT))
        if Attribute.MODULUS not in values:
            values = _public_object_attributes(
                session, key_id, (Attribute.MODULUS, Attribute.PUBLIC_EXPONENT)
            )
        if (
            Attribute.MODULUS in values
            and int.from_bytes(values[Attribute.MODULUS], "big") != numbers.n
        ):
            return False
        exponent = values.get(Attribute.PUBLIC_EXPONENT)
        return not exponent or int.from_bytes(exponent, "big") == numbers.e
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if key_type != KeyType.EC:
            return False
        point = _public_object_attributes(session, key_id, (Attribute.EC_POINT,)).get(
            Attribute.EC_POINT
        )
        return point is None or bytes(point) in ec_point_encodings(public_key)
    return False


def _public_object_attributes(
    session: Any, key_id: bytes, keys: Sequence[Attribute]
) -> dict[Attribute, Any]:
    found = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key_id})
    )
    return _attributes(found[0], keys) if found else {}


@dataclass(frozen=True)
class _Signer:
    """How a batch signs, fixed once: mechanism, parameters, input and output shaping."""

    sign: Callable[[bytes], bytes]  # one C_Sign
    prepare: Callable[[bytes], bytes] | None  # digest -> what the mechanism is applied to


def _digest_info(digest: bytes) -> bytes:
    return DIGEST_INFO_SHA256_PREFIX + digest


def _signer(
    cryptoki: Cryptoki,
    session: Any,
    key: Any,
    certificate: CertificateInfo,
    algorithm: Algorithm,
    context_pin: str | None,
) -> _Signer:
    # The token's r || s is returned as it is (protocol.md): converting 3,000 signatures to
    # DER here would cost 3 % of a P-256 batch; the platform converts when it builds the CMS.
    if algorithm is Algorithm.ECDSA_SHA256:
        size = 2 * ((certificate.key_size + 7) // 8)
    else:
        size = (certificate.key_size + 7) // 8
    sign = cryptoki.signer(int(session.handle), int(key.handle), algorithm, size, context_pin)
    prepare = _digest_info if algorithm is Algorithm.RSA_PKCS1_SHA256 else None
    return _Signer(sign, prepare)
