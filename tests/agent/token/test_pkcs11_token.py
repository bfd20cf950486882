"""The token layer against a real PKCS#11 module (SoftHSM2), signatures checked by cryptography."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from kyso.agent import devpki
from kyso.agent.token import pkcs11_token
from kyso.agent.token import softhsm as softhsm2
from kyso.agent.token.model import (
    Algorithm,
    CertificateInfo,
    CertificateNotFound,
    KeyMismatch,
    ModuleLoadError,
    PinIncorrect,
    PinInvalid,
    PinLocked,
    PinStatus,
    SigningCancelled,
    SigningInterrupted,
    Token,
    TokenError,
    TokenNotPresent,
    TokenRemoved,
    TokenStats,
)
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken

pytest_plugins = ["softhsm_fixtures"]

PIN = "123456"
# python-pkcs11's own exceptions, reached through the one agent module that imports pkcs11.
PKCS11_ERRORS: Any = vars(pkcs11_token)["p11"]


@dataclass
class Sink:
    """Records what on_chunk receives, and on which thread."""

    calls: list[tuple[int, list[bytes]]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    then: Callable[[int], None] | None = None  # runs after recording a chunk at this offset

    def __call__(self, offset: int, signatures: list[bytes]) -> None:
        self.calls.append((offset, list(signatures)))
        self.threads.add(threading.current_thread().name)
        if self.then is not None:
            self.then(offset)

    @property
    def signatures(self) -> list[bytes]:
        return [signature for _offset, chunk in self.calls for signature in chunk]

    @property
    def offsets(self) -> list[int]:
        return [offset for offset, _chunk in self.calls]


def digests(count: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(count)]


def verify(der: bytes, algorithm: Algorithm, digest: bytes, signature: bytes) -> None:
    """Raises InvalidSignature unless ``signature`` is the certificate key's over ``digest``."""
    public_key = x509.load_der_x509_certificate(der).public_key()
    if algorithm is Algorithm.ECDSA_SHA256:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        # The agent returns the token's raw r || s (protocol.md), as WebCrypto does.
        half = public_key.curve.key_size // 8 + (public_key.curve.key_size % 8 > 0)
        assert len(signature) == 2 * half
        r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        der_signature = encode_dss_signature(r, s)
        public_key.verify(der_signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return
    assert isinstance(public_key, rsa.RSAPublicKey)
    scheme: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if algorithm is Algorithm.RSA_PSS_SHA256
        else padding.PKCS1v15()
    )
    public_key.verify(signature, digest, scheme, Prehashed(hashes.SHA256()))


def verifies(der: bytes, algorithm: Algorithm, digest: bytes, signature: bytes) -> bool:
    try:
        verify(der, algorithm, digest, signature)
    except InvalidSignature:
        return False
    return True


def delta(before: TokenStats, after: TokenStats) -> TokenStats:
    return TokenStats(
        **{
            f.name: getattr(after, f.name) - getattr(before, f.name)
            for f in dataclasses.fields(after)
        }
    )


def certificate(token: Pkcs11Token, provisioned: ProvisionedToken, name: str) -> CertificateInfo:
    wanted = provisioned.certificates[name].fingerprint_sha256
    for info in token.list_certificates():
        if info.fingerprint_sha256 == wanted:
            return info
    raise AssertionError(f"certificate {name} not listed")


@pytest.fixture(scope="module")
def certs(token: Pkcs11Token, softhsm: ProvisionedToken) -> dict[str, CertificateInfo]:
    listed = {info.fingerprint_sha256: info for info in token.list_certificates()}
    return {
        name: listed[cert.fingerprint_sha256]
        for name, cert in softhsm.certificates.items()
        if cert.fingerprint_sha256 in listed
    }


def sign(
    token: Pkcs11Token,
    info: CertificateInfo,
    algorithm: Algorithm,
    batch: list[bytes],
    sink: Sink | None = None,
    cancel: threading.Event | None = None,
    pin: str = PIN,
    chunk_size: int = 100,
) -> int:
    return token.sign_batch(
        info, algorithm, batch, pin, sink or Sink(), cancel or threading.Event(), chunk_size
    )


# --- discovery -----------------------------------------------------------------------------


def test_is_a_token(token: Pkcs11Token) -> None:
    def takes(protocol: Token) -> Token:
        return protocol

    assert takes(token) is token


def test_present_tokens_are_the_initialised_ones(
    token: Pkcs11Token, softhsm: ProvisionedToken
) -> None:
    present = token.present_tokens()
    ours = [info for info in present if info.serial == softhsm.serial]
    assert len(ours) == 1
    assert ours[0].label == "Kyso Test"
    assert ours[0].slot_id == softhsm.slot_id
    assert ours[0].manufacturer == "SoftHSM project"
    assert all(info.label for info in present)  # SoftHSM2's spare uninitialised slot is left out


def test_listing_reads_public_objects_without_login(
    fresh_token: Pkcs11Token, softhsm: ProvisionedToken
) -> None:
    tokens = len(fresh_token.present_tokens())
    fresh_token.list_certificates()
    assert fresh_token.stats == TokenStats(listings=tokens, sessions_opened=tokens)
    assert not softhsm2.user_logged_in(softhsm)


def test_listing_describes_each_certificate(
    certs: dict[str, CertificateInfo], softhsm: ProvisionedToken
) -> None:
    info = certs["p256"]
    issued = softhsm.certificates["p256"].certificate
    assert info.subject == (
        "UID=MST:0312345678,CN=Trạm Y tế Phường Bến Nghé,O=Trạm Y tế Phường Bến Nghé,"
        "L=Quận 1,ST=Hồ Chí Minh,C=VN"
    )
    assert info.issuer == softhsm.ca.certificate.subject.rfc4514_string()
    assert info.serial_hex == format(issued.serial_number, "X")
    assert info.serial_hex == info.serial_hex.upper()
    assert info.not_before == issued.not_valid_before_utc
    assert info.not_after == issued.not_valid_after_utc
    offset = info.not_before.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    assert info.key_usage == ("digitalSignature", "nonRepudiation")
    assert (info.key_type, info.key_size, info.curve) == ("EC", 256, "secp256r1")
    assert info.fingerprint_sha256 == softhsm.certificates["p256"].fingerprint_sha256
    assert info.der == softhsm.certificates["p256"].der
    assert info.key_id == softhsm.keys["p256"].key_id
    assert info.token.serial == softhsm.serial
    assert info.algorithms == (Algorithm.ECDSA_SHA256,)
    assert info.can_sign_at(datetime.now(UTC))

    assert (certs["rsa"].key_type, certs["rsa"].key_size, certs["rsa"].curve) == ("RSA", 2048, None)
    assert certs["rsa"].algorithms == (Algorithm.RSA_PKCS1_SHA256, Algorithm.RSA_PSS_SHA256)
    assert (certs["p384"].key_size, certs["p384"].curve) == (384, "secp384r1")
    assert "CN=Trung tâm Y tế Quận 3" in certs["p256_second"].subject


def test_listing_keeps_problem_certificates_for_the_service_to_refuse(
    certs: dict[str, CertificateInfo],
) -> None:
    now = datetime.now(UTC)
    assert not certs["expired"].can_sign_at(now)
    assert certs["no_signing_usage"].key_usage == ("keyEncipherment", "dataEncipherment")
    assert not certs["no_signing_usage"].can_sign_at(now)
    assert {"mismatch", "mismatch_ec", "mismatch_ec_hidden"} <= certs.keys()


def test_listing_finds_keys_by_private_object_and_skips_orphans(
    token: Pkcs11Token,
    softhsm: ProvisionedToken,
    fresh_softhsm: Callable[..., ProvisionedToken],
) -> None:
    # p256-hidden has no public-key object: its visible private-key object is what counts.
    assert certificate(token, softhsm, "p256_hidden").key_id == softhsm.keys["p256_hidden"].key_id
    fresh = fresh_softhsm()
    orphan = fresh.ca.issue(
        fresh.keys["p256"].public_key, devpki.vn_organisation_subject("Không có khoá")
    )
    softhsm2.store_certificate(fresh, orphan, devpki.random_key_id(), "orphan")
    on_fresh = [info for info in token.list_certificates() if info.token.serial == fresh.serial]
    assert [info.fingerprint_sha256 for info in on_fresh] == [
        fresh.certificates["p256"].fingerprint_sha256
    ]


# --- signing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("rsa", Algorithm.RSA_PKCS1_SHA256),
        ("rsa", Algorithm.RSA_PSS_SHA256),
        ("p256", Algorithm.ECDSA_SHA256),
        ("p384", Algorithm.ECDSA_SHA256),  # a P-384 key over a SHA-256 digest
        ("p256_hidden", Algorithm.ECDSA_SHA256),
    ],
)
def test_signs_every_digest_in_chunks(
    token: Pkcs11Token,
    certs: dict[str, CertificateInfo],
    softhsm: ProvisionedToken,
    name: str,
    algorithm: Algorithm,
) -> None:
    batch = digests(250)
    sink = Sink()
    before = token.stats
    assert sign(token, certs[name], algorithm, batch, sink) == 250
    assert sink.offsets == [0, 100, 200]
    assert [len(chunk) for _offset, chunk in sink.calls] == [100, 100, 50]
    for digest, signature in zip(batch, sink.signatures, strict=True):
        verify(certs[name].der, algorithm, digest, signature)
    assert delta(before, token.stats) == TokenStats(
        status_reads=1, sessions_opened=1, logins=1, signatures=250
    )
    assert not softhsm2.user_logged_in(softhsm)


def test_rsa_pkcs1_signature_is_deterministic_over_digest_info(
    token: Pkcs11Token, certs: dict[str, CertificateInfo]
) -> None:
    batch = [b"\x11" * 32, b"\x11" * 32]
    sink = Sink()
    sign(token, certs["rsa"], Algorithm.RSA_PKCS1_SHA256, batch, sink)
    first, second = sink.signatures
    assert first == second  # PKCS#1 v1.5 over the same DigestInfo
    public_key = x509.load_der_x509_certificate(certs["rsa"].der).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    numbers = public_key.public_numbers()
    encoded = pow(int.from_bytes(first, "big"), numbers.e, numbers.n).to_bytes(256, "big")
    assert encoded.endswith(pkcs11_token.DIGEST_INFO_SHA256_PREFIX + b"\x11" * 32)


def test_signature_verifies_with_the_requested_certificate_only(
    token: Pkcs11Token, certs: dict[str, CertificateInfo]
) -> None:
    batch = digests(3)
    sink = Sink()
    sign(token, certs["p256_second"], Algorithm.ECDSA_SHA256, batch, sink)
    assert all(
        verifies(certs["p256_second"].der, Algorithm.ECDSA_SHA256, d, s)
        for d, s in zip(batch, sink.signatures, strict=True)
    )
    assert not any(
        verifies(certs["p256"].der, Algorithm.ECDSA_SHA256, d, s)
        for d, s in zip(batch, sink.signatures, strict=True)
    )


def test_always_authenticate_key_logs_in_for_each_signature(
    token: Pkcs11Token, certs: dict[str, CertificateInfo], softhsm: ProvisionedToken
) -> None:
    assert softhsm2.private_key_attributes(softhsm, "rsa_aa")["always_authenticate"]
    batch = digests(5)
    sink = Sink()
    before = token.stats
    assert sign(token, certs["rsa_aa"], Algorithm.RSA_PSS_SHA256, batch, sink, chunk_size=2) == 5
    for digest, signature in zip(batch, sink.signatures, strict=True):
        verify(certs["rsa_aa"].der, Algorithm.RSA_PSS_SHA256, digest, signature)
    assert delta(before, token.stats) == TokenStats(
        status_reads=1, sessions_opened=1, logins=1 + 5, signatures=5
    )
    assert not softhsm2.user_logged_in(softhsm)


def test_chunk_size_one_and_empty_batch(
    fresh_token: Pkcs11Token, certs: dict[str, CertificateInfo]
) -> None:
    sink = Sink()
    assert sign(fresh_token, certs["p256"], Algorithm.ECDSA_SHA256, digests(3), sink, chunk_size=1)
    assert sink.offsets == [0, 1, 2]
    before = fresh_token.stats
    assert sign(fresh_token, certs["p256"], Algorithm.ECDSA_SHA256, []) == 0
    assert fresh_token.stats == before


# --- refusals before any token operation -------------------------------------------------


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_digests_that_are_not_32_bytes_are_refused(
    fresh_token: Pkcs11Token, certs: dict[str, CertificateInfo], length: int
) -> None:
    batch = [os.urandom(32), os.urandom(length)]
    with pytest.raises(ValueError, match="32"):
        sign(fresh_token, certs["rsa"], Algorithm.RSA_PKCS1_SHA256, batch)
    assert fresh_token.stats == TokenStats()


@pytest.mark.parametrize("bad", ["x" * 32, 32, None])
def test_digests_that_are_not_bytes_are_refused(
    fresh_token: Pkcs11Token, certs: dict[str, CertificateInfo], bad: Any
) -> None:
    with pytest.raises(ValueError, match="not bytes"):
        sign(fresh_token, certs["p256"], Algorithm.ECDSA_SHA256, [os.urandom(32), bad])
    assert fresh_token.stats == TokenStats()


def test_certificate_info_must_describe_its_der(
    fresh_token: Pkcs11Token, certs: dict[str, CertificateInfo]
) -> None:
    bigger = dataclasses.replace(certs["rsa"], key_size=4096)
    with pytest.raises(ValueError, match="DER"):
        sign(fresh_token, bigger, Algorithm.RSA_PKCS1_SHA256, digests(1))
    relabelled = dataclasses.replace(certs["p256"], key_type="RSA", key_size=256)
    with pytest.raises(ValueError, match="DER"):
        sign(fresh_token, relabelled, Algorithm.RSA_PKCS1_SHA256, digests(1))
    assert fresh_token.stats == TokenStats()


def test_algorithm_must_fit_the_key(
    fresh_token: Pkcs11Token, certs: dict[str, CertificateInfo]
) -> None:
    with pytest.raises(ValueError, match="EC key"):
        sign(fresh_token, certs["rsa"], Algorithm.ECDSA_SHA256, digests(1))
    with pytest.raises(ValueError, match="RSA key"):
        sign(fresh_token, certs["p256"], Algorithm.RSA_PSS_SHA256, digests(1))
    assert fresh_token.stats == TokenStats()


def test_empty_pin_spends_no_try(
    fresh_token: Pkcs11Token, certs: dict[str, CertificateInfo]
) -> None:
    with pytest.raises(PinInvalid):
        sign(fresh_token, certs["p256"], Algorithm.ECDSA_SHA256, digests(1), pin="")
    assert fresh_token.stats == TokenStats()


def test_cancelled_before_start_touches_nothing(
    fresh_token: Pkcs11Token, certs: dict[str, CertificateInfo]
) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SigningCancelled) as stopped:
        sign(fresh_token, certs["p256"], Algorithm.ECDSA_SHA256, digests(5), cancel=cancel)
    assert stopped.value.signed == 0
    assert fresh_token.stats == TokenStats()


def test_unknown_token_and_certificate(
    fresh_token: Pkcs11Token, certs: dict[str, CertificateInfo]
) -> None:
    elsewhere = dataclasses.replace(
        certs["p256"], token=dataclasses.replace(certs["p256"].token, serial="0000000000000000")
    )
    with pytest.raises(TokenNotPresent):
        sign(fresh_token, elsewhere, Algorithm.ECDSA_SHA256, digests(1))
    with pytest.raises(TokenNotPresent):
        fresh_token.pin_status(elsewhere.token)
    assert fresh_token.stats.sessions_opened == 0

    # A certificate the token does not hold is refused before the PIN is tried.
    forged = dataclasses.replace(certs["p256"], der=certs["p256_second"].der)
    with pytest.raises(CertificateNotFound):
        sign(fresh_token, forged, Algorithm.ECDSA_SHA256, digests(1))
    assert fresh_token.stats.logins == 0


# --- PIN -----------------------------------------------------------------------------------


def test_pin_status_of_a_fresh_token(token: Pkcs11Token, softhsm: ProvisionedToken) -> None:
    info = next(i for i in token.present_tokens() if i.serial == softhsm.serial)
    assert token.pin_status(info) == PinStatus()


def test_wrong_pin_is_one_login_and_no_signature(
    token: Pkcs11Token, fresh_softhsm: Callable[..., ProvisionedToken]
) -> None:
    fresh = fresh_softhsm()
    info = certificate(token, fresh, "p256")
    before = token.stats
    with pytest.raises(PinIncorrect) as wrong:
        sign(token, info, Algorithm.ECDSA_SHA256, digests(3), pin="000000")
    assert wrong.value.retries_left is None  # SoftHSM2 only says COUNT_LOW
    assert delta(before, token.stats) == TokenStats(
        status_reads=2, sessions_opened=1, logins=1, signatures=0
    )
    assert token.pin_status(info.token) == PinStatus(count_low=True)
    assert not softhsm2.user_logged_in(fresh)
    # The right PIN still works, and SoftHSM2 clears COUNT_LOW.
    assert sign(token, info, Algorithm.ECDSA_SHA256, digests(1)) == 1
    assert token.pin_status(info.token) == PinStatus()


def test_final_try_is_reported_as_one_retry_left(
    token: Pkcs11Token, fresh_softhsm: Callable[..., ProvisionedToken]
) -> None:
    fresh = fresh_softhsm(pin_status=PinStatus(final_try=True))
    info = certificate(token, fresh, "p256")
    assert token.pin_status(info.token).retries_left == 1
    with pytest.raises(PinIncorrect) as wrong:
        sign(token, info, Algorithm.ECDSA_SHA256, digests(1), pin="000000")
    assert wrong.value.retries_left == 1


def test_locked_pin_is_refused_without_login(
    fresh_token: Pkcs11Token, locked_softhsm: ProvisionedToken
) -> None:
    info = certificate(fresh_token, locked_softhsm, "p256")
    status = fresh_token.pin_status(info.token)
    assert status.locked
    assert status.retries_left == 0
    before = fresh_token.stats
    with pytest.raises(PinLocked):
        sign(fresh_token, info, Algorithm.ECDSA_SHA256, digests(2))
    assert delta(before, fresh_token.stats) == TokenStats(status_reads=1)


# --- key mismatch --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "algorithm", "signatures"),
    [
        ("mismatch", Algorithm.RSA_PKCS1_SHA256, 0),  # CKA_MODULUS differs
        ("mismatch_ec", Algorithm.ECDSA_SHA256, 0),  # CKA_EC_POINT differs
        ("mismatch_ec_hidden", Algorithm.ECDSA_SHA256, 1),  # the first signature fails
    ],
)
def test_key_mismatch_stops_before_anything_is_delivered(
    token: Pkcs11Token,
    certs: dict[str, CertificateInfo],
    softhsm: ProvisionedToken,
    name: str,
    algorithm: Algorithm,
    signatures: int,
) -> None:
    sink = Sink()
    before = token.stats
    with pytest.raises(KeyMismatch):
        sign(token, certs[name], algorithm, digests(50), sink)
    assert sink.calls == []
    assert delta(before, token.stats) == TokenStats(
        status_reads=1, sessions_opened=1, logins=1, signatures=signatures
    )
    assert not softhsm2.user_logged_in(softhsm)


# --- interruptions -------------------------------------------------------------------------


def test_cancel_mid_batch_delivers_what_was_signed(
    token: Pkcs11Token, certs: dict[str, CertificateInfo], softhsm: ProvisionedToken
) -> None:
    cancel = threading.Event()
    sink = Sink(then=lambda offset: cancel.set())
    batch = digests(350)
    before = token.stats
    with pytest.raises(SigningCancelled) as stopped:
        sign(token, certs["p256"], Algorithm.ECDSA_SHA256, batch, sink, cancel=cancel)
    assert stopped.value.signed == len(sink.signatures) == 100
    for digest, signature in zip(batch, sink.signatures, strict=False):
        verify(certs["p256"].der, Algorithm.ECDSA_SHA256, digest, signature)
    assert delta(before, token.stats).signatures == 100
    assert not softhsm2.user_logged_in(softhsm)


def test_token_removed_mid_batch(
    token: Pkcs11Token, fresh_softhsm: Callable[..., ProvisionedToken]
) -> None:
    """A real removal: softhsm2-util deletes the token from another process after 100 signatures.

    SoftHSM2 then fails C_Sign with CKR_OBJECT_HANDLE_INVALID and C_GetTokenInfo with
    CKR_GENERAL_ERROR; the token layer tells that from other failures by looking at the token.
    """
    fresh = fresh_softhsm()
    info = certificate(token, fresh, "p256")
    sink = Sink(then=lambda offset: softhsm2.delete_token(fresh) if offset == 0 else None)
    batch = digests(300)
    with pytest.raises(TokenRemoved) as removed:
        sign(token, info, Algorithm.ECDSA_SHA256, batch, sink)
    assert removed.value.signed == len(sink.signatures) == 100
    assert sink.offsets == [0]
    for digest, signature in zip(batch, sink.signatures, strict=False):
        verify(info.der, Algorithm.ECDSA_SHA256, digest, signature)
    assert fresh.serial not in {i.serial for i in token.present_tokens()}
    token.list_certificates()  # the broken slot does not break the listing


def _fail_after(count: int, error: type[Exception]) -> Callable[..., Any]:
    """Wraps the batch's C_Sign so that the call after ``count`` signatures raises ``error``."""
    original = pkcs11_token._signer

    def faulty(*args: Any) -> Any:
        signer = original(*args)
        calls = 0

        def sign(data: bytes) -> bytes:
            nonlocal calls
            calls += 1
            if calls > count:
                raise error()
            return signer.sign(data)

        return dataclasses.replace(signer, sign=sign)

    return faulty


def test_device_removed_error_mid_batch(
    token: Pkcs11Token,
    certs: dict[str, CertificateInfo],
    softhsm: ProvisionedToken,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Modules that report removal with CKR_DEVICE_REMOVED (fault injected at C_Sign)."""
    monkeypatch.setattr(pkcs11_token, "_signer", _fail_after(130, PKCS11_ERRORS.DeviceRemoved))
    batch = digests(300)
    sink = Sink()
    with pytest.raises(TokenRemoved) as removed:
        sign(token, certs["p256"], Algorithm.ECDSA_SHA256, batch, sink)
    assert removed.value.signed == len(sink.signatures) == 130
    assert sink.offsets == [0, 100]
    for digest, signature in zip(batch, sink.signatures, strict=False):
        verify(certs["p256"].der, Algorithm.ECDSA_SHA256, digest, signature)
    assert not softhsm2.user_logged_in(softhsm)


def test_other_failure_mid_batch_is_an_interruption(
    token: Pkcs11Token, certs: dict[str, CertificateInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pkcs11_token, "_signer", _fail_after(5, PKCS11_ERRORS.FunctionFailed))
    sink = Sink()
    with pytest.raises(SigningInterrupted) as stopped:
        sign(token, certs["p256"], Algorithm.ECDSA_SHA256, digests(20), sink)
    assert type(stopped.value) is SigningInterrupted
    assert stopped.value.signed == len(sink.signatures) == 5


# --- threads and lifecycle -----------------------------------------------------------------


def test_pkcs11_runs_on_the_worker_and_reentrant_calls_run_inline(
    token: Pkcs11Token, certs: dict[str, CertificateInfo], softhsm: ProvisionedToken
) -> None:
    seen: list[int] = []
    sink = Sink(then=lambda offset: seen.append(len(token.present_tokens())))
    sign(token, certs["p256"], Algorithm.ECDSA_SHA256, digests(3), sink)
    assert len(sink.threads) == 1
    assert next(iter(sink.threads)).startswith("kyso-pkcs11")
    assert len(seen) == 1
    assert seen[0] >= 1


def test_no_batch_inside_a_batch(
    token: Pkcs11Token, certs: dict[str, CertificateInfo], softhsm: ProvisionedToken
) -> None:
    """on_chunk runs on the worker; a nested batch there would end the outer batch's login."""

    def nested(offset: int) -> None:
        sign(token, certs["p256"], Algorithm.ECDSA_SHA256, digests(1))

    with pytest.raises(TokenError, match="already running"):
        sign(token, certs["p256"], Algorithm.ECDSA_SHA256, digests(3), Sink(then=nested))
    assert not softhsm2.user_logged_in(softhsm)
    assert sign(token, certs["p256"], Algorithm.ECDSA_SHA256, digests(2)) == 2


def test_callable_from_many_threads(token: Pkcs11Token, certs: dict[str, CertificateInfo]) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            batch = digests(20)
            sink = Sink()
            sign(token, certs["p256"], Algorithm.ECDSA_SHA256, batch, sink)
            assert all(
                verifies(certs["p256"].der, Algorithm.ECDSA_SHA256, d, s)
                for d, s in zip(batch, sink.signatures, strict=True)
            )
            token.list_certificates()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_module_load_errors(tmp_path: Any) -> None:
    with pytest.raises(ModuleLoadError):
        Pkcs11Token("libsofthsm2.so")  # relative: would search the library path
    with pytest.raises(ModuleLoadError):
        Pkcs11Token(str(tmp_path / "missing.so"))
    with pytest.raises(ModuleLoadError):
        Pkcs11Token("/lib/x86_64-linux-gnu/libz.so.1")  # no C_GetFunctionList


def test_close_is_final_and_leaves_other_instances_working(
    token: Pkcs11Token, softhsm: ProvisionedToken
) -> None:
    other = Pkcs11Token(softhsm.module_path)
    assert other.present_tokens()
    other.close()
    other.close()
    with pytest.raises(ModuleLoadError):
        other.present_tokens()
    assert token.present_tokens()  # the module stays initialised for the remaining user
