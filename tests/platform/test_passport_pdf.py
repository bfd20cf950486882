"""The PDF passport as readers see it (issue 15): signed by a document-signing key of its own
that Poppler (pdfsig, with the test root in an NSS database) and pyHanko trust, validation data
embedded for offline validation, every date dd/mm/yyyy, compound family names kept whole; the
QR code read back by zxing-cpp."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import os
import re
import shutil
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import segno
import zxingcpp
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from asn1crypto.crl import CertificateList
from asn1crypto.keys import PrivateKeyInfo
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext
from support.passport_fixtures import *  # noqa: F403
from support.passport_fixtures import signer_for
from support.passport_hsm import KEY_LABELS, PassportKeys, issue_crl

from kyso.agent import devpki
from kyso.platform.errors import DomainError
from kyso.platform.passport import config, dcc, pdfcms, render
from kyso.platform.passport.hsm import HsmConfig, HsmError, HsmSigner
from kyso.platform.passport.valuesets import value_sets

PDFSIG = shutil.which("pdfsig")
CERTUTIL = shutil.which("certutil")
PDFTOTEXT = shutil.which("pdftotext")
PDFTOPPM = shutil.which("pdftoppm")


def _codes() -> Any:
    return value_sets().vaccine_codes(
        disease="840539006",
        vaccine="1119349007",
        product="EU/1/20/1528",
        manufacturer="ORG-100030215",
    )


def _document(keys: PassportKeys, name: str = "Tôn Thất Thuyết") -> render.PassportDocument:
    certificate = dcc.certificate(
        dcc.Vaccination(name, date(1990, 5, 17), 2, date(2022, 3, 29), _codes()),
        uvci=dcc.new_uvci(),
        issuer="Ministry of Health of Viet Nam",
    )
    signer = signer_for(keys, "ES256")
    encoded = dcc.Encoder(signer.sign, "ES256", signer.certificate_der).encode(
        certificate, datetime(2022, 4, 1, 20, 30, tzinfo=UTC)
    )
    return render.PassportDocument(
        certificate, encoded.payload, encoded.issued_at, encoded.expires_at
    )


def _root(keys: PassportKeys) -> Any:
    return asn1_x509.Certificate.load(
        keys.document_ca.certificate.public_bytes(serialization.Encoding.DER)
    )


def test_poppler_says_valid_and_trusted_with_the_root_in_an_nss_database(
    passport_keys: PassportKeys, pdf_signing: render.PdfSigning, tmp_path: Path
) -> None:
    assert PDFSIG is not None, "pdfsig missing: run scripts/system-deps.sh (poppler-utils)"
    assert CERTUTIL is not None, "certutil missing: run scripts/system-deps.sh (libnss3-tools)"
    signed = render.signed_passport_pdf(_document(passport_keys), pdf_signing)
    pdf = tmp_path / "passport.pdf"
    pdf.write_bytes(signed)
    nss = tmp_path / "nss"
    nss.mkdir()
    root = devpki.write_pem(tmp_path / "root.pem", passport_keys.document_ca.certificate)
    subprocess.run([CERTUTIL, "-N", "--empty-password", "-d", f"sql:{nss}"], check=True)
    subprocess.run(
        [CERTUTIL, "-A", "-n", "Kyso root", "-t", "CT,C,C", "-i", str(root), "-d", f"sql:{nss}"],
        check=True,
    )
    report = subprocess.run(
        [PDFSIG, "-nssdir", f"sql:{nss}", str(pdf)], capture_output=True, text=True, check=False
    ).stdout
    assert "Signature Validation: Signature is Valid." in report, report
    assert "Certificate Validation: Certificate is Trusted." in report, report
    assert "Signer Certificate Common Name: Kyso Test PDF Signer" in report, report
    assert "Total document signed" in report, report


def test_pyhanko_finds_the_signature_intact_valid_trusted_and_revocation_checked_offline(
    passport_keys: PassportKeys, pdf_signing: render.PdfSigning
) -> None:
    signed = render.sign_pdf(render.passport_pdf(_document(passport_keys)), pdf_signing)
    reader = PdfFileReader(io.BytesIO(signed))
    (signature,) = reader.embedded_signatures
    # The validation data is in the PDF: the signer's certificate, its root and the CRL.
    dss = DocumentSecurityStore.read_dss(reader)
    embedded = {c.dump() for c in dss.load_certs()}
    assert signature.signer_cert.dump() in embedded
    assert _root(passport_keys).dump() in embedded
    assert len(dss.crls) == 1
    # Offline: nothing fetched, revocation required; the trust root and the PDF alone.
    context = ValidationContext(
        trust_roots=[_root(passport_keys)],
        other_certs=list(dss.load_certs()),
        crls=[CertificateList.load(crl.get_object().data) for crl in dss.crls],
        allow_fetching=False,
        revocation_mode="require",
    )
    status = validate_pdf_signature(signature, context)
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.bottom_line
    assert signature.coverage.name == "ENTIRE_FILE"  # the DSS is in the signed revision
    assert status.revocation_details is None or not status.revocation_details.revoked
    # Without the embedded CRL the same strict validation fails: the data is what makes it.
    bare = ValidationContext(
        trust_roots=[_root(passport_keys)],
        other_certs=list(dss.load_certs()),
        crls=[],
        ocsps=[],
        allow_fetching=False,
        revocation_mode="require",
    )
    assert not validate_pdf_signature(signature, bare).bottom_line


def test_the_dcc_signer_signs_no_pdf(passport_keys: PassportKeys) -> None:
    # The DSC's only extended key usage is the DCC one: readers say "Unknown issue".
    with pytest.raises(HsmError, match="DCC signer certificate") as caught:
        HsmSigner(passport_keys.config("ES256", purpose="document"))
    assert caught.value.code == "hsm_certificate"
    with pytest.raises(ValueError, match="document-signing key"):
        render.sign_pdf(
            render.passport_pdf(_document(passport_keys)),
            render.PdfSigning(signer_for(passport_keys, "ES256")),
        )
    environment = passport_keys.environment("ES256")
    settings = {
        "PASSPORT_PKCS11_MODULE": environment["KYSO_PASSPORT_PKCS11_MODULE"],
        "PASSPORT_TOKEN_LABEL": environment["KYSO_PASSPORT_TOKEN_LABEL"],
        "PASSPORT_KEY_LABEL": KEY_LABELS["ES256"],
    }
    with pytest.raises(HsmError, match="KYSO_PASSPORT_PDF_KEY_LABEL") as missing:
        HsmConfig.for_documents(settings, {"KYSO_PASSPORT_PIN": "1"})
    assert missing.value.code == "hsm_not_configured"
    with pytest.raises(HsmError, match="of its own"):
        HsmConfig.for_documents(
            {**settings, "PASSPORT_PDF_KEY_LABEL": KEY_LABELS["ES256"]},
            {"KYSO_PASSPORT_PIN": "1"},
        )
    config = HsmConfig.for_documents(
        {**settings, "PASSPORT_PDF_KEY_LABEL": "pdf-es256"}, {"KYSO_PASSPORT_PIN": "1"}
    )
    assert (config.token_label, config.key_label, config.purpose) == (
        environment["KYSO_PASSPORT_TOKEN_LABEL"],
        "pdf-es256",
        "document",
    )


def test_every_date_in_the_pdf_is_dd_mm_yyyy(
    passport_keys: PassportKeys, pdf_signing: render.PdfSigning, tmp_path: Path
) -> None:
    assert PDFTOTEXT is not None, "pdftotext missing: run scripts/system-deps.sh"
    document = _document(passport_keys)
    values = render.field_values(document.dcc)
    assert values[1] == "17/05/1990"
    assert values[7] == "29/03/2022"
    assert render.display_date("1990-05") == "05/1990"
    assert render.display_date("1990") == "1990"
    pdf = tmp_path / "passport.pdf"
    pdf.write_bytes(render.sign_pdf(render.passport_pdf(document), pdf_signing))
    text = subprocess.run(
        [PDFTOTEXT, str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert not re.search(r"\d{4}-\d{2}-\d{2}", text), text
    dates = re.findall(r"\b\d{2}/\d{2}/\d{4}\b", text)
    assert {"17/05/1990", "29/03/2022", "02/04/2022"} <= set(dates), dates


@pytest.mark.parametrize(
    ("name", "family", "given", "fnt", "gnt"),
    [
        ("Nguyễn Bảo Duy", "Nguyễn", "Bảo Duy", "NGUYEN", "BAO<DUY"),
        ("Tôn Thất Thuyết", "Tôn Thất", "Thuyết", "TON<THAT", "THUYET"),
        ("Âu Dương Thị Hoa", "Âu Dương", "Thị Hoa", "AU<DUONG", "THI<HOA"),
        ("Tôn Đức Thắng", "Tôn", "Đức Thắng", "TON", "DUC<THANG"),
    ],
)
def test_compound_family_names_stay_whole(
    passport_keys: PassportKeys, name: str, family: str, given: str, fnt: str, gnt: str
) -> None:
    document = _document(passport_keys, name)
    assert document.dcc["nam"] == {"fn": family, "fnt": fnt, "gn": given, "gnt": gnt}
    assert render.field_values(document.dcc)[0] == f"{name} ({fnt} {gnt})".replace("<", " ")


def _payload(keys: PassportKeys) -> str:
    return _document(keys).payload


def test_the_qr_png_reads_back_and_is_the_alphanumeric_ecc_q_symbol(
    passport_keys: PassportKeys,
) -> None:
    payload = _payload(passport_keys)
    symbol = render.qr_symbol(payload)
    assert (symbol.error, symbol.mode) == ("Q", "alphanumeric")
    # As large as one alphanumeric segment at ECC Q needs (segno's encoding as the reference),
    # no larger: the hcert specification's alphanumeric mode.
    reference = segno.make_qr(payload, error="q", mode="alphanumeric", boost_error=False)
    assert symbol.version == reference.version
    assert symbol.size == len(reference.matrix)
    for scale, border in ((4, 4), (8, 2)):
        png = render.qr_png(payload, scale=scale, border=border)
        picture = Image.open(io.BytesIO(png))
        assert picture.size == ((symbol.size + 2 * border) * scale,) * 2
        result = zxingcpp.read_barcode(picture)
        assert result is not None
        assert result.text == payload
        assert result.ec_level == "Q"


def test_a_qr_png_costs_a_few_milliseconds_of_cpu(passport_keys: PassportKeys) -> None:
    # CPU time, not wall time: the figure holds on a loaded machine. The pure-Python encoder
    # took about 20 ms of CPU per code; the bar of 500 codes/s per core is 2 ms.
    payloads = [_payload(passport_keys) for _ in range(4)]
    count = 100
    start = time.process_time()
    for i in range(count):
        render.symbol_png(render.qr_symbol(payloads[i % 4]))
    each = (time.process_time() - start) / count
    assert each < 0.006, f"{each * 1e3:.1f} ms of CPU per QR PNG"


def test_the_qr_code_in_the_pdf_reads_back(
    passport_keys: PassportKeys, pdf_signing: render.PdfSigning, tmp_path: Path
) -> None:
    assert PDFTOPPM is not None, "pdftoppm missing: run scripts/system-deps.sh"
    document = _document(passport_keys)
    pdf = tmp_path / "passport.pdf"
    pdf.write_bytes(render.signed_passport_pdf(document, pdf_signing))
    subprocess.run([PDFTOPPM, "-r", "150", "-png", str(pdf), str(tmp_path / "page")], check=True)
    (picture,) = tmp_path.glob("page*.png")
    result = zxingcpp.read_barcode(Image.open(picture))
    assert result is not None
    assert result.text == document.payload


def test_a_signed_pdf_costs_a_few_milliseconds_of_cpu(
    passport_keys: PassportKeys, pdf_signing: render.PdfSigning
) -> None:
    # CPU time, not wall time. fpdf2 (fonts parsed and subset, layout, for every passport)
    # and pyHanko's trial signature took about 200 ms of CPU per signed PDF here; the bar of
    # 50 signed PDFs/s per core is 20 ms. Each document differs (no cache to hit).
    documents = [_document(passport_keys, f"Nguyễn Văn {n}") for n in ("An", "Bình", "Cường")]
    render.signed_passport_pdf(documents[0], pdf_signing)  # fonts prepared once per process
    # The reference: the same PDFs signed by the same key, with pyHanko's own CMS assembly
    # (its ``async_sign``, not the template's), measured in this process and interleaved with
    # the template's rounds, so that a slower or busier CPU slows both alike.
    from pyhanko.sign.pkcs11 import PKCS11Signer

    signer = pdf_signing.signer.pdf_signer(pdf_signing.chain)
    template_sign = signer.async_sign
    pyhanko_sign = functools.partial(PKCS11Signer.async_sign, signer)
    cpu = {"template": 0.0, "pyhanko": 0.0}
    count = 0
    try:
        for _round in range(3):
            for path, sign in (("template", template_sign), ("pyhanko", pyhanko_sign)):
                signer.async_sign = sign
                start = time.process_time()
                for i in range(4):
                    render.signed_passport_pdf(documents[i % 3], pdf_signing)
                cpu[path] += time.process_time() - start
            count += 4
    finally:
        del signer.async_sign  # the class's (the template's) again
    each = {path: seconds / count for path, seconds in cpu.items()}
    figures = ", ".join(f"{path} {seconds * 1e3:.1f} ms" for path, seconds in each.items())
    # pyHanko's CMS assembly alone was 13 ms of the 17 ms (asn1crypto re-encoding the
    # certificates and attributes for every signature); with the template (pdfcms) and the
    # fonts' widths written once a signed PDF is 3 to 4 ms here, a third of pyHanko's path
    # (10 to 12 ms). Half holds on a slower CPU (both paths slow alike) and fails when the
    # template is not used (the ratio is then 1; an absolute 12 ms bar passed 2 runs in 3 that
    # way on this CPU). The absolute bar is the issue's 50 signed PDFs/s per core.
    assert each["template"] < 0.5 * each["pyhanko"], f"CPU per signed PDF: {figures}"
    assert each["template"] < 0.020, f"CPU per signed PDF: {figures}"


def _reference_cms(signer: Any, digest: bytes, signature: bytes, unsigned: Any = None) -> bytes:
    """What pyHanko's own code assembles for ``digest``, ``signature`` and ``unsigned``."""
    from pyhanko.sign.pkcs11 import PKCS11Signer

    attrs = asyncio.run(PKCS11Signer.signed_attrs(signer, digest, "sha256", use_pades=True))
    return bytes(
        PKCS11Signer._package_signature(
            signer,
            digest_algorithm="sha256",
            cms_version="v1",
            signed_attrs=attrs,
            signature=signature,
            unsigned_attrs=unsigned,
            encap_content_info=None,
        ).dump()
    )


def test_the_cms_template_gives_what_pyhanko_assembles_byte_for_byte(
    pdf_signing: render.PdfSigning,
) -> None:
    signer = pdf_signing.signer.pdf_signer(pdf_signing.chain)
    assert isinstance(signer, pdfcms.TemplateCmsSigner)
    with pdf_signing.signer.lock:
        for _ in range(3):
            digest = os.urandom(32)
            made = asyncio.run(signer.async_sign(digest, "sha256", use_pades=True))
            (info,) = made["content"]["signer_infos"]
            attributes = {a["type"].native: a["values"][0] for a in info["signed_attrs"]}
            assert attributes["message_digest"].native == digest
            assert made.dump() == _reference_cms(signer, digest, info["signature"].native)
            # The signature is the key's over the signed attributes as a SET (DER).
            key = pdf_signing.signer.certificate.public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(
                info["signature"].native,
                cms.CMSAttributes(list(info["signed_attrs"])).dump(),
                ec.ECDSA(hashes.SHA256()),
            )
        # With a signature time-stamp (unsigned attributes) too.
        _, _, timestamper = _dummy_tsa()
        digest = os.urandom(32)
        made = asyncio.run(
            signer.async_sign(digest, "sha256", use_pades=True, timestamper=timestamper)
        )
        (info,) = made["content"]["signer_infos"]
        assert [a["type"].native for a in info["unsigned_attrs"]] == ["signature_time_stamp_token"]
        assert made.dump() == _reference_cms(
            signer, digest, info["signature"].native, info["unsigned_attrs"]
        )
        # A dry run (pyHanko's size estimate) and non-PAdES signatures go to pyHanko's path.
        assert signer._fits_template(False, True, None, True, None)
        assert not signer._fits_template(True, True, None, True, None)
        assert not signer._fits_template(False, False, None, True, None)


def test_the_cms_template_refuses_structures_it_would_not_rebuild() -> None:
    constant = b"\x31\x05\x04\x03"
    with pytest.raises(ValueError, match="beyond the message digest"):
        pdfcms.CmsTemplate.from_samples(
            (constant + b"\x00\x00\x00", constant[:-1] + b"\x04\xff\xff\xff"), 3, b""
        )
    with pytest.raises(ValueError, match="length depends"):
        pdfcms.CmsTemplate.from_samples((b"\x00", b"\xff\xff"), 1, b"")
    assert pdfcms.der_length(5) == b"\x05"
    assert pdfcms.der_length(200) == b"\x81\xc8"
    assert pdfcms.der_length(70000) == b"\x83\x01\x11\x70"


def _dummy_tsa() -> tuple[devpki.DevCA, x509.Certificate, DummyTimeStamper]:
    """pyHanko's in-process TSA, with a time-stamping certificate from a root of its own."""
    tsa_root = devpki.create_ca("Kyso Test TSA Root", key_type="EC")
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # pyHanko's: RSA
    tsa_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kyso Test TSA")]))
        .issuer_name(tsa_root.certificate.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(devpki.key_usage_extension(("digitalSignature",)), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(tsa_root.key, hashes.SHA256())
    )
    timestamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(
            tsa_certificate.public_bytes(serialization.Encoding.DER)
        ),
        tsa_key=PrivateKeyInfo.load(
            tsa_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
    )
    return tsa_root, tsa_certificate, timestamper


def test_with_a_tsa_the_pdf_is_pades_b_lta(
    passport_keys: PassportKeys, pdf_signing: render.PdfSigning
) -> None:
    # An RFC 3161 TSA in the test process (pyHanko's), with a time-stamping certificate from
    # a root of its own; the platform's KYSO_PASSPORT_TSA_URL gives pyHanko's HTTP client.
    tsa_root, tsa_certificate, timestamper = _dummy_tsa()
    signing = dataclasses.replace(
        pdf_signing, timestamper=timestamper, tsa_roots=(tsa_root.certificate,)
    )
    signed = render.signed_passport_pdf(_document(passport_keys), signing)
    reader = PdfFileReader(io.BytesIO(signed))
    signature, document_stamp = reader.embedded_signatures
    assert signature.sig_object["/Type"] == "/Sig"
    assert document_stamp.sig_object["/Type"] == "/DocTimeStamp"
    tsa_anchor = asn1_x509.Certificate.load(
        tsa_root.certificate.public_bytes(serialization.Encoding.DER)
    )
    # The document time-stamp closes the file (PAdES B-LTA) and is valid and trusted.
    stamp_status = validate_pdf_timestamp(
        document_stamp, validation_context=ValidationContext(trust_roots=[tsa_anchor])
    )
    assert stamp_status.intact
    assert stamp_status.valid
    assert stamp_status.trusted
    status = validate_pdf_signature(
        signature,
        ValidationContext(trust_roots=[_root(passport_keys)]),
        ts_validation_context=ValidationContext(trust_roots=[tsa_anchor]),
    )
    assert status.bottom_line
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.intact
    assert status.timestamp_validity.valid
    assert status.timestamp_validity.trusted
    assert abs(status.timestamp_validity.timestamp - datetime.now(UTC)) < timedelta(minutes=5)
    # Only validation data and the document time-stamp were added after the signature.
    assert status.modification_level.name == "LTA_UPDATES"
    # The TSA's certificate is in the validation data too.
    dss = DocumentSecurityStore.read_dss(reader)
    assert asn1_x509.Certificate.load(
        tsa_certificate.public_bytes(serialization.Encoding.DER)
    ).dump() in {c.dump() for c in dss.load_certs()}
    # At the time-stamped moment, from the PDF alone (its DSS: certificates and CRL), with
    # revocation required and nothing fetched: what a reader does once the certificate has
    # expired.
    at_signing = ValidationContext(
        trust_roots=[_root(passport_keys)],
        other_certs=list(dss.load_certs()),
        crls=[CertificateList.load(crl.get_object().data) for crl in dss.crls],
        allow_fetching=False,
        revocation_mode="require",
        moment=status.timestamp_validity.timestamp,
    )
    offline = validate_pdf_signature(
        signature,
        at_signing,
        ts_validation_context=ValidationContext(trust_roots=[tsa_anchor]),
    )
    assert offline.bottom_line


def test_the_pdf_signing_settings(passport_keys: PassportKeys, tmp_path: Path) -> None:
    environment = passport_keys.environment("ES256")
    files = passport_keys.write_document_files(tmp_path / "pdf")
    settings: dict[str, Any] = {
        "PASSPORT_PKCS11_MODULE": environment["KYSO_PASSPORT_PKCS11_MODULE"],
        "PASSPORT_TOKEN_LABEL": environment["KYSO_PASSPORT_TOKEN_LABEL"],
        "PASSPORT_KEY_LABEL": environment["KYSO_PASSPORT_KEY_LABEL"],
        "PASSPORT_PDF_KEY_LABEL": environment["KYSO_PASSPORT_PDF_KEY_LABEL"],
        # KYSO_PASSPORT_PIN, which kyso.platform.settings reads when the app is made
        "PASSPORT_PIN": environment["KYSO_PASSPORT_PIN"],
        **files,
    }
    extensions: dict[str, Any] = {}
    with pytest.MonkeyPatch.context():  # (the PIN came from the environment here once)
        signing = config.pdf_signing(settings, extensions)
        assert signing.signer.certificate == passport_keys.document_certificate
        assert signing.chain == (passport_keys.document_ca.certificate,)
        assert signing.crls == (passport_keys.document_crl,)
        assert signing.timestamper is None
        assert config.pdf_signing(settings, extensions) is signing  # kept
        # A new CRL file is read again; a TSA URL gives pyHanko's HTTP time-stamp client.
        newer = issue_crl(passport_keys.document_ca, days=14)
        crl_file = Path(files["PASSPORT_PDF_CRLS"])
        crl_file.write_bytes(newer.public_bytes(serialization.Encoding.DER))
        os.utime(crl_file, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
        settings["PASSPORT_TSA_URL"] = "http://tsa.kyso.test/tsr"
        again = config.pdf_signing(settings, extensions)
        assert again.crls == (newer,)
        assert isinstance(again.timestamper, HTTPTimeStamper)
        assert again.signer is signing.signer  # the key stays open
        crl_file.unlink()
        with pytest.raises(DomainError) as caught:
            config.pdf_signing(settings, extensions)
        assert caught.value.key == "passport.error_hsm_certificate"


def _tsa_settings(
    keys: PassportKeys, directory: Path, tsa_url: str, anchors: Path, **more: Any
) -> dict[str, Any]:
    """The platform's settings for a PDF signed with the platform's own TSA (KYSO_TSA_URL),
    whose root is among KYSO_TRUST_ANCHORS: no passport-specific TSA setting."""
    environment = keys.environment("ES256")
    return {
        "PASSPORT_PKCS11_MODULE": environment["KYSO_PASSPORT_PKCS11_MODULE"],
        "PASSPORT_TOKEN_LABEL": environment["KYSO_PASSPORT_TOKEN_LABEL"],
        "PASSPORT_KEY_LABEL": environment["KYSO_PASSPORT_KEY_LABEL"],
        "PASSPORT_PDF_KEY_LABEL": environment["KYSO_PASSPORT_PDF_KEY_LABEL"],
        "PASSPORT_PIN": environment["KYSO_PASSPORT_PIN"],
        **keys.write_document_files(directory),
        "PASSPORT_PDF_FETCH_REVOCATION": "1",  # the TSA's CRL, from the test PKI
        "TSA_URL": tsa_url,
        "TRUST_ANCHORS": str(anchors),
        **more,
    }


def test_with_the_platforms_tsa_the_pdf_is_b_lta_and_validates_after_the_signer_expired(
    passport_keys: PassportKeys, test_pki: Any, tmp_path: Path
) -> None:
    from pyhanko.sign.validation.ades import ades_lta_validation
    from pyhanko.sign.validation.policy_decl import (
        PdfSignatureValidationSpec,
        RevinfoOnlineFetchingRule,
        RevocationInfoGatheringSpec,
        SignatureValidationSpec,
    )
    from pyhanko_certvalidator.context import CertValidationPolicySpec
    from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
    from pyhanko_certvalidator.policy_decl import (
        LEGACY_POLICY_MAP,
        REQUIRE_REVINFO,
        CertRevTrustPolicy,
    )
    from pyhanko_certvalidator.registry import SimpleTrustManager

    anchors = test_pki.write_anchors(tmp_path / "anchors.pem")
    settings = _tsa_settings(passport_keys, tmp_path / "pdf", test_pki.tsa_url, anchors)
    assert config.pdf_signing({**settings, "PASSPORT_TSA_URL": "off"}, {}).timestamper is None
    signing = config.pdf_signing(settings, {})
    assert isinstance(signing.timestamper, HTTPTimeStamper)  # KYSO_TSA_URL, over HTTP
    assert signing.tsa_roots  # KYSO_TRUST_ANCHORS: the test PKI's root certified the TSA
    signed = render.signed_passport_pdf(_document(passport_keys), signing)
    pdf = tmp_path / "passport.pdf"
    pdf.write_bytes(signed)
    reader = PdfFileReader(io.BytesIO(signed))
    signature, document_stamp = reader.embedded_signatures
    assert document_stamp.sig_object["/Type"] == "/DocTimeStamp"
    dss = DocumentSecurityStore.read_dss(reader)
    tsa_der = test_pki.tsa.certificate.public_bytes(serialization.Encoding.DER)
    assert tsa_der in {c.dump() for c in dss.load_certs()}
    assert len(dss.crls) >= 2  # the document root's and the TSA's (the test PKI root's)
    roots = [
        _root(passport_keys),
        asn1_x509.Certificate.load(
            test_pki.root.certificate.public_bytes(serialization.Encoding.DER)
        ),
    ]
    # A moment after the signer's certificate expired (the TSA's is still valid): offline,
    # from the PDF alone, the time-stamps prove the signature existed while it was valid.
    expiry = passport_keys.document_certificate.not_valid_after_utc
    later = expiry + timedelta(days=30)
    assert later < test_pki.tsa.certificate.not_valid_after_utc
    naive = validate_pdf_signature(
        signature,
        ValidationContext(trust_roots=roots, allow_fetching=False, moment=later),
    )
    assert not naive.bottom_line  # without the time-stamps: an expired certificate
    spec = PdfSignatureValidationSpec(
        SignatureValidationSpec(
            cert_validation_policy=CertValidationPolicySpec(
                trust_manager=SimpleTrustManager.build(trust_roots=roots),
                revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
            ),
            # The document time-stamp's TSA is checked at the validation time, two years on,
            # when the CRL the PDF holds for it (an hour's validity) is long stale and an
            # offline verifier has no fresher one: no revocation check for the TSA only. The
            # signer's revocation data is required, from the PDF.
            ts_cert_validation_policy=CertValidationPolicySpec(
                trust_manager=SimpleTrustManager.build(trust_roots=roots),
                revinfo_policy=CertRevTrustPolicy(LEGACY_POLICY_MAP["none"]),
            ),
            # Offline: nothing fetched, only what the PDF carries.
            revinfo_gathering_policy=RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
            ),
        )
    )
    result = asyncio.run(
        ades_lta_validation(
            signature,
            spec,
            timing_info=ValidationTimingInfo(
                validation_time=later, best_signature_time=later, point_in_time_validation=False
            ),
        )
    )
    assert result.ades_subindic.status.name == "PASSED", result.ades_subindic
    assert result.api_status is not None
    assert result.api_status.intact
    assert result.api_status.valid
    assert result.api_status.trusted
    # The signature's time: the signature time-stamp, within minutes of now.
    assert abs(result.best_signature_time - datetime.now(UTC)) < timedelta(minutes=10)
    # Poppler still says the signature is valid and trusted (both roots in its NSS database).
    assert PDFSIG is not None
    assert CERTUTIL is not None
    nss = tmp_path / "nss"
    nss.mkdir()
    subprocess.run([CERTUTIL, "-N", "--empty-password", "-d", f"sql:{nss}"], check=True)
    for name, certificate in (
        ("Kyso root", passport_keys.document_ca.certificate),
        ("Test PKI root", test_pki.root.certificate),
    ):
        path = devpki.write_pem(tmp_path / f"{name}.pem", certificate)
        subprocess.run(
            [CERTUTIL, "-A", "-n", name, "-t", "CT,C,C", "-i", str(path), "-d", f"sql:{nss}"],
            check=True,
        )
    report = subprocess.run(
        [PDFSIG, "-nssdir", f"sql:{nss}", str(pdf)], capture_output=True, text=True, check=False
    ).stdout
    first = report.split("Signature #2")[0]
    assert "Signature Validation: Signature is Valid." in first, report
    assert "Certificate Validation: Certificate is Trusted." in first, report
    assert "Signature #2" in report, report  # the document time-stamp


def test_when_the_tsa_is_away_the_policy_decides_and_says_so(
    passport_keys: PassportKeys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kyso.platform.ops.metrics import PDF_TIMESTAMPS

    def count(outcome: str) -> float:
        return float(PDF_TIMESTAMPS.labels(outcome=outcome)._value.get())

    anchors = devpki.write_pem(tmp_path / "anchors.pem", passport_keys.document_ca.certificate)
    away = "http://127.0.0.1:9/tsa"  # nothing listens on the discard port
    hard = config.pdf_signing(
        _tsa_settings(passport_keys, tmp_path / "hard", away, anchors, TSA_TIMEOUT=2.0), {}
    )
    assert hard.tsa_policy == "hard"
    refused = count("refused")
    with pytest.raises(DomainError) as caught:
        render.signed_passport_pdf(_document(passport_keys), hard)
    assert caught.value.key == "passport.error_pdf_timestamp"
    assert "tải lại tệp PDF sau ít phút" in caught.value.text("vi")
    assert "TSA" in caught.value.text("vi")
    assert count("refused") == refused + 1
    assert any(r.levelname == "ERROR" and "TSA" in r.getMessage() for r in caplog.records)
    caplog.clear()
    soft = config.pdf_signing(
        _tsa_settings(
            passport_keys, tmp_path / "soft", away, anchors, TSA_TIMEOUT=2.0, TSA_POLICY="soft"
        ),
        {},
    )
    without = count("signed_without")
    signed = render.signed_passport_pdf(_document(passport_keys), soft)
    assert count("signed_without") == without + 1
    assert any(r.levelname == "WARNING" and "TSA" in r.getMessage() for r in caplog.records)
    # PAdES B-B with the signer's validation data: valid and trusted offline, no time-stamp.
    reader = PdfFileReader(io.BytesIO(signed))
    (signature,) = reader.embedded_signatures
    dss = DocumentSecurityStore.read_dss(reader)
    status = validate_pdf_signature(
        signature,
        ValidationContext(
            trust_roots=[_root(passport_keys)],
            other_certs=list(dss.load_certs()),
            crls=[CertificateList.load(crl.get_object().data) for crl in dss.crls],
            allow_fetching=False,
            revocation_mode="require",
        ),
    )
    assert status.bottom_line
    assert status.timestamp_validity is None
