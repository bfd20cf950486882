"""The officer's certificate checks: every problem refused with its own text, chains built."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from support.cms_pki import Pki, create_pki, create_root, der, issue_ca, new_key

from kyso.agent import devpki
from kyso.platform.errors import DomainError
from kyso.platform.i18n import catalogue
from kyso.platform.signing import cms
from kyso.platform.signing.certificates import (
    VIETNAM_TIME,
    CertificateRejected,
    CheckedCertificate,
    Problem,
    TrustStore,
    chain_pem,
    check_certificate,
    load_trust_store,
)

NOW = datetime.now(UTC)
SUBJECT = devpki.vn_organisation_subject("Trạm Y tế Phường Bến Nghé")


@pytest.fixture(scope="module")
def pki() -> Pki:
    return create_pki()


def check(
    certificate: x509.Certificate | bytes,
    trust: TrustStore,
    *,
    registered: str | bool | None = True,
    at: datetime = NOW,
) -> CheckedCertificate:
    """``registered=True``: the certificate's own serial is registered."""
    data = certificate if isinstance(certificate, bytes) else der(certificate)
    if registered is True:
        assert isinstance(certificate, x509.Certificate)
        registered = format(certificate.serial_number, "X")
    assert not isinstance(registered, bool)
    return check_certificate(data, registered_serial=registered, trust=trust, at=at)


def rejected(problem: Problem, *args: Any, **kwargs: Any) -> CertificateRejected:
    with pytest.raises(CertificateRejected) as caught:
        check(*args, **kwargs)
    assert caught.value.problem is problem, caught.value.detail
    assert caught.value.key == f"certcheck.{problem.value}"
    # Every refusal reads in both languages with the values it carries (no "—" placeholders).
    for language in ("vi", "en"):
        text = caught.value.text(language)
        assert "—" not in text
        assert "{" not in text
    return caught.value


# ---- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [("RSA", "RSA_PKCS1_SHA256"), ("P256", "ECDSA_SHA256"), ("P384", "ECDSA_SHA256")],
)
def test_officer_certificate_through_an_intermediate(
    pki: Pki, key_type: str, algorithm: str
) -> None:
    officer = pki.officer(key_type)
    checked = check(officer.certificate, pki.trust())
    assert checked.certificate == officer.certificate
    assert checked.der == officer.der
    assert checked.fingerprint == officer.fingerprint
    assert checked.serial_hex == format(officer.certificate.serial_number, "X")
    assert checked.serial_hex == checked.serial_hex.upper()
    assert checked.subject == (
        "UID=MST:0312345678,CN=Trạm Y tế Phường Bến Nghé,O=Trạm Y tế Phường Bến Nghé,"
        "L=Quận 1,ST=Hồ Chí Minh,C=VN"
    )
    assert checked.issuer == pki.intermediate.certificate.subject.rfc4514_string()
    assert checked.not_before == officer.certificate.not_valid_before_utc
    assert checked.not_after == officer.certificate.not_valid_after_utc
    assert checked.algorithm == algorithm
    assert checked.chain == (pki.intermediate.certificate, pki.root.certificate)


def test_certificate_issued_by_the_root_directly(softhsm_ca: devpki.DevCA) -> None:
    """The SoftHSM fixtures' shape: a pathLen-0 root issues the officer's certificate."""
    key = new_key("P256")
    certificate = softhsm_ca.issue(key.public_key(), SUBJECT)
    checked = check(certificate, TrustStore([softhsm_ca.certificate]))
    assert checked.chain == (softhsm_ca.certificate,)


def test_registered_serial_compares_as_a_number(pki: Pki) -> None:
    officer = pki.officer("P256", serial_number=0x0A0B0C)
    assert check(officer.certificate, pki.trust(), registered="A0B0C").serial_hex == "A0B0C"
    assert check(officer.certificate, pki.trust(), registered="000a0b0c").serial_hex == "A0B0C"


def test_checked_at_the_signing_time_of_an_old_batch() -> None:
    """The export re-checks a certificate at the batch's signing time, after it expired."""
    root = create_root("Kyso Old Root", not_before=NOW - timedelta(days=1000))
    old = Pki(root, issue_ca(root, "Kyso Old Issuing CA", not_before=NOW - timedelta(days=900)))
    officer = old.officer(
        "P256", not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=10)
    )
    check(officer.certificate, old.trust(), at=NOW - timedelta(days=30))
    rejected(Problem.EXPIRED, officer.certificate, old.trust())
    # The CAs did not exist yet 950 days ago: nothing chains then.
    rejected(Problem.UNTRUSTED, officer.certificate, old.trust(), at=NOW - timedelta(days=950))


def test_nonrepudiation_alone_is_a_signing_usage(pki: Pki) -> None:
    officer = pki.officer("RSA", key_usage=("nonRepudiation",))
    assert check(officer.certificate, pki.trust()).algorithm == "RSA_PKCS1_SHA256"
    officer = pki.officer("RSA", key_usage=("digitalSignature",))
    assert check(officer.certificate, pki.trust()).algorithm == "RSA_PKCS1_SHA256"


def test_time_of_the_check_must_be_aware(pki: Pki) -> None:
    officer = pki.cached_officer("P256")
    with pytest.raises(ValueError, match="timezone-aware"):
        check(officer.certificate, pki.trust(), at=datetime(2026, 1, 1))


# ---- refused: registration -----------------------------------------------------------------


def test_not_registered(pki: Pki) -> None:
    officer = pki.officer("P256", serial_number=0x5401_0A3F)
    error = rejected(Problem.NOT_REGISTERED, officer.certificate, pki.trust(), registered=None)
    assert "54 01 0A 3F" in error.text("vi")
    assert "register serial 54 01 0A 3F" in error.text("en")
    assert "trang người dùng" in error.text("vi")


@pytest.mark.parametrize("registered", ["5401", "5401 0A3F", "not hex", ""])
def test_serial_mismatch(pki: Pki, registered: str) -> None:
    officer = pki.officer("P256", serial_number=0x5401_0A3F)
    error = rejected(
        Problem.SERIAL_MISMATCH, officer.certificate, pki.trust(), registered=registered
    )
    assert "54 01 0A 3F" in error.text("en")
    assert "Insert the USB token with the registered certificate" in error.text("en")
    assert "cắm đúng USB token" in error.text("vi")


def test_serial_is_checked_before_the_chain(pki: Pki) -> None:
    """Another officer's valid certificate is a mismatch, whatever else is wrong with it."""
    stranger = create_pki("Stranger Root").officer("P256")
    rejected(Problem.SERIAL_MISMATCH, stranger.certificate, pki.trust(), registered="1234")


# ---- refused: chain ------------------------------------------------------------------------


def test_untrusted_ca(pki: Pki) -> None:
    stranger_root = create_root("Stranger Root CA")
    stranger = pki.officer("RSA", issuer=stranger_root)
    error = rejected(Problem.UNTRUSTED, stranger.certificate, pki.trust())
    assert "issued by “Stranger Root CA”" in error.text("en")
    assert "do “Stranger Root CA” cấp" in error.text("vi")
    assert "no issuer matching" in error.detail


def test_intermediate_must_be_known(pki: Pki) -> None:
    officer = pki.officer("P256")
    rejected(Problem.UNTRUSTED, officer.certificate, TrustStore([pki.root.certificate]))
    # ... from the trust bundle, or pinned as an anchor itself.
    check(officer.certificate, TrustStore([pki.intermediate.certificate]))


def test_issuer_name_alone_is_not_enough(pki: Pki) -> None:
    """A CA with the same name but another key (an impostor) does not complete the chain."""
    impostor_root = create_root("Kyso Test Root CA")  # the real root's name
    impostor = issue_ca(impostor_root, "Kyso Test Issuing CA")  # the real intermediate's name
    forged = pki.officer("P256", issuer=impostor, chain=(impostor.certificate,))
    error = rejected(Problem.UNTRUSTED, forged.certificate, pki.trust())
    assert "no issuer matching" in error.detail
    # Even with the impostor intermediate in the store, its own issuer is not the anchor.
    trust = TrustStore([pki.root.certificate], [pki.intermediate.certificate, impostor.certificate])
    rejected(Problem.UNTRUSTED, forged.certificate, trust)


@pytest.mark.parametrize(
    ("options", "detail"),
    [
        ({"ca": False}, "not a CA"),
        ({"key_usage": ("digitalSignature", "cRLSign")}, "is not allowed to sign certificates"),
        (
            {
                "not_before": NOW - timedelta(days=800),
                "not_after": NOW - timedelta(days=1),
            },
            "intermediate certificate 1 expired",
        ),
        ({"not_before": NOW + timedelta(days=1)}, "intermediate certificate 1 is not valid until"),
    ],
    ids=["not-a-ca", "no-keycertsign", "expired-ca", "future-ca"],
)
def test_intermediate_must_be_a_valid_ca(pki: Pki, options: dict[str, Any], detail: str) -> None:
    broken = issue_ca(pki.root, "Kyso Broken Issuing CA", **options)
    officer = pki.officer("P256", issuer=broken)
    trust = TrustStore([pki.root.certificate], [broken.certificate])
    error = rejected(Problem.UNTRUSTED, officer.certificate, trust)
    assert detail in error.detail


def test_path_length_of_the_root_is_respected() -> None:
    """devpki roots allow no intermediate below them (pathLenConstraint 0)."""
    root = devpki.create_ca("Kyso Path Root")
    intermediate = issue_ca(root, "Kyso Too Deep CA")
    officer = Pki(root=root, intermediate=intermediate).officer("P256")
    trust = TrustStore([root.certificate], [intermediate.certificate])
    error = rejected(Problem.UNTRUSTED, officer.certificate, trust)
    assert "exceeds the maximum path length" in error.detail


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_sha1_signed_certificate_is_untrusted(pki: Pki, tmp_path: Path) -> None:
    """cryptography will not even make one: OpenSSL signs it with the real intermediate's key."""
    devpki.write_pem(tmp_path / "ca.pem", pki.intermediate.certificate)
    devpki.write_key_pem(tmp_path / "ca.key", pki.intermediate.key)
    (tmp_path / "ext").write_text("keyUsage=critical,digitalSignature,nonRepudiation\n")
    for command in (
        "req -new -newkey rsa:2048 -nodes -keyout officer.key -subj /CN=Officer -out officer.csr",
        "x509 -req -in officer.csr -CA ca.pem -CAkey ca.key -sha1 -days 30 -extfile ext "
        "-outform DER -out officer.der",
    ):
        subprocess.run(["openssl", *command.split()], cwd=tmp_path, check=True, capture_output=True)
    certificate = x509.load_der_x509_certificate((tmp_path / "officer.der").read_bytes())
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA1)
    rejected(Problem.UNTRUSTED, certificate, pki.trust())


# ---- refused: validity, usage, key -----------------------------------------------------------


def test_expired(pki: Pki) -> None:
    not_after = datetime(2025, 12, 31, 16, 59, 59, tzinfo=UTC)  # 23:59:59 in Vietnam
    officer = pki.officer("P256", not_before=not_after - timedelta(days=365), not_after=not_after)
    error = rejected(Problem.EXPIRED, officer.certificate, pki.trust())
    assert "23:59 ngày 31/12/2025 (giờ Việt Nam)" in error.text("vi")
    assert "expired at 23:59 on 2025-12-31 (Vietnam time)" in error.text("en")
    assert format(officer.certificate.serial_number, "X")[-2:] in error.text("en").replace(" ", "")


def test_not_yet_valid(pki: Pki) -> None:
    not_before = NOW + timedelta(days=2)
    officer = pki.officer("RSA", not_before=not_before)
    error = rejected(Problem.NOT_YET_VALID, officer.certificate, pki.trust())
    shown = not_before.astimezone(VIETNAM_TIME)
    assert shown.strftime("%H:%M ngày %d/%m/%Y") in error.text("vi")
    assert shown.strftime("%H:%M on %Y-%m-%d") in error.text("en")


@pytest.mark.parametrize(
    "key_usage",
    [("keyEncipherment", "dataEncipherment"), ("keyAgreement",), None],
    ids=["encryption", "key-agreement", "no-extension"],
)
def test_no_signing_usage(pki: Pki, key_usage: tuple[str, ...] | None) -> None:
    officer = pki.officer("RSA" if key_usage != ("keyAgreement",) else "P256", key_usage=key_usage)
    error = rejected(Problem.NO_SIGNING_USAGE, officer.certificate, pki.trust())
    assert "signing certificate" in error.text("en")


@pytest.mark.parametrize(
    ("make_key", "described"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "RSA 1024 bit"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "EC secp521r1"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "EC secp256k1"),
        (ed25519.Ed25519PrivateKey.generate, "Ed25519"),
    ],
    ids=["rsa-1024", "p521", "secp256k1", "ed25519"],
)
def test_unsupported_key(pki: Pki, make_key: Any, described: str) -> None:
    key = make_key()
    certificate = pki.intermediate.issue(key.public_key(), SUBJECT)
    error = rejected(Problem.UNSUPPORTED_KEY, certificate, pki.trust())
    assert described in error.text("en")


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"\x30\x03\x02\x01\x01", "pem"],
    ids=["empty", "garbage", "not-a-certificate", "pem-instead-of-der"],
)
def test_malformed(pki: Pki, data: bytes | str) -> None:
    if data == "pem":
        data = pki.cached_officer("P256").certificate.public_bytes(serialization.Encoding.PEM)
    assert isinstance(data, bytes)
    rejected(Problem.MALFORMED, data, pki.trust(), registered="01")


def test_truncated_or_extended_der_is_malformed(pki: Pki) -> None:
    good = pki.cached_officer("P256").der
    rejected(Problem.MALFORMED, good[:-1], pki.trust(), registered="01")
    rejected(Problem.MALFORMED, good + b"\x00", pki.trust(), registered="01")


# ---- texts and trust bundles ---------------------------------------------------------------


def test_every_problem_has_texts_in_both_languages() -> None:
    path = Path(__file__).parents[2] / "platform" / "locales" / "certcheck.toml"
    with path.open("rb") as fh:
        entries = tomllib.load(fh)
    assert set(entries) == {problem.value for problem in Problem}
    texts = catalogue()
    for problem in Problem:
        entry = texts[f"certcheck.{problem.value}"]
        assert entry["vi"]
        assert entry["en"]
        assert entry["vi"] != entry["en"]


def test_rejection_is_a_domain_error(pki: Pki) -> None:
    error = rejected(
        Problem.NOT_REGISTERED, pki.cached_officer("P256").certificate, pki.trust(), registered=None
    )
    assert isinstance(error, DomainError)
    assert str(error).startswith("not_registered: ")


def test_trust_bundle(pki: Pki, tmp_path: Path) -> None:
    bundle = pki.write_anchors(tmp_path / "trust.pem", with_intermediate=True)
    trust = load_trust_store(bundle)
    assert trust.anchors == (pki.root.certificate,)
    assert trust.intermediates == (pki.intermediate.certificate,)
    check(pki.officer("RSA").certificate, trust)

    root_only = load_trust_store(pki.write_anchors(tmp_path / "root.pem"))
    assert root_only.intermediates == ()


def test_trust_bundle_needs_a_root(pki: Pki, tmp_path: Path) -> None:
    path = devpki.write_pem(tmp_path / "intermediate.pem", pki.intermediate.certificate)
    with pytest.raises(ValueError, match="no self-signed"):
        load_trust_store(path)
    (tmp_path / "garbage.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="not PEM"):
        load_trust_store(tmp_path / "garbage.pem")
    with pytest.raises(ValueError, match="at least one"):
        TrustStore([])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_chain_is_what_openssl_needs(pki: Pki, tmp_path: Path) -> None:
    """The export writes ``chain`` as chain.pem: OpenSSL verifies a CMS with it alone."""
    officer = pki.officer("P256")
    checked = check(officer.certificate, pki.trust())
    content = b'{"record":"dose-1-v1"}'
    attributes = cms.AttributesBuilder(officer.certificate, NOW).build(content)
    # The CMS carries the signer only: the intermediate must come from chain.pem.
    p7s = cms.Assembler(officer.certificate, checked.algorithm).assemble(
        attributes.der, officer.sign(attributes.digest)
    )
    (tmp_path / "X.p7s").write_bytes(p7s)
    (tmp_path / "X.json").write_bytes(content)
    (tmp_path / "chain.pem").write_bytes(chain_pem(checked.chain))
    command = "cms -verify -binary -inform DER -in X.p7s -content X.json -CAfile chain.pem"
    result = subprocess.run(
        ["openssl", *command.split(), "-purpose", "any", "-out", "/dev/null"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
