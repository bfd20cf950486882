"""The verifier's schema step: the schema of the certificate's own ``ver``, compiled once.

Certificates are encoded and ES256-signed here (a software key certified by a test CA), then
verified from their ``HC1:`` text with that certificate as the signer list.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from support.signing_keys import Signer, make_signer

from kyso.agent import devpki
from kyso.platform.passport import dcc, verifier
from kyso.platform.passport.valuesets import historical_schema, schema, schema_versions

ISSUED = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)
AT = datetime(2021, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return make_signer(devpki.create_ca("Kyso Test CSCA"), "p256")


def _certificate(ver: Any, **changes: Any) -> dict[str, Any]:
    certificate: dict[str, Any] = {
        "ver": ver,
        "nam": {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Văn An", "gnt": "VAN<AN"},
        "dob": "1990-05-17",
        "v": [
            {
                "tg": "840539006",
                "vp": "1119349007",
                "mp": "EU/1/20/1528",
                "ma": "ORG-100030215",
                "dn": 2,
                "sd": 2,
                "dt": "2021-05-20",
                "co": "VN",
                "is": "Ministry of Health of Viet Nam",
                "ci": "URN:UVCI:01:VN:0123456789ABCDEF0123456789ABCDEF",
            }
        ],
    }
    if ver is None:
        del certificate["ver"]
    certificate.update(changes)
    return certificate


def _verify(signer: Signer, certificate: dict[str, Any]) -> verifier.Verification:
    encoder = dcc.Encoder(
        lambda data: signer.sign(hashlib.sha256(data).digest()), "ES256", signer.der
    )
    signers = verifier.SignerList([signer.certificate])
    result = verifier.verify(encoder.encode(certificate, ISSUED).payload, signers, AT)
    assert result.passed("signature")
    assert result.passed("expiry")
    return result


def test_every_release_is_shipped_and_the_latest_is_the_issuing_schema() -> None:
    assert schema_versions() == (
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "1.2.0",
        "1.2.1",
        "1.3.0",
        "1.3.1",
        "1.3.2",
        "1.3.3",
    )
    assert historical_schema("1.3.3") == schema()
    with pytest.raises(KeyError):
        historical_schema("1.3.4")


def test_a_certificate_is_checked_against_the_schema_of_its_version(signer: Signer) -> None:
    # A partial birth date: refused by 1.0.0/1.0.1 (full dates only), allowed from 1.1.0 on.
    for ver, valid in (("1.0.0", False), ("1.0.1", False), ("1.1.0", True), ("1.3.0", True)):
        result = _verify(signer, _certificate(ver, dob="1990-05"))
        assert result.schema_version == ver
        assert result.passed("schema") is valid, (ver, result.check("schema"))
    year_only = _verify(signer, _certificate("1.0.0", dob="1990")).check("schema")
    assert year_only is not None
    assert year_only.detail.startswith("dob: '1990' does not match")
    # An empty birth date: allowed from 1.3.0 on only.
    assert not _verify(signer, _certificate("1.2.1", dob="")).passed("schema")
    assert _verify(signer, _certificate("1.3.0", dob="")).passed("schema")


def test_an_unknown_version_is_checked_against_the_latest_and_says_so(signer: Signer) -> None:
    later = _verify(signer, _certificate("1.4.0"))
    assert later.schema_version == "1.3.3"
    assert later.passed("schema")  # compatible with 1.3.3: passes
    broken = _verify(signer, _certificate("2.0.0", dob="1990-5-17"))
    check = broken.check("schema")
    assert check is not None
    assert not check.ok
    assert check.detail.startswith("ver '2.0.0' is not a released schema version")
    assert "checked against 1.3.3" in check.detail
    missing = _verify(signer, _certificate(None))
    assert missing.schema_version == "1.3.3"
    assert not missing.passed("schema")
    assert "ver None" in missing.check("schema").detail  # type: ignore[union-attr]


def test_a_certificate_holds_exactly_one_type_whatever_its_version(signer: Signer) -> None:
    recovery = [
        {
            "tg": "840539006",
            "fr": "2021-02-20",
            "co": "VN",
            "is": "Ministry of Health of Viet Nam",
            "df": "2021-04-04",
            "du": "2021-10-04",
            "ci": "URN:UVCI:01:VN:0123456789ABCDEF0123456789ABCDEE",
        }
    ]
    for ver in ("1.0.0", "1.2.1", "1.3.0"):
        both = _verify(signer, _certificate(ver, r=recovery))
        assert not both.passed("schema"), ver
        assert "holds 2 certificate types (v, r)" in both.check("schema").detail  # type: ignore[union-attr]
        none = _certificate(ver)
        del none["v"]
        assert not _verify(signer, none).passed("schema"), ver


def test_each_schema_is_compiled_once(signer: Signer) -> None:
    verifier.schema_validator_for.cache_clear()
    for _ in range(5):
        for ver in ("1.0.0", "1.2.1", "1.3.0", "7.0.0"):
            _verify(signer, _certificate(ver))
    info = verifier.schema_validator_for.cache_info()
    assert info.misses == 4  # 1.0.0, 1.2.1, 1.3.0 and the latest for 7.0.0
    assert info.hits == 16
