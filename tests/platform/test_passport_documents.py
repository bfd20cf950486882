"""What citizens get: ICAO names, the QR code, the PAdES-signed PDF; the citizen lookup rules."""

from __future__ import annotations

import io
import re
import zlib
from datetime import UTC, date, datetime, timedelta

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from fontTools.ttLib import TTFont
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy.orm import Session
from support.cms_pki import Officer, Pki
from support.passport_data import sign_people
from support.passport_fixtures import *  # noqa: F403
from support.passport_hsm import PassportKeys
from support.platform_seed import Seed, add_person

from kyso.platform.errors import DomainError
from kyso.platform.passport import dcc, lookup, render, verifier
from kyso.platform.passport.hsm import HsmSigner
from kyso.platform.passport.issuance import SchemaGuard
from kyso.platform.passport.names import icao, split_name
from kyso.platform.passport.valuesets import value_sets
from kyso.platform.passport.verifier import schema_validator


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Nguyễn", "NGUYEN"),
        ("Văn An", "VAN<AN"),
        ("Đặng Thị Ánh Tuyết", "DANG<THI<ANH<TUYET"),
        ("đỗ  ưng   ơn", "DO<UNG<ON"),
        ("Lương-Hoàng  Mỹ", "LUONG<HOANG<MY"),
        ("Huỳnh Ngọc Ẩn 0012", "HUYNH<NGOC<AN"),
        ("O'Brien", "OBRIEN"),
        ("Gößinger Æsa Øre", "GOESSINGER<AESA<OERE"),
        ("Müller", "MUELLER"),
        ("Ỷ Ỹ Ỵ Ữ Ự Ậ Ẫ Ẳ", "Y<Y<Y<U<U<A<A<A"),
        ("  ", ""),
    ],
)
def test_icao_transliteration(name: str, expected: str) -> None:
    assert icao(name) == expected
    assert re.fullmatch(r"[A-Z<]*", icao(name))


def test_every_vietnamese_letter_transliterates_to_its_base() -> None:
    letters = "aàáảãạăằắẳẵặâầấẩẫậeèéẻẽẹêềếểễệiìíỉĩịoòóỏõọôồốổỗộơờớởỡợuùúủũụưừứửữựyỳýỷỹỵđ"
    bases = "A" * 18 + "E" * 12 + "I" * 6 + "O" * 18 + "U" * 12 + "Y" * 6 + "D"
    assert icao(letters) == bases
    assert icao(letters.upper()) == bases
    assert len(icao("A" * 200)) == 80


def test_a_vietnamese_name_is_family_name_first() -> None:
    assert split_name("Nguyễn  Văn   An") == ("Nguyễn", "Văn An")
    assert split_name("Thủy") == ("Thủy", "")
    certificate = dcc.certificate(
        dcc.Vaccination(
            "Thủy",
            date(2001, 2, 3),
            1,
            date(2021, 9, 9),
            value_sets().vaccine_codes(
                disease="840539006",
                vaccine="29061000087103",
                product="EU/1/20/1525",
                manufacturer="ORG-100001417",
            ),
        ),
        uvci=dcc.new_uvci(),
        issuer="Ministry of Health of Viet Nam",
    )
    assert certificate["nam"] == {"fn": "Thủy", "fnt": "THUY"}
    assert (certificate["v"][0]["dn"], certificate["v"][0]["sd"]) == (1, 1)  # Janssen: 1/1


def test_value_sets_choose_the_dcc_codes() -> None:
    sets = value_sets()
    # Vero Cell (Sinopharm Beijing): the encoding instructions' specific code.
    codes = sets.vaccine_codes(
        disease="840539006", vaccine="J07BX03", product="BBIBP-CorV", manufacturer="ORG-100020693"
    )
    assert codes.vp == "1157024006"
    assert (
        sets.vaccine_codes(
            disease="840539006",
            vaccine="1157024006",
            product="WIBP-CorV",
            manufacturer="Sinopharm-WIBP",
        ).vp
        == "1157024006"
    )
    with pytest.raises(ValueError, match="not the maker"):
        sets.vaccine_codes(
            disease="840539006",
            vaccine="1119349007",
            product="EU/1/20/1528",
            manufacturer="ORG-100031184",
        )


def test_the_schema_guard_agrees_with_jsonschema() -> None:
    validator = schema_validator()
    guard = SchemaGuard()
    codes = value_sets().vaccine_codes(
        disease="840539006",
        vaccine="1119349007",
        product="EU/1/20/1528",
        manufacturer="ORG-100030215",
    )
    cases = []
    for name in ("Nguyễn Văn An", "Thủy", "Đ" + " Ư" * 60, "A" * 81 + " B"):
        for born in (date(1990, 5, 17), date(1899, 12, 31), date(2100, 1, 1)):
            for dose in (1, 3):
                cases.append(
                    dcc.certificate(
                        dcc.Vaccination(name, born, dose, date(2022, 3, 29), codes),
                        uvci=dcc.new_uvci(),
                        issuer="Ministry of Health of Viet Nam",
                    )
                )
    broken = dcc.certificate(
        dcc.Vaccination("Lê An", date(1990, 1, 1), 1, date(2022, 3, 29), codes),
        uvci="URN:UVCI:01:VN:" + "F" * 70,
        issuer="Ministry of Health of Viet Nam",
    )
    cases.append(broken)
    cases.append({**broken, "nam": {"fn": "Lê", "fnt": "Le"}})
    cases.append({**broken, "v": [{**broken["v"][0], "dn": 0}]})
    cases.append({**broken, "v": [{**broken["v"][0], "is": "x" * 81}]})
    verdicts = [(bool(guard.problems(c)), bool(list(validator.iter_errors(c)))) for c in cases]
    assert [g for g, _ in verdicts] == [j for _, j in verdicts]
    assert any(g for g, _ in verdicts)
    assert not all(g for g, _ in verdicts)


def test_base45_table_encoder_equals_the_reference() -> None:
    import os

    import base45  # type: ignore[import-untyped]

    for size in (*range(12), 255, 556, 1001):
        data = os.urandom(size)
        assert dcc.base45_encode(data) == base45.b45encode(data).decode("ascii")
    assert dcc.base45_encode(b"AB") == "BB8"  # RFC 9285 4.3


def test_expiry_is_twelve_calendar_months() -> None:
    assert dcc.expiry(datetime(2024, 2, 29, 23, 0, tzinfo=UTC)) == datetime(
        2025, 2, 28, 23, 0, tzinfo=UTC
    )
    assert dcc.expiry(datetime(2022, 12, 31, tzinfo=UTC)) == datetime(2023, 12, 31, tzinfo=UTC)


def _issued(central_signer: HsmSigner) -> tuple[dict[str, object], dcc.Encoded]:
    codes = value_sets().vaccine_codes(
        disease="840539006",
        vaccine="1119349007",
        product="EU/1/20/1528",
        manufacturer="ORG-100030215",
    )
    certificate = dcc.certificate(
        dcc.Vaccination("Nguyễn Thị Đào Ưng", date(1990, 5, 17), 2, date(2022, 3, 29), codes),
        uvci=dcc.new_uvci(),
        issuer="Ministry of Health of Viet Nam",
    )
    encoder = dcc.Encoder(
        central_signer.sign, central_signer.algorithm, central_signer.certificate_der
    )
    return certificate, encoder.encode(certificate, datetime.now(UTC))


def test_the_qr_code_is_alphanumeric_at_ecc_q_and_reads_back(central_signer: HsmSigner) -> None:
    _, encoded = _issued(central_signer)
    symbol = render.qr_symbol(encoded.payload)
    assert symbol.mode == "alphanumeric"
    assert symbol.error == "Q"
    signers = verifier.SignerList([central_signer.certificate])
    result = verifier.verify_image(render.qr_png(encoded.payload), signers)
    assert result.valid, result.checks
    assert result.text == encoded.payload
    assert [c.name for c in result.checks] == list(verifier.CHECKS)
    # A payload too long for Q falls back to M.
    long_payload = "HC1:" + "A" * 2500  # QR 40-Q holds 2,420 alphanumeric characters
    assert render.qr_symbol(long_payload).error == "M"


def test_the_verifier_refuses_what_it_must(
    central_signer: HsmSigner, passport_keys: PassportKeys
) -> None:
    _, encoded = _issued(central_signer)
    signers = verifier.SignerList([central_signer.certificate])
    assert verifier.verify(encoded.payload, signers).valid
    unknown = verifier.verify(encoded.payload, verifier.SignerList())
    assert unknown.check("signature") == verifier.Check(
        "signature",
        False,
        unknown.check("signature").detail,  # type: ignore[union-attr]
    )
    assert not unknown.valid
    late = verifier.verify(encoded.payload, signers, encoded.expires_at + timedelta(seconds=1))
    assert not late.passed("expiry")
    assert late.passed("signature")
    cose = bytearray(zlib.decompress(__import__("base45").b45decode(encoded.payload[4:])))
    cose[-1] ^= 0x01  # one bit of the signature
    tampered = dcc.hc1(bytes(cose))
    result = verifier.verify(tampered, signers)
    assert result.passed("cose")
    assert not result.passed("signature")


def test_the_pdf_shows_the_fields_in_both_languages_and_validates(
    central_signer: HsmSigner, passport_keys: PassportKeys, pdf_signing: render.PdfSigning
) -> None:
    certificate, encoded = _issued(central_signer)
    document = render.PassportDocument(
        certificate, encoded.payload, encoded.issued_at, encoded.expires_at
    )
    values = render.field_values(certificate)
    assert len(values) == len(render.FIELDS) == 11
    # DejaVu Sans has a glyph for every character the PDF writes.
    font = TTFont(str(render._font_dir() / "DejaVuSans.ttf"))
    cmap = font.getBestCmap()
    text = "".join(values) + "".join(vi + en for vi, en in render.FIELDS)
    assert [c for c in set(text) if ord(c) not in cmap] == []

    signed = render.sign_pdf(render.passport_pdf(document), pdf_signing)
    assert b"/FontFile2" in signed  # the font is embedded
    reader = PdfFileReader(io.BytesIO(signed))
    (signature,) = reader.embedded_signatures
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"  # PAdES
    # Signed by the document-signing key, which chains to its own root (not the CSCA).
    anchor = asn1_x509.Certificate.load(
        passport_keys.document_ca.certificate.public_bytes(serialization.Encoding.DER)
    )
    status = validate_pdf_signature(signature, ValidationContext(trust_roots=[anchor]))
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.bottom_line
    assert status.signing_cert.subject.native["common_name"] == "Kyso Test PDF Signer"
    # Nothing added after the signature: the whole file is covered.
    assert signature.coverage.name == "ENTIRE_FILE"


def test_lookup_needs_all_three_factors_and_is_throttled(
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issue: object,
) -> None:
    person = add_person(
        session, org, "Bùi Thị Xuân", identity_number="079190000123", phone="0912345678"
    )
    session.commit()
    with pytest.raises(DomainError) as caught:
        lookup.find_passport(
            session,
            identity_number="079190000123",
            birth_date="17/05/1990",
            phone_last4="5678",
            ip="10.0.0.1",
        )
    assert caught.value.key == "passport.lookup_not_issued"
    sign_people(session, org, facility_pki, facility_officer, [person.id])
    issue()  # type: ignore[operator]
    found = lookup.find_passport(
        session,
        identity_number="0791 9000 0123",
        birth_date="1990-05-17",
        phone_last4="5678",
        ip="10.0.0.1",
    )
    assert found.person_id == person.id
    for wrong in (
        {"birth_date": "18/05/1990", "phone_last4": "5678"},
        {"birth_date": "17/05/1990", "phone_last4": "5679"},
    ):
        with pytest.raises(DomainError) as caught:
            lookup.find_passport(session, identity_number="079190000123", ip="10.0.0.2", **wrong)
        assert caught.value.key == "passport.lookup_not_found"
    with pytest.raises(DomainError) as caught:
        lookup.find_passport(
            session, identity_number="12", birth_date="x", phone_last4="1", ip="10.0.0.2"
        )
    assert caught.value.key == "passport.lookup_bad_input"
    # 5 failures for one identity number: even the right answers wait (a bounded delay per
    # identity number, never a lock-out: docs/security.md).
    for _ in range(3):
        with pytest.raises(DomainError):
            lookup.find_passport(
                session,
                identity_number="079190000123",
                birth_date="01/01/2000",
                phone_last4="0000",
                ip="10.0.0.3",
            )
    with pytest.raises(DomainError) as caught:
        lookup.find_passport(
            session,
            identity_number="079190000123",
            birth_date="17/05/1990",
            phone_last4="5678",
            ip="10.0.0.4",
        )
    assert caught.value.key == "passport.lookup_wait"
    later = datetime.now(UTC) + lookup.WINDOW + timedelta(minutes=1)
    again = lookup.find_passport(
        session,
        identity_number="079190000123",
        birth_date="17/05/1990",
        phone_last4="5678",
        ip="10.0.0.4",
        now=later,
    )
    assert again.id == found.id


def test_a_picture_too_large_to_be_a_qr_photo_is_refused_before_decoding() -> None:
    """The verify page is public: a 500 KB PNG can decode to 1.7 GB. Refused from its header."""
    import io

    from PIL import Image

    huge = io.BytesIO()
    Image.new("1", (5000, 5000)).save(huge, format="PNG")  # 25 MP, a few KB on disk
    result = verifier.verify_image(huge.getvalue(), verifier.SignerList([]))
    qr = result.check("qr")
    assert qr is not None
    assert not qr.ok
    assert "megapixels" in qr.detail
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # beyond PIL's own bomb limit
    refused = verifier.verify_image(bomb.getvalue(), verifier.SignerList([])).check("qr")
    assert refused is not None
    assert not refused.ok
