"""SoftHSM2 fixtures: real PKCS#11 tokens for the token layer, the server and the security tests.

Load them from ``tests/conftest.py`` (which puts ``tests/`` on ``sys.path``) with
``from softhsm_fixtures import *  # noqa: F403``, or list ``"softhsm_fixtures"`` in
``pytest_plugins``.

One SoftHSM2 token directory serves the whole session (SoftHSM2 reads ``SOFTHSM2_CONF`` once per
C_Initialize, and a process has one instance of the module). Tokens provisioned later in the
session are made visible by re-initialising the module between tests, which every
``Pkcs11Token`` survives because it opens its sessions per operation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kyso.agent import devpki
from kyso.agent.token import softhsm as softhsm2
from kyso.agent.token.model import PinStatus
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import CertSpec, KeySpec, ProvisionedToken
from kyso.platform import testpki

__all__ = [
    "SO_PIN",
    "TEST_CERTIFICATES",
    "TEST_KEYS",
    "USER_PIN",
    "fresh_softhsm",
    "fresh_token",
    "locked_softhsm",
    "softhsm",
    "softhsm_ca",
    "softhsm_dir",
    "test_pki",
    "token",
]

USER_PIN = "123456"
SO_PIN = "12345678"

TEST_KEYS: tuple[KeySpec, ...] = (
    KeySpec("rsa", "RSA", 2048),
    KeySpec("p256", "EC", 256),
    KeySpec("p384", "EC", 384),
    KeySpec("rsa_aa", "RSA", 2048, always_authenticate=True),
    KeySpec("p256_second", "EC", 256),  # a second signing key of another organisation
    # No public-key object and a private-key object visible before login: only the first
    # signature can tell whether this key belongs to a certificate.
    KeySpec("p256_hidden", "EC", 256, public_key_object=False, private=False),
)


def _test_certificates() -> tuple[CertSpec, ...]:
    now = datetime.now(UTC)
    second_subject = devpki.vn_organisation_subject(
        "Trung tâm Y tế Quận 3", locality="Quận 3", tax_code="0301234567"
    )
    return (
        CertSpec("rsa", "rsa"),
        CertSpec("p256", "p256"),
        CertSpec("p384", "p384"),
        CertSpec("rsa_aa", "rsa_aa"),
        CertSpec("p256_second", "p256_second", subject=second_subject),
        CertSpec("p256_hidden", "p256_hidden"),
        # The key's previous certificate, expired (tokens keep them after renewal).
        CertSpec(
            "expired",
            "p256",
            not_before=now - timedelta(days=400),
            not_after=now - timedelta(days=35),
        ),
        # An encryption certificate: no digitalSignature, no nonRepudiation.
        CertSpec("no_signing_usage", "rsa", key_usage=("keyEncipherment", "dataEncipherment")),
        # CKA_ID of one key, public key of another: caught by comparing the modulus...
        CertSpec("mismatch", "rsa", public_key_of="rsa_aa"),
        # ... by comparing CKA_EC_POINT of the public-key object ...
        CertSpec("mismatch_ec", "p256_second", public_key_of="p256"),
        # ... or, with no public-key object, by verifying the first signature.
        CertSpec("mismatch_ec_hidden", "p256_hidden", public_key_of="p256"),
    )


TEST_CERTIFICATES: tuple[CertSpec, ...] = _test_certificates()


@pytest.fixture(scope="session")
def softhsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's SoftHSM2 directory; SOFTHSM2_CONF points at it from here on."""
    directory = tmp_path_factory.mktemp("softhsm")
    softhsm2.activate(softhsm2.write_config(directory))
    return directory


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testpki.TestPki]:
    """The session's test PKI (root, issuing CA, OCSP responder, CRLs, TSA), served over HTTP on
    an ephemeral port (``test_pki.base_url``; ``ocsp_url``, ``tsa_url``). Trust bundle:
    ``test_pki.write_anchors(path)``; revoke: ``test_pki.revoke(serial, at)``."""
    running = testpki.start(tmp_path_factory.mktemp("pki"))
    yield running.pki
    running.stop()


@pytest.fixture(scope="session")
def softhsm_ca(test_pki: testpki.TestPki) -> devpki.DevCA:
    """The officers' CA: the test PKI's issuing CA (AIA to its OCSP responder, CRL DP)."""
    return test_pki.issuing


@pytest.fixture(scope="session")
def softhsm(softhsm_dir: Path, softhsm_ca: devpki.DevCA) -> ProvisionedToken:
    """The officer's token: RSA-2048, P-256, P-384, an always-authenticate RSA key and the
    problem certificates (expired, non-signing, three kinds of key mismatch)."""
    return softhsm2.provision(
        softhsm_dir,
        label="Kyso Test",
        user_pin=USER_PIN,
        so_pin=SO_PIN,
        keys=TEST_KEYS,
        certificates=TEST_CERTIFICATES,
        ca=softhsm_ca,
    )


@pytest.fixture(scope="session")
def locked_softhsm(softhsm_dir: Path, softhsm_ca: devpki.DevCA) -> ProvisionedToken:
    """A second token whose flags say the user PIN is locked (SoftHSM2 never locks itself)."""
    return _provision_more(
        softhsm_dir, softhsm_ca, label="Kyso Locked", pin_status=PinStatus(locked=True)
    )


@pytest.fixture(scope="session")
def token(softhsm: ProvisionedToken) -> Iterator[Pkcs11Token]:
    """The agent's token layer on the SoftHSM2 module, shared by the session."""
    instance = Pkcs11Token(softhsm.module_path)
    yield instance
    instance.close()


@pytest.fixture
def fresh_token(softhsm: ProvisionedToken) -> Iterator[Pkcs11Token]:
    """A Pkcs11Token of its own, with counters at zero."""
    instance = Pkcs11Token(softhsm.module_path)
    yield instance
    instance.close()


@pytest.fixture
def fresh_softhsm(
    softhsm_dir: Path, softhsm_ca: devpki.DevCA, softhsm: ProvisionedToken
) -> Iterator[Callable[..., ProvisionedToken]]:
    """Provisions throw-away tokens for destructive tests (wrong PINs, locks, removal).

    Call it like ``kyso.agent.token.softhsm.provision`` without the directory (one P-256 key
    by default). The tokens are deleted afterwards.
    """
    made: list[ProvisionedToken] = []

    def make(**options: Any) -> ProvisionedToken:
        options.setdefault("label", f"Kyso Fresh {len(made) + 1}")
        provisioned = _provision_more(softhsm_dir, softhsm_ca, **options)
        made.append(provisioned)
        return provisioned

    yield make
    for provisioned in made:
        with contextlib.suppress(softhsm2.SoftHSMError):  # the test removed it already
            softhsm2.delete_token(provisioned)
    if made:
        softhsm2.rescan(softhsm.module_path)


def _provision_more(directory: Path, ca: devpki.DevCA, **options: Any) -> ProvisionedToken:
    options.setdefault("user_pin", USER_PIN)
    options.setdefault("so_pin", SO_PIN)
    options.setdefault("keys", (KeySpec("p256", "EC", 256),))
    return softhsm2.provision(directory, ca=ca, **options)
