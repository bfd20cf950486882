"""What the token layer tells the rest of the agent: plain data and errors, no pkcs11 import.

Everything outside ``kyso.agent.token`` depends on this module only, never on python-pkcs11.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kyso.agent.errors import AgentError


class Algorithm(enum.StrEnum):
    """Signature algorithms the agent offers. Every one signs a 32-byte SHA-256 digest."""

    RSA_PKCS1_SHA256 = "RSA_PKCS1_SHA256"  # CKM_RSA_PKCS over a DigestInfo the agent builds
    RSA_PSS_SHA256 = "RSA_PSS_SHA256"  # CKM_RSA_PKCS_PSS, SHA-256, MGF1-SHA-256, salt 32
    ECDSA_SHA256 = "ECDSA_SHA256"  # CKM_ECDSA; the agent returns the raw r || s (P1363)

    @property
    def key_type(self) -> str:
        return "EC" if self is Algorithm.ECDSA_SHA256 else "RSA"


@dataclass(frozen=True)
class TokenInfo:
    slot_id: int
    label: str
    manufacturer: str
    model: str
    serial: str


@dataclass(frozen=True)
class PinStatus:
    """The token's PIN flags, read before any login."""

    count_low: bool = False  # CKF_USER_PIN_COUNT_LOW: a wrong PIN was entered since last success
    final_try: bool = False  # CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks the token
    locked: bool = False  # CKF_USER_PIN_LOCKED: no login may be attempted

    @property
    def retries_left(self) -> int | None:
        """What PKCS#11 lets us know: 0 when locked, 1 on the final try, otherwise unknown."""
        if self.locked:
            return 0
        if self.final_try:
            return 1
        return None


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate on a token that has a matching private key (same CKA_ID)."""

    token: TokenInfo
    key_id: bytes  # CKA_ID shared by the certificate and its private key
    der: bytes
    fingerprint_sha256: str  # lower-case hex of SHA-256 over the DER
    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    serial_hex: str  # upper-case hex, no separators
    not_before: datetime  # timezone-aware UTC
    not_after: datetime  # timezone-aware UTC
    key_usage: tuple[str, ...]  # e.g. ("digitalSignature", "nonRepudiation")
    key_type: str  # "RSA" or "EC"
    key_size: int  # RSA modulus bits, or EC curve bits
    curve: str | None  # "secp256r1", "secp384r1" or None for RSA

    @property
    def algorithms(self) -> tuple[Algorithm, ...]:
        return tuple(a for a in Algorithm if a.key_type == self.key_type)

    def can_sign_at(self, when: datetime) -> bool:
        usable = {"digitalSignature", "nonRepudiation"} & set(self.key_usage)
        return bool(usable) and self.not_before <= when <= self.not_after


@dataclass(frozen=True)
class TokenStats:
    """Counters of the operations that reached the token (diagnostics and security tests)."""

    listings: int = 0  # certificate listings (C_FindObjects on public objects)
    status_reads: int = 0  # C_GetTokenInfo for PIN flags
    sessions_opened: int = 0
    logins: int = 0  # C_Login attempts, successful or not
    signatures: int = 0  # C_Sign calls


class TokenError(AgentError):
    """Base of every error the token layer raises."""


class ModuleLoadError(TokenError):
    """The PKCS#11 module could not be loaded or initialised."""


class TokenNotPresent(TokenError):
    """No token in the slot, or the certificate's token is not inserted."""


class CertificateNotFound(TokenError):
    """No certificate with that fingerprint (and a private key) on any present token."""


class KeyMismatch(TokenError):
    """The private key with the certificate's CKA_ID does not belong to the certificate."""


class PinIncorrect(TokenError):
    def __init__(self, retries_left: int | None) -> None:
        super().__init__(f"PIN incorrect (retries left: {retries_left})")
        self.retries_left = retries_left


class PinLocked(TokenError):
    """The user PIN is locked; no login was attempted."""


class PinInvalid(TokenError):
    """The PIN has a length or characters the token refuses (no retry was consumed)."""


class SigningInterrupted(TokenError):
    """A batch stopped part-way. The ``signed`` signatures made before it were delivered."""

    def __init__(self, signed: int, cause: TokenError | None = None) -> None:
        super().__init__(f"signing stopped after {signed} signatures")
        self.signed = signed
        self.cause = cause


class TokenRemoved(SigningInterrupted):
    """The token disappeared in the middle of a batch."""


class SigningCancelled(SigningInterrupted):
    """The batch was cancelled (by the officer or the page) between two signatures."""


class ChunkSink(Protocol):
    def __call__(self, offset: int, signatures: list[bytes]) -> None:
        """Receives signatures ``offset .. offset+len-1`` of a batch, in order."""


class Token(Protocol):
    """The token layer as the service sees it.

    Every method blocks and is safe to call from any thread: the implementation runs all PKCS#11
    calls on its own single worker thread. Callers on the asyncio thread use
    ``asyncio.to_thread``.
    """

    @property
    def stats(self) -> TokenStats: ...

    def present_tokens(self) -> list[TokenInfo]:
        """Tokens in their slots now (C_GetSlotList with tokenPresent); cheap, no login."""
        ...

    def refresh_presence(self) -> list[TokenInfo]:
        """``present_tokens`` for the hot-plug monitor, which calls it about twice a second.

        Some modules (SoftHSM2, some token drivers) see a token inserted after C_Initialize only
        after the next C_Initialize: while no token is present, the implementation may
        re-initialise the module (never during an operation) so that an insertion is seen.
        """
        ...

    def list_certificates(self) -> list[CertificateInfo]:
        """Certificates that have a private key with the same CKA_ID, on all present tokens."""
        ...

    def pin_status(self, token: TokenInfo) -> PinStatus:
        """Reads the PIN flags (C_GetTokenInfo) fresh; raises TokenNotPresent."""
        ...

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
        """Signs every 32-byte digest with the certificate's key; returns the count signed.

        One session and exactly one C_Login per batch (plus a context-specific login per
        signature when the key has CKA_ALWAYS_AUTHENTICATE); logout and close afterwards, also on
        error. Refuses a locked PIN without calling C_Login (PinLocked). Checks the private
        key's public part against the certificate (KeyMismatch) before signing anything.
        Delivers signatures through ``on_chunk`` at least every ``chunk_size``; on removal or
        cancel, first delivers what was signed, then raises TokenRemoved / SigningCancelled with
        the count. Raises PinIncorrect(retries_left), PinInvalid, TokenNotPresent,
        CertificateNotFound.
        """
        ...

    def close(self) -> None:
        """Finalises the module and stops the worker thread."""
        ...
