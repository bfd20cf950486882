"""The agent warns of its certificate's coming expiry in the consent text (issue 14)."""

from __future__ import annotations

import dataclasses
import io
import time
from datetime import UTC, datetime, timedelta

from support.agent_harness import ORIGIN
from support.platform_keys import ManifestIssuer
from support.signing import digests

from kyso.agent.console import ConsoleUI
from kyso.agent.expiry import expiry_warning
from kyso.agent.manifest import verify_manifest
from kyso.agent.service import ConsentRequest
from kyso.agent.token.model import PinStatus
from kyso.agent.token.pkcs11_token import Pkcs11Token


def _consent(token: Pkcs11Token, not_after: datetime) -> ConsentRequest:
    cert = next(c for c in token.list_certificates())
    issuer = ManifestIssuer(ORIGIN)
    manifest = verify_manifest(
        issuer.issue(cert.fingerprint_sha256, "ECDSA_SHA256", digests(2)),
        key=issuer.key.public_key(),
        origin=ORIGIN,
        now=time.time(),
        max_lifetime=3600,
        request_id="s1",
    )
    # The token's certificate, as it would read 20 days before its end.
    return ConsentRequest(
        ORIGIN, dataclasses.replace(cert, not_after=not_after), manifest, PinStatus()
    )


def test_consent_text_warns_within_30_days_of_expiry(token: Pkcs11Token) -> None:
    soon = datetime.now(UTC) + timedelta(days=20, hours=1)
    lines = ConsoleUI("vi", out=io.StringIO()).consent_lines(_consent(token, soon))
    shown = soon.strftime("%d/%m/%Y")  # dd/mm/yyyy, as the platform writes dates (issue 17)
    assert any(f"hết hạn ngày {shown} (còn 20 ngày)" in line for line in lines)
    lines = ConsoleUI("en", out=io.StringIO()).consent_lines(_consent(token, soon))
    assert any("(20 days left)" in line for line in lines)

    later = datetime.now(UTC) + timedelta(days=90)
    lines = ConsoleUI("vi", out=io.StringIO()).consent_lines(_consent(token, later))
    assert not any("hết hạn ngày" in line for line in lines)


def test_expiry_warning_bounds() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert expiry_warning(now + timedelta(days=30), "vi", now) is not None
    assert expiry_warning(now + timedelta(days=31), "vi", now) is None
    assert expiry_warning(now - timedelta(seconds=1), "vi", now) is None  # expired: refused
