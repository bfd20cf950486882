"""Issue 17: the consent text writes counts and dates as the platform does.

"1.860" and dd/mm/yyyy in Vietnamese ("1,860" in English), not "1860" and "từ 2022-03-01".
The real token (SoftHSM) and a real signed manifest, read by the headless console.
"""

from __future__ import annotations

import io
import time

from support.agent_harness import ORIGIN
from support.platform_keys import ManifestIssuer
from support.signing import digests

from kyso.agent.console import ConsoleUI
from kyso.agent.manifest import verify_manifest
from kyso.agent.service import ConsentRequest
from kyso.agent.token.model import PinStatus
from kyso.agent.token.pkcs11_token import Pkcs11Token


def _consent(token: Pkcs11Token, count: int) -> ConsentRequest:
    cert = next(c for c in token.list_certificates())
    issuer = ManifestIssuer(ORIGIN)
    manifest = verify_manifest(
        issuer.issue(cert.fingerprint_sha256, "ECDSA_SHA256", digests(count)),
        key=issuer.key.public_key(),
        origin=ORIGIN,
        now=time.time(),
        max_lifetime=3600,
        request_id="s1",
    )
    return ConsentRequest(ORIGIN, cert, manifest, PinStatus())


def test_consent_counts_and_dates_are_written_as_people_read_them(token: Pkcs11Token) -> None:
    consent = _consent(token, 1860)
    vietnamese = "\n".join(ConsoleUI("vi", out=io.StringIO()).consent_lines(consent))
    assert "Số chữ ký sẽ tạo: 1.860" in vietnamese
    assert "số mũi tiêm: 1.860" in vietnamese
    assert "từ 01/03/2022" in vietnamese
    assert "2022-03-01" not in vietnamese
    english = "\n".join(ConsoleUI("en", out=io.StringIO()).consent_lines(consent))
    assert "Signatures to make: 1,860" in english
    assert "01/03/2022 to" in english
