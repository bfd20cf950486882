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


def test_consent_names_the_certificate_as_the_platform_shows_it(token: Pkcs11Token) -> None:
    # before issue 17: the whole RFC 4514 subject and "valid until" the UTC day, the same for
    # the RSA and the P-256 certificate of one organisation
    lines: dict[str, str] = {}
    for cert in token.list_certificates():
        consent = ConsentRequest(ORIGIN, cert, _consent(token, 3).manifest, PinStatus())
        text = ConsoleUI("vi", out=io.StringIO()).consent_lines(consent)
        [line] = [x for x in text if x.startswith("Chứng thư số dùng để ký:")]
        lines[cert.fingerprint_sha256] = line
        assert "UID=" not in line
        assert "CN=" not in line
        digits = cert.serial_hex if len(cert.serial_hex) % 2 == 0 else "0" + cert.serial_hex
        pairs = " ".join(digits[i : i + 2] for i in range(0, len(digits), 2))
        assert f"số sê-ri {pairs} (hiệu lực " in line
    assert len(set(lines.values())) == len(lines)  # every certificate reads differently
    assert any(
        line.startswith(
            "Chứng thư số dùng để ký: Trạm Y tế Phường Bến Nghé — MST 0312345678 — RSA-2048 — "
        )
        for line in lines.values()
    )
    assert any("— ECDSA P-256 — số sê-ri " in line for line in lines.values())
