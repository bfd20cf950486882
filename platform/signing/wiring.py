"""The signing feature's wiring to the application: the trust anchors, the manifest key and
the revocation checker the app's configuration names, each opened once per process (kept in
``app.extensions``). Used by the signing API and by the certificate registration page
(``users.views``); web layer, not a views module (``tests/test_layout.py``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, current_app, request

from kyso.platform.errors import DomainError
from kyso.platform.models import SigningUnit
from kyso.platform.signing import batches, revocation
from kyso.platform.signing.certificates import CheckedCertificate, load_trust_store
from kyso.platform.signing.manifest import ManifestSigner, load_signer
from kyso.platform.signing.timestamps import timestamper
from kyso.platform.signing.validation import RevocationChecker, revocation_checker


def manifest_signer(app: Flask) -> ManifestSigner:
    signer = app.extensions.get("kyso.manifest_signer")
    if signer is None:
        configured = app.config.get("MANIFEST_KEY")
        path = Path(configured) if configured else Path(app.instance_path) / "manifest-key.pem"
        signer = load_signer(path, create=not configured)
        app.extensions["kyso.manifest_signer"] = signer
    return signer


def signing_context() -> batches.SigningContext:
    app = current_app
    trust = app.extensions.get("kyso.trust_store")
    if trust is None:
        configured = app.config.get("TRUST_ANCHORS")
        path = Path(configured) if configured else Path(app.instance_path) / "trust-anchors.pem"
        if not path.exists():
            raise DomainError("batches.no_trust_anchors", path=str(path))
        trust = load_trust_store(path)
        app.extensions["kyso.trust_store"] = trust
    origin = app.config.get("PUBLIC_ORIGIN") or request.host_url.rstrip("/")
    checker = app.extensions.get("kyso.revocation")
    if checker is None:
        checker = app.extensions["kyso.revocation"] = revocation_checker(app.config)
    if "kyso.timestamper" not in app.extensions:
        app.extensions["kyso.timestamper"] = timestamper(app.config)
    return batches.SigningContext(
        trust=trust,
        manifest_signer=manifest_signer(app),
        origin=str(origin),
        revocation=checker,
        timestamper=app.extensions["kyso.timestamper"],
    )


def registration_check() -> Callable[[bytes, str, SigningUnit | None], CheckedCertificate]:
    """``revocation.check_registration`` with the platform's trust anchors and revocation
    policy, at this moment (for the certificate registration page). The responder is asked
    afresh, not through the batches' cache: an administrator registering a token they were
    just told is revoked must be refused now, not in five minutes."""
    context = signing_context()
    cached = context.revocation
    fresh = (
        None
        if cached is None
        else RevocationChecker(cached.policy, timeout=cached.timeout, cache_seconds=0)
    )
    return functools.partial(
        revocation.check_registration,
        trust=context.trust,
        revocation=fresh,
        at=datetime.now(UTC),
    )
