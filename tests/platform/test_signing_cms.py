"""CAdES-BES detached CMS: templates identical to asn1crypto, signatures checked, OpenSSL agrees.

Every kind of signature (RSA PKCS#1 v1.5, RSA-PSS, ECDSA P-256 and P-384) is verified by
``openssl cms -verify`` as a subprocess, and by ``cms.verify_detached``; a changed document,
another key's signature or the wrong certificate must fail both.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from support.cms_pki import Officer, Pki, create_pki, der

from kyso.agent import devpki
from kyso.agent.token.model import Algorithm as AgentAlgorithm
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken
from kyso.platform.signing import cms
from kyso.platform.signing.cms import (
    Algorithm,
    Assembler,
    AttributesBuilder,
    CmsInvalid,
    SignatureInvalid,
    assemble_reference,
    signed_attributes,
    verify_detached,
    verify_signature,
)
from kyso.platform.testpki import TestPki

OPENSSL = shutil.which("openssl")
SIGNING_TIME = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
DOCUMENT = '{"batch":"KB1","record":"dose-1-v1","person":{"name":"Nguyễn Văn An"}}'.encode()

# (key type, algorithm): every CMS kind the platform assembles.
KINDS = [
    ("RSA", "RSA_PKCS1_SHA256"),
    ("RSA", "RSA_PSS_SHA256"),
    ("P256", "ECDSA_SHA256"),
    ("P384", "ECDSA_SHA256"),
]
KIND_IDS = ["rsa-pkcs1", "rsa-pss", "p256", "p384"]


@pytest.fixture(scope="module")
def pki() -> Pki:
    return create_pki()


@pytest.fixture(scope="module")
def other_pki() -> Pki:
    return create_pki("Some Other Root CA")


def officer_of(pki: Pki, key_type: str) -> Officer:
    return pki.cached_officer(key_type)


def signed_cms(
    officer: Officer, algorithm: str, content: bytes, *, signer: Officer | None = None
) -> bytes:
    """A detached CMS of ``content`` by ``officer`` (the key of ``signer`` if given)."""
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(content)
    signature = (signer or officer).sign(attributes.digest, algorithm)
    return Assembler(officer.certificate, algorithm, officer.chain).assemble(
        attributes.der, signature
    )


def openssl_verify(
    directory: Path, p7s: bytes, content: bytes, chain: tuple[x509.Certificate, ...]
) -> subprocess.CompletedProcess[str]:
    """``openssl cms -verify`` exactly as platform/signing/cms.py documents it."""
    assert OPENSSL is not None, "openssl is needed to check the CMS"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "X.p7s").write_bytes(p7s)
    (directory / "X.json").write_bytes(content)
    devpki.write_pem(directory / "chain.pem", *chain)
    command = "cms -verify -binary -inform DER -in X.p7s -content X.json -CAfile chain.pem"
    return subprocess.run(
        [OPENSSL, *command.split(), "-purpose", "any", "-out", "/dev/null"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


# ---- signed attributes ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=2000))
def test_attribute_template_is_asn1crypto(pki: Pki, content: bytes) -> None:
    for key_type in ("RSA", "P256"):
        certificate = officer_of(pki, key_type).certificate
        built = AttributesBuilder(certificate, SIGNING_TIME).build(content)
        assert built == signed_attributes(content, SIGNING_TIME, certificate)
        assert built.digest == hashlib.sha256(built.der).digest()


@pytest.mark.parametrize(
    "moment",
    [
        SIGNING_TIME,
        datetime(2026, 3, 14, 16, 26, 53, 987654, tzinfo=timezone(timedelta(hours=7))),
        datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2050, 1, 1, tzinfo=UTC),  # GeneralizedTime from 2050 (RFC 5652 11.3)
    ],
)
def test_attribute_template_at_any_signing_time(pki: Pki, moment: datetime) -> None:
    certificate = officer_of(pki, "P256").certificate
    builder = AttributesBuilder(certificate, moment)
    for content in (b"", DOCUMENT, b"\x00" * 100_000):
        assert builder.build(content) == signed_attributes(content, moment, certificate)


@settings(max_examples=200, deadline=None)
@given(
    moments=st.lists(
        st.datetimes(
            min_value=datetime(1950, 1, 1),
            max_value=datetime(2999, 12, 31, 23, 59, 59),
            timezones=st.just(UTC),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_attribute_template_kept_per_certificate_fits_every_signing_time(
    pki: Pki, moments: list[datetime]
) -> None:
    """The template is built once per certificate (and kind of time) and each batch puts its
    own signing time in it: one after the other, every time gives asn1crypto's bytes, the
    template's own placeholder times included."""
    certificate = officer_of(pki, "RSA").certificate
    for moment in [
        *moments,
        datetime(2049, 12, 31, 23, 59, 58, tzinfo=UTC),
        datetime(2999, 12, 31, 23, 59, 58, tzinfo=UTC),
    ]:
        moment = moment.replace(microsecond=0)
        built = AttributesBuilder(certificate, moment).build(DOCUMENT)
        assert built == signed_attributes(DOCUMENT, moment, certificate)


def test_signed_attributes_say_what_cades_bes_needs(pki: Pki) -> None:
    officer = officer_of(pki, "RSA")
    built = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    assert built.der[0] == 0x31  # the SET OF the signature is over, not the [0] tag
    attributes = {a["type"].native: a["values"] for a in asn1_cms.CMSAttributes.load(built.der)}
    assert set(attributes) == {
        "content_type",
        "message_digest",
        "signing_time",
        "signing_certificate_v2",
    }
    assert attributes["content_type"].native == ["data"]
    assert attributes["message_digest"].native == [hashlib.sha256(DOCUMENT).digest()]
    assert attributes["signing_time"][0].name == "utc_time"
    assert attributes["signing_time"].native == [SIGNING_TIME]
    ess = attributes["signing_certificate_v2"][0]["certs"][0]
    assert ess["cert_hash"].native == hashlib.sha256(officer.der).digest()
    assert ess["issuer_serial"]["serial_number"].native == officer.certificate.serial_number
    (issuer,) = ess["issuer_serial"]["issuer"]
    assert issuer.name == "directory_name"
    name = officer.certificate.issuer.public_bytes()
    assert issuer.dump() == b"\xa4" + bytes([len(name)]) + name  # [4] EXPLICIT Name
    # hashAlgorithm is DEFAULT sha256, so DER leaves it out: the ESSCertIDv2 starts with the hash
    assert ess.contents.startswith(b"\x04\x20")


def test_signing_time_must_be_aware(pki: Pki) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AttributesBuilder(officer_of(pki, "P256").certificate, datetime(2026, 1, 1))


def test_3000_attributes_take_under_100_ms(pki: Pki) -> None:
    builder = AttributesBuilder(officer_of(pki, "RSA").certificate, SIGNING_TIME)
    contents = [DOCUMENT + str(i).encode() for i in range(3000)]
    best = min(_timed(lambda: [builder.build(c) for c in contents]) for _ in range(3))
    print(f"build 3,000 signed attributes: {best * 1000:.1f} ms")
    assert best < 0.1, f"3,000 signed attributes took {best * 1000:.1f} ms"


# ---- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "algorithm"), KINDS, ids=KIND_IDS)
def test_verify_signature(pki: Pki, key_type: str, algorithm: str) -> None:
    officer = officer_of(pki, key_type)
    other = pki.officer(key_type)
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    verify_signature(
        officer.certificate, algorithm, attributes.der, officer.sign(attributes.digest, algorithm)
    )

    with pytest.raises(SignatureInvalid) as another_key:
        verify_signature(
            officer.certificate, algorithm, attributes.der, other.sign(attributes.digest, algorithm)
        )
    assert another_key.value.reason == "mismatch"

    changed = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT + b" ")
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_signature(
            officer.certificate, algorithm, attributes.der, officer.sign(changed.digest, algorithm)
        )


def test_signature_over_the_digest_of_other_bytes_is_invalid(pki: Pki) -> None:
    officer = officer_of(pki, "P256")
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    # The agent signed SHA-256 of the document instead of the attributes: a valid signature,
    # but not over the bytes the platform prepared.
    wrong = officer.sign(hashlib.sha256(DOCUMENT).digest())
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_signature(officer.certificate, "ECDSA_SHA256", attributes.der, wrong)


@pytest.mark.parametrize("length", [0, 63, 65, 70, 128])
def test_ecdsa_signature_must_be_raw_r_s(pki: Pki, length: int) -> None:
    officer = officer_of(pki, "P256")
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    with pytest.raises(SignatureInvalid, match="64 bytes") as caught:
        verify_signature(officer.certificate, "ECDSA_SHA256", attributes.der, b"\x01" * length)
    assert caught.value.reason == "length"


def test_ecdsa_der_signature_is_not_raw(pki: Pki) -> None:
    officer = officer_of(pki, "P256")
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    assert isinstance(officer.key, ec.EllipticCurvePrivateKey)
    der_signature = officer.key.sign(attributes.der, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(SignatureInvalid):
        verify_signature(officer.certificate, "ECDSA_SHA256", attributes.der, der_signature)


def test_rsa_signature_of_wrong_length(pki: Pki) -> None:
    officer = officer_of(pki, "RSA")
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    signature = officer.sign(attributes.digest)
    for wrong in (signature[:-1], signature + b"\x00", b"\x00" + signature):
        with pytest.raises(SignatureInvalid, match="256 bytes"):
            verify_signature(officer.certificate, "RSA_PKCS1_SHA256", attributes.der, wrong)


def test_pss_and_pkcs1_are_not_interchangeable(pki: Pki) -> None:
    officer = officer_of(pki, "RSA")
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    pss = officer.sign(attributes.digest, "RSA_PSS_SHA256")
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_signature(officer.certificate, "RSA_PKCS1_SHA256", attributes.der, pss)


def test_algorithm_must_fit_the_key(pki: Pki) -> None:
    rsa_cert, ec_cert = officer_of(pki, "RSA").certificate, officer_of(pki, "P256").certificate
    with pytest.raises(SignatureInvalid, match="RSA-2048") as caught:
        verify_signature(rsa_cert, "ECDSA_SHA256", b"\x31\x00", b"\x00" * 64)
    assert caught.value.reason == "algorithm"
    with pytest.raises(SignatureInvalid, match="secp256r1"):
        Assembler(ec_cert, "RSA_PSS_SHA256")
    with pytest.raises(ValueError, match="RSA_SHA1"):
        Assembler(rsa_cert, "RSA_SHA1")


# ---- assembling ----------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "algorithm"), KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("with_chain", [True, False], ids=["chain", "no-chain"])
def test_assembly_template_is_asn1crypto(
    pki: Pki, key_type: str, algorithm: str, with_chain: bool
) -> None:
    officer = officer_of(pki, key_type)
    chain = officer.chain if with_chain else ()
    builder = AttributesBuilder(officer.certificate, SIGNING_TIME)
    assembler = Assembler(officer.certificate, algorithm, chain)
    for i in range(20):
        attributes = builder.build(DOCUMENT + bytes([i]))
        signature = officer.sign(attributes.digest, algorithm)
        der_signature = (
            cms.raw_ecdsa_to_der(signature, officer.key.curve.key_size)
            if isinstance(officer.key, ec.EllipticCurvePrivateKey)
            else signature
        )
        expected = assemble_reference(
            officer.certificate, algorithm, attributes.der, der_signature, chain
        )
        assert assembler.assemble(attributes.der, signature) == expected
        assert assembler.accept(attributes.der, signature) == expected


def test_assembled_cms_structure(pki: Pki) -> None:
    officer = officer_of(pki, "RSA")
    p7s = signed_cms(officer, "RSA_PSS_SHA256", DOCUMENT)
    content_info = asn1_cms.ContentInfo.load(p7s, strict=True)
    assert content_info["content_type"].native == "signed_data"
    signed_data = content_info["content"]
    assert signed_data["version"].native == "v1"
    assert [a["algorithm"].native for a in signed_data["digest_algorithms"]] == ["sha256"]
    assert signed_data["digest_algorithms"][0]["parameters"].native is None  # RFC 5754
    assert signed_data["encap_content_info"]["content_type"].native == "data"
    assert signed_data["encap_content_info"]["content"].native is None  # detached
    embedded = sorted(c.chosen.dump() for c in signed_data["certificates"])
    assert embedded == sorted(der(c) for c in (officer.certificate, *officer.chain))
    (signer_info,) = signed_data["signer_infos"]
    assert signer_info["version"].native == "v1"
    sid = signer_info["sid"]
    assert sid.name == "issuer_and_serial_number"
    assert sid.chosen["serial_number"].native == officer.certificate.serial_number
    pss = signer_info["signature_algorithm"]
    assert pss["algorithm"].native == "rsassa_pss"
    assert pss["parameters"].native == {
        "hash_algorithm": {"algorithm": "sha256", "parameters": None},
        "mask_gen_algorithm": {
            "algorithm": "mgf1",
            "parameters": {"algorithm": "sha256", "parameters": None},
        },
        "salt_length": 32,
        "trailer_field": "trailer_field_bc",
    }


def test_assemble_takes_the_set_of_attributes(pki: Pki) -> None:
    officer = officer_of(pki, "P256")
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    signature = officer.sign(attributes.digest)
    assembler = Assembler(officer.certificate, "ECDSA_SHA256")
    with pytest.raises(ValueError, match="0x31"):
        assembler.assemble(b"\xa0" + attributes.der[1:], signature)


# ---- OpenSSL and verify_detached ---------------------------------------------------------------

needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


@needs_openssl
@pytest.mark.parametrize(("key_type", "algorithm"), KINDS, ids=KIND_IDS)
def test_openssl_verifies_and_refuses(
    pki: Pki, other_pki: Pki, key_type: str, algorithm: str, tmp_path: Path
) -> None:
    officer = officer_of(pki, key_type)
    p7s = signed_cms(officer, algorithm, DOCUMENT)

    good = openssl_verify(tmp_path / "good", p7s, DOCUMENT, pki.chain)
    assert good.returncode == 0, good.stderr
    assert "Verification successful" in good.stderr
    assert verify_detached(p7s, DOCUMENT) == officer.certificate

    # The document changed after signing.
    tampered = DOCUMENT.replace(b"An", b"Anh")
    result = openssl_verify(tmp_path / "tampered", p7s, tampered, pki.chain)
    assert result.returncode != 0
    assert "content verify error" in result.stderr
    with pytest.raises(CmsInvalid, match="message digest") as caught:
        verify_detached(p7s, tampered)
    assert caught.value.reason == "content"

    # Another officer's key signed the attributes of this officer's certificate.
    stranger = pki.officer(key_type)
    forged = signed_cms(officer, algorithm, DOCUMENT, signer=stranger)
    result = openssl_verify(tmp_path / "other-key", forged, DOCUMENT, pki.chain)
    assert result.returncode != 0
    assert "CMS_SignerInfo_verify:verification failure" in result.stderr
    with pytest.raises(CmsInvalid, match="signature is invalid") as caught:
        verify_detached(forged, DOCUMENT)
    assert caught.value.reason == "signature"

    # The right signature wrapped with another certificate (same key type, same CA).
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    signature = officer.sign(attributes.digest, algorithm)
    wrapped = Assembler(stranger.certificate, algorithm, stranger.chain).assemble(
        attributes.der, signature
    )
    result = openssl_verify(tmp_path / "wrong-cert", wrapped, DOCUMENT, pki.chain)
    assert result.returncode != 0
    assert "CMS_SignerInfo_verify:verification failure" in result.stderr
    with pytest.raises(CmsInvalid, match="another certificate") as caught:
        verify_detached(wrapped, DOCUMENT)
    assert caught.value.reason == "signing_certificate"

    # A valid signature, but the verifier trusts another root.
    result = openssl_verify(tmp_path / "other-root", p7s, DOCUMENT, other_pki.chain)
    assert result.returncode != 0
    assert "certificate verify error" in result.stderr

    # Signed by the embedded certificate's key, but signing-certificate-v2 names another one.
    # (``openssl cms -verify`` 3.0 does not look at signing-certificate-v2; verify_detached does.)
    misnamed = AttributesBuilder(stranger.certificate, SIGNING_TIME).build(DOCUMENT)
    signature = officer.sign(misnamed.digest, algorithm)
    p7s = Assembler(officer.certificate, algorithm, officer.chain).assemble(misnamed.der, signature)
    with pytest.raises(CmsInvalid, match="another certificate"):
        verify_detached(p7s, DOCUMENT)
    assert "certificate verify error" in result.stderr


@needs_openssl
def test_verify_detached_reads_openssl_cades(pki: Pki, tmp_path: Path) -> None:
    """Our verifier is not tied to our template: OpenSSL's own CAdES-BES passes it."""
    officer = officer_of(pki, "P256")
    assert OPENSSL is not None
    (tmp_path / "X.json").write_bytes(DOCUMENT)
    devpki.write_pem(tmp_path / "signer.pem", officer.certificate)
    devpki.write_key_pem(tmp_path / "signer.key", officer.key)
    sign = "cms -sign -binary -md sha256 -outform DER -signer signer.pem -inkey signer.key"
    subprocess.run(
        [OPENSSL, *sign.split(), "-cades", "-in", "X.json", "-out", "X.p7s"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=30,
    )
    p7s = (tmp_path / "X.p7s").read_bytes()
    assert verify_detached(p7s, DOCUMENT) == officer.certificate
    with pytest.raises(CmsInvalid, match="message digest"):
        verify_detached(p7s, DOCUMENT + b"\n")

    subprocess.run(
        [OPENSSL, *sign.split(), "-nodetach", "-in", "X.json", "-out", "A.p7s"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=30,
    )
    with pytest.raises(CmsInvalid, match="not detached") as caught:
        verify_detached((tmp_path / "A.p7s").read_bytes(), DOCUMENT)
    assert caught.value.reason == "structure"


@pytest.mark.parametrize(
    "garbage", [b"", b"\x30\x00", b"not a cms", b"\x30\x82\xff\xff" + b"\x00" * 10]
)
def test_verify_detached_refuses_garbage(garbage: bytes) -> None:
    with pytest.raises(CmsInvalid) as caught:
        verify_detached(garbage, DOCUMENT)
    assert caught.value.reason == "malformed"


def test_verify_detached_refuses_a_truncated_cms(pki: Pki) -> None:
    p7s = signed_cms(officer_of(pki, "P256"), "ECDSA_SHA256", DOCUMENT)
    with pytest.raises(CmsInvalid) as caught:
        verify_detached(p7s[:-1], DOCUMENT)
    assert caught.value.reason == "malformed"
    with pytest.raises(CmsInvalid) as caught:
        verify_detached(p7s + b"\x00", DOCUMENT)
    assert caught.value.reason == "malformed"


def test_verify_detached_finds_a_changed_signature_time(pki: Pki) -> None:
    """The attributes are covered by the signature: editing any byte of them breaks it."""
    officer = officer_of(pki, "RSA")
    p7s = signed_cms(officer, "RSA_PKCS1_SHA256", DOCUMENT)
    stamp = SIGNING_TIME.strftime("%y%m%d%H%M%SZ").encode()
    assert p7s.count(stamp) == 1
    edited = p7s.replace(stamp, stamp.replace(b"26", b"27", 1))
    with pytest.raises(CmsInvalid, match="signature is invalid"):
        verify_detached(edited, DOCUMENT)


# ---- performance ---------------------------------------------------------------------------


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _openssl_verify_all(
    certificate: x509.Certificate, algorithm: str, pairs: list[tuple[bytes, bytes]]
) -> Callable[[], None]:
    """OpenSSL's own verification of the same signatures through `cryptography`, with the key
    parsed and the ECDSA signatures DER-encoded beforehand: the floor under `Assembler.accept`."""
    key = certificate.public_key()
    if algorithm == "ECDSA_SHA256":
        assert isinstance(key, ec.EllipticCurvePublicKey)
        ecdsa = ec.ECDSA(hashes.SHA256())
        encoded = [
            (data, encode_dss_signature(int.from_bytes(s[:32]), int.from_bytes(s[32:])))
            for data, s in pairs
        ]

        def verify_ecdsa() -> None:
            for data, signature in encoded:
                key.verify(signature, data, ecdsa)

        return verify_ecdsa
    assert algorithm == "RSA_PKCS1_SHA256"
    assert isinstance(key, rsa.RSAPublicKey)
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    def verify_rsa() -> None:
        for data, signature in pairs:
            key.verify(signature, data, pkcs1, sha256)

    return verify_rsa


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [("RSA", "RSA_PKCS1_SHA256"), ("P256", "ECDSA_SHA256")],
    ids=["rsa-2048", "p256"],
)
def test_3000_signatures_verified_and_assembled_with_under_50_us_each_beyond_openssl(
    pki: Pki, key_type: str, algorithm: str
) -> None:
    """What the platform adds to OpenSSL's signature check, measured against that check on the
    same 3,000 signatures in the same run, so the bar holds on a slow or loaded machine (an
    absolute 400 ms failed at 449 ms on a machine whose OpenSSL alone took ~270 ms for P-256;
    our own part was 11-24 µs per signature there). A second P-256 verification per record
    (107 µs of our own when planted) breaks it."""
    officer = officer_of(pki, key_type)
    builder = AttributesBuilder(officer.certificate, SIGNING_TIME)
    attributes = [builder.build(DOCUMENT + str(i).encode()) for i in range(3000)]
    signatures = [officer.sign(a.digest, algorithm) for a in attributes]
    assembler = Assembler(officer.certificate, algorithm, officer.chain)
    pairs = list(zip(attributes, signatures, strict=True))
    openssl = _openssl_verify_all(officer.certificate, algorithm, [(a.der, s) for a, s in pairs])

    def accept_all() -> list[bytes]:
        return [assembler.accept(a.der, s) for a, s in pairs]

    # Interleaved, best of five each: one preemption on a loaded machine is not a cost.
    ours, floor = [], []
    for _ in range(5):
        ours.append(_timed(accept_all))
        floor.append(_timed(openssl))
    best, raw = min(ours), min(floor)
    assemble_only = min(
        _timed(lambda: [assembler.assemble(a.der, s) for a, s in pairs]) for _ in range(3)
    )
    own_us = (best - raw) / len(pairs) * 1e6
    print(
        f"{key_type}: verify+assemble 3,000: {best * 1000:.0f} ms, OpenSSL's verify alone "
        f"{raw * 1000:.0f} ms: {own_us:.1f} µs of our own per signature "
        f"(assemble alone {assemble_only * 1000:.0f} ms)"
    )
    assert own_us < 50, (
        f"verify+assemble of 3,000 {key_type} signatures took {best * 1000:.0f} ms, "
        f"{own_us:.1f} µs each beyond OpenSSL's {raw * 1000:.0f} ms"
    )
    # The per-record verify_signature the batch service may call costs the same (cached key).
    # Best of three, like the bars above: one preemption on a loaded machine is not a cost.
    per_record = min(
        _timed(
            lambda: [
                verify_signature(officer.certificate, algorithm, a.der, s) for a, s in pairs[:300]
            ]
        )
        for _ in range(3)
    )
    assert per_record < 0.1, f"300 per-record verifications took {per_record * 1000:.0f} ms"


# ---- the real token --------------------------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize(
    ("name", "algorithm"),
    [("rsa", "RSA_PKCS1_SHA256"), ("rsa", "RSA_PSS_SHA256"), ("p256", "ECDSA_SHA256")],
)
def test_softhsm_signatures_assemble_into_verifiable_cms(
    token: Pkcs11Token,
    softhsm: ProvisionedToken,
    test_pki: TestPki,
    name: str,
    algorithm: str,
    tmp_path: Path,
) -> None:
    """The agent's token layer signs the attribute digests; the platform assembles CMS."""
    provisioned = softhsm.certificates[name]
    (info,) = [
        c
        for c in token.list_certificates()
        if c.fingerprint_sha256 == provisioned.fingerprint_sha256
    ]
    documents = [DOCUMENT + f" {i}".encode() for i in range(5)]
    builder = AttributesBuilder(provisioned.certificate, datetime.now(UTC))
    attributes = [builder.build(d) for d in documents]
    received: list[bytes] = []

    def sink(offset: int, signatures: list[bytes]) -> None:
        assert offset == len(received)
        received.extend(signatures)

    signed = token.sign_batch(
        info,
        AgentAlgorithm(algorithm),
        [a.digest for a in attributes],
        softhsm.user_pin,
        sink,
        threading.Event(),
        2,
    )
    assert signed == len(documents) == len(received)

    assembler = Assembler(provisioned.certificate, algorithm)
    for i, (document, attrs, signature) in enumerate(
        zip(documents, attributes, received, strict=True)
    ):
        p7s = assembler.accept(attrs.der, signature)
        assert verify_detached(p7s, document) == provisioned.certificate
        result = openssl_verify(
            tmp_path / str(i),
            p7s,
            document,
            (test_pki.root.certificate, test_pki.issuing.certificate),
        )
        assert result.returncode == 0, result.stderr
    # A signature of one record does not pass for the next.
    with pytest.raises(SignatureInvalid):
        assembler.accept(attributes[1].der, received[0])


def test_pss_signature_from_cryptography_verifies(pki: Pki) -> None:
    """PSS with salt 32 made directly by cryptography (not via the test PKI's helper)."""
    officer = officer_of(pki, "RSA")
    attributes = AttributesBuilder(officer.certificate, SIGNING_TIME).build(DOCUMENT)
    key = officer.key
    assert not isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(
        attributes.der,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    verify_signature(officer.certificate, Algorithm.RSA_PSS_SHA256, attributes.der, signature)
