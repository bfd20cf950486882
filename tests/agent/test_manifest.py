"""Manifest verification and the replay guard, without a server or token."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.platform_keys import ManifestIssuer

from kyso.agent.manifest import ReplayGuard, commitment, verify_manifest
from kyso.agent.protocol import ErrorCode, ProtocolError
from kyso.agent.safetext import first_refused
from kyso.agent.token.model import Algorithm

ORIGIN = "https://tiemchung.example.vn"
FP = "ab" * 32
DIGESTS = [hashlib.sha256(str(i).encode()).digest() for i in range(5)]


@pytest.fixture
def issuer() -> ManifestIssuer:
    return ManifestIssuer(ORIGIN)


def verify(issuer: ManifestIssuer, token: str, *, now: float | None = None, origin: str = ORIGIN):
    return verify_manifest(
        token,
        key=issuer.key.public_key(),
        origin=origin,
        now=time.time() if now is None else now,
        max_lifetime=3600,
        request_id="s1",
    )


def code(fn) -> ErrorCode:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError) as info:
        fn()
    return info.value.code


def test_valid_manifest(issuer: ManifestIssuer) -> None:
    manifest = verify(issuer, issuer.issue(FP, "RSA_PSS_SHA256", DIGESTS, batch_id="B-1"))
    assert manifest.batch_id == "B-1"
    assert manifest.algorithm is Algorithm.RSA_PSS_SHA256
    assert manifest.count == 5
    assert manifest.digests == commitment(DIGESTS)
    assert manifest.summary.facility == "Trạm Y tế Phường Bến Nghé"


def test_forged_signature(issuer: ManifestIssuer) -> None:
    other = ManifestIssuer(ORIGIN, ec.generate_private_key(ec.SECP256R1()))
    token = other.issue(FP, "RSA_PSS_SHA256", DIGESTS)
    assert code(lambda: verify(issuer, token)) is ErrorCode.MANIFEST_INVALID


def test_tampered_payload(issuer: ManifestIssuer) -> None:
    head, _, sig = issuer.issue(FP, "RSA_PSS_SHA256", DIGESTS).split(".")
    forged = issuer.issue(FP, "RSA_PSS_SHA256", DIGESTS[:1]).split(".")[1]
    assert code(lambda: verify(issuer, f"{head}.{forged}.{sig}")) is ErrorCode.MANIFEST_INVALID


def test_expired_and_future_and_overlong(issuer: ManifestIssuer) -> None:
    old = issuer.issue(FP, "ECDSA_SHA256", DIGESTS, now=time.time() - 7200)
    assert code(lambda: verify(issuer, old)) is ErrorCode.MANIFEST_EXPIRED
    future = issuer.issue(FP, "ECDSA_SHA256", DIGESTS, now=time.time() + 3600)
    assert code(lambda: verify(issuer, future)) is ErrorCode.MANIFEST_INVALID
    eternal = issuer.issue(FP, "ECDSA_SHA256", DIGESTS, lifetime=10 * 86400)
    assert code(lambda: verify(issuer, eternal)) is ErrorCode.MANIFEST_INVALID


def test_other_origins_manifest(issuer: ManifestIssuer) -> None:
    token = issuer.issue(FP, "ECDSA_SHA256", DIGESTS)
    assert code(lambda: verify(issuer, token, origin="https://other.example.vn")) is (
        ErrorCode.MANIFEST_MISMATCH
    )


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("aud", "someone-else"),
        ("count", 0),
        ("count", 3001),
        ("code", "<script>"),
        ("jti", "../../etc"),
        ("algorithm", "MD5"),
        ("digests", "md5:00"),
        ("summary", {"facility": "x"}),
        ("extra", "claim"),
    ],
)
def test_bad_claims(issuer: ManifestIssuer, claim: str, value: object) -> None:
    claims = issuer.claims(FP, "ECDSA_SHA256", DIGESTS)
    claims[claim] = value
    assert code(lambda: verify(issuer, issuer.sign_claims(claims))) is ErrorCode.MANIFEST_INVALID


def test_summary_with_control_characters_is_refused(issuer: ManifestIssuer) -> None:
    claims = issuer.claims(FP, "ECDSA_SHA256", DIGESTS)
    claims["summary"]["facility"] = "Trạm Y tế\u202e evil"
    assert code(lambda: verify(issuer, issuer.sign_claims(claims))) is ErrorCode.MANIFEST_INVALID


def test_wrong_type_header(issuer: ManifestIssuer) -> None:
    token = issuer.sign_claims(issuer.claims(FP, "ECDSA_SHA256", DIGESTS), {"typ": "JWT"})
    assert code(lambda: verify(issuer, token)) is ErrorCode.MANIFEST_INVALID


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256"])
def test_algorithm_confusion(issuer: ManifestIssuer, alg: str) -> None:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = issuer.claims(FP, "ECDSA_SHA256", DIGESTS)
    head = part({"alg": alg, "typ": "kyso-batch+jwt"})
    good_sig = issuer.sign_claims(claims).split(".")[2]
    for sig in ("", good_sig):
        token = f"{head}.{part(claims)}.{sig}"
        assert code(lambda t=token: verify(issuer, t)) is ErrorCode.MANIFEST_INVALID


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "...."])
def test_garbage_tokens(issuer: ManifestIssuer, token: str) -> None:
    assert code(lambda: verify(issuer, token)) is ErrorCode.MANIFEST_INVALID


def test_replay_guard_persists_and_expires(tmp_path: Path) -> None:
    path = tmp_path / "state" / "used-batches.json"
    guard = ReplayGuard(path)
    now = time.time()
    guard.consume(ORIGIN, "B-1", int(now + 600), now)
    assert guard.is_used(ORIGIN, "B-1")
    assert not guard.is_used("https://other.example.vn", "B-1")
    assert ReplayGuard(path).is_used(ORIGIN, "B-1")  # survives a restart
    later = now + 4000
    guard.consume(ORIGIN, "B-2", int(later + 600), later)
    assert not ReplayGuard(path).is_used(ORIGIN, "B-1")  # pruned after its expiry


def test_replay_guard_survives_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "used-batches.json"
    path.write_text("{not json")
    guard = ReplayGuard(path)
    assert not guard.is_used(ORIGIN, "B-1")
    assert path.with_suffix(".damaged").exists()


# --- the summary's characters (what reaches the officer's consent dialog) ---------------------

# Every format character, every blank but U+0020, every line/paragraph separator: hypothesis
# draws from all of them (none is a short list of "known bad" ones, as the old filter was).
INVISIBLE_OR_BLANK = st.characters(
    categories=["Cf", "Zs", "Zl", "Zp", "Cc"], exclude_characters=" "
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(char=INVISIBLE_OR_BLANK, at=st.integers(0, 9))
def test_summary_refuses_every_format_character_and_lookalike_blank(
    issuer: ManifestIssuer, char: str, at: int
) -> None:
    name = "Trạm Y tế"
    claims = issuer.claims(FP, "ECDSA_SHA256", DIGESTS)
    claims["summary"]["facility"] = name[:at] + char + name[at:]
    assert code(lambda: verify(issuer, issuer.sign_claims(claims))) is ErrorCode.MANIFEST_INVALID


def _code_points(*categories: str) -> list[str]:
    return [
        chr(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in categories and cp != 0x20
    ]


@pytest.mark.parametrize("category", ["Cf", "Zs", "Zl", "Zp", "Cc", "Cs", "Co"])
def test_filter_refuses_every_code_point_of_the_category(category: str) -> None:
    chars = _code_points(category)
    assert chars  # the category exists in this Python's Unicode database
    shown = [f"U+{ord(c):04X}" for c in chars if first_refused(f"a{c}b") != 1]
    assert shown == []


@pytest.mark.parametrize(
    "char",
    [
        "\u061c",
        "\ufeff",
        "\u2060",
        "\u200b",
        "\u00a0",
        "\u3000",
        "\u180e",
        "\u2028",
        "\u2029",
        "\u3164",
        "\u115f",
        "\u2800",
        "\ufe0f",
        "\U000e0041",
        "\U000e0100",
    ],
)
def test_named_invisible_characters_are_refused(issuer: ManifestIssuer, char: str) -> None:
    claims = issuer.claims(FP, "ECDSA_SHA256", DIGESTS)
    claims["summary"]["facility"] = f"Trạm Y tế{char}Phường 1"
    assert code(lambda: verify(issuer, issuer.sign_claims(claims))) is ErrorCode.MANIFEST_INVALID


@pytest.mark.parametrize(
    "name",
    [
        "Trạm Y tế Phường Bến Nghé",
        unicodedata.normalize("NFD", "Trạm Y tế Xã Đắk Lắk (điểm tiêm số 2) – Quận 1, TP.HCM"),
        "Bệnh viện Đa khoa Tỉnh “Hòa Bình” #3: 100% liều/ngày",
    ],
)
def test_ordinary_vietnamese_names_are_accepted(issuer: ManifestIssuer, name: str) -> None:
    claims = issuer.claims(FP, "ECDSA_SHA256", DIGESTS)
    claims["summary"]["facility"] = name
    assert verify(issuer, issuer.sign_claims(claims)).summary.facility == name
