"""Fixtures of the signing HTTP tests: import them into a test module with

    from support.signing_fixtures import *  # noqa: F403

``pki`` (software officer keys and their trust anchors, once per module) and ``signing_app``
(the test's app trusting that PKI, with a public origin and a fresh manifest key).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from kyso.platform.signing.manifest import ManifestSigner
from support.signing_keys import Pki, make_pki

__all__ = ["pki", "signing_app"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def signing_app(app: Flask, pki: Pki) -> Flask:
    app.config["TRUST_ANCHORS"] = str(pki.anchors)
    app.config["PUBLIC_ORIGIN"] = "https://tiemchung.example.vn"
    app.extensions["kyso.manifest_signer"] = ManifestSigner(ec.generate_private_key(ec.SECP256R1()))
    return app
