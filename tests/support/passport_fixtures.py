"""Fixtures of the passport tests: import them into a test module with

    from support.passport_fixtures import *  # noqa: F403

``passport_keys`` (the central keys on SoftHSM2), ``central_signer`` (an ``HsmSigner`` per
algorithm, shared), ``pdf_signing`` (the PDF passport's document-signing key, its root and
CRL), ``facility_pki`` and ``facility_officer`` (the officer key signing the
records), ``issuance`` (an ``IssuanceContext`` for ES256), ``issue`` (runs the issuance on the
test's database).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from kyso.agent.token.softhsm import ProvisionedToken
from kyso.platform.passport.hsm import HsmSigner
from kyso.platform.passport.issuance import IssuanceContext, RunSummary, issue_passports
from kyso.platform.passport.render import PdfSigning
from support.cms_pki import Officer, Pki, create_pki
from support.passport_hsm import PassportKeys, passport_keys_in

__all__ = [
    "central_signer",
    "facility_officer",
    "facility_pki",
    "issuance",
    "issue",
    "passport_keys",
    "pdf_signing",
]

_SIGNERS: dict[tuple[Path, str], HsmSigner] = {}
_PKI: list[Pki] = []


@pytest.fixture(scope="session")
def passport_keys(softhsm_dir: Path, softhsm: ProvisionedToken) -> PassportKeys:
    return passport_keys_in(softhsm_dir)


@pytest.fixture(params=["ES256", "PS256"])
def central_signer(request: pytest.FixtureRequest, passport_keys: PassportKeys) -> HsmSigner:
    return signer_for(passport_keys, request.param)


@pytest.fixture
def pdf_signing(passport_keys: PassportKeys) -> PdfSigning:
    return pdf_signing_for(passport_keys)


def pdf_signing_for(keys: PassportKeys, timestamper: Any = None) -> PdfSigning:
    key = (keys.token.token_dir, "document")
    if key not in _SIGNERS:
        _SIGNERS[key] = HsmSigner(keys.document_config())
    return PdfSigning(
        _SIGNERS[key], (keys.document_ca.certificate,), (keys.document_crl,), timestamper
    )


def signer_for(keys: PassportKeys, algorithm: str) -> HsmSigner:
    key = (keys.token.token_dir, algorithm)
    if key not in _SIGNERS:
        _SIGNERS[key] = HsmSigner(keys.config(algorithm))
    return _SIGNERS[key]


@pytest.fixture
def facility_pki() -> Pki:
    if not _PKI:
        _PKI.append(create_pki())
    return _PKI[0]


@pytest.fixture
def facility_officer(facility_pki: Pki) -> Officer:
    return facility_pki.cached_officer("P256")


def context_for(signer: HsmSigner, pki: Pki, **kw: Any) -> IssuanceContext:
    return IssuanceContext(
        trust=pki.trust(),
        sign=signer.sign,
        algorithm=signer.algorithm,
        certificate_der=signer.certificate_der,
        **kw,
    )


@pytest.fixture
def issuance(passport_keys: PassportKeys, facility_pki: Pki) -> IssuanceContext:
    return context_for(signer_for(passport_keys, "ES256"), facility_pki)


@pytest.fixture
def issue(app: Flask, issuance: IssuanceContext) -> Callable[..., RunSummary]:
    def run(context: IssuanceContext | None = None, **kw: Any) -> RunSummary:
        return issue_passports(app.extensions["kyso.sessions"], context or issuance, **kw)

    return run
