"""Provisioning SoftHSM2 tokens, and the SoftHSM2 behaviour the other tests rely on."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization

from kyso.agent.token import softhsm as softhsm2
from kyso.agent.token.model import Algorithm, PinIncorrect, PinStatus
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import KeySpec, ProvisionedToken

pytest_plugins = ["softhsm_fixtures"]


def test_keys_are_generated_on_the_token_and_stay_there(softhsm: ProvisionedToken) -> None:
    assert softhsm2.private_key_attributes(softhsm, "p256") == {
        "private": True,
        "sensitive": True,
        "extractable": False,
        "always_authenticate": False,
        "sign": True,
        "decrypt": False,
    }
    assert softhsm2.private_key_attributes(softhsm, "rsa_aa")["always_authenticate"]
    assert not softhsm2.private_key_attributes(softhsm, "p256_hidden")["private"]


def test_certificates_match_their_keys_unless_asked_not_to(softhsm: ProvisionedToken) -> None:
    for name, cert in softhsm.certificates.items():
        key = softhsm.keys[cert.key]
        assert cert.key_id == key.key_id
        assert cert.fingerprint_sha256 == hashlib.sha256(cert.der).hexdigest()
        assert cert.pem.startswith(b"-----BEGIN CERTIFICATE-----")
        certified = cert.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        own = key.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert (certified == own) == cert.matches_key == (not name.startswith("mismatch")), name


def test_pin_flags_written_into_the_token_are_reported(
    fresh_token: Pkcs11Token,
    fresh_softhsm: Callable[..., ProvisionedToken],
) -> None:
    fresh = fresh_softhsm(pin_status=PinStatus(count_low=True, final_try=True))
    info = next(i for i in fresh_token.present_tokens() if i.serial == fresh.serial)
    assert fresh_token.pin_status(info) == PinStatus(count_low=True, final_try=True)


def test_softhsm_never_locks_the_pin(
    fresh_token: Pkcs11Token,
    fresh_softhsm: Callable[..., ProvisionedToken],
) -> None:
    """SoftHSM2 2.6 counts nothing: after many wrong PINs it only sets COUNT_LOW.

    If this starts failing, SoftHSM2 learnt to lock and the lock tests can use it directly.
    """
    fresh = fresh_softhsm(keys=(KeySpec("p256"),))
    info = next(
        c
        for c in fresh_token.list_certificates()
        if c.fingerprint_sha256 == fresh.certificates["p256"].fingerprint_sha256
    )
    for _ in range(12):
        with pytest.raises(PinIncorrect) as wrong:
            fresh_token.sign_batch(
                info,
                Algorithm.ECDSA_SHA256,
                [b"\0" * 32],
                "999999",
                lambda offset, signatures: None,
                threading.Event(),
            )
        assert wrong.value.retries_left is None
    assert fresh_token.pin_status(info.token) == PinStatus(count_low=True)
    assert fresh_token.stats.logins == 12


def test_tokens_provisioned_later_become_visible(
    token: Pkcs11Token, fresh_softhsm: Callable[..., ProvisionedToken]
) -> None:
    fresh = fresh_softhsm(label="Trạm Y tế", keys=(KeySpec("p384", "EC", 384),))
    labels = {i.serial: i.label for i in token.present_tokens()}
    assert labels[fresh.serial] == "Trạm Y tế"
    assert fresh.keys["p384"].curve == "secp384r1"
