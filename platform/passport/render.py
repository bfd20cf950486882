"""What citizens download: the QR image and the PDF passport, signed by the platform's keys.

- QR: the ``HC1:`` text in alphanumeric mode (its base45 alphabet is QR's alphanumeric set),
  error correction Q where the text fits a QR code at Q, else M (hcert spec 1.0.8, 4.1),
  written by zxing-cpp (C++); the PNG is 1 bit a pixel, its rows packed by Pillow.
- PDF (A4): the 11 fields of Decision 5772/QĐ-BYT, each labelled in Vietnamese and English
  (name, date of birth, disease, vaccine type, vaccine product, manufacturer, dose number /
  series, date of vaccination, country, issuer, certificate identifier), the QR code, the
  issue and expiry dates, every date dd/mm/yyyy. Text is set in DejaVu Sans, embedded (a
  subset made once per process, ``pdfpage``), which covers every Vietnamese letter. The PDF
  is PAdES-signed (ETSI.CAdES.detached) by the document-signing key, not the DCC signer
  (``PdfSigning``), with its certificates and CRLs in the signed revision, so any PDF reader
  shows who signed it and that it was not changed, and validates it offline.

The font comes from ``KYSO_PASSPORT_FONT_DIR`` or the Debian package fonts-dejavu-core
(``/usr/share/fonts/truetype/dejavu``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import logging
import struct
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import zxingcpp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PIL import Image

from kyso.platform import formatting
from kyso.platform.errors import DomainError
from kyso.platform.ops.metrics import PDF_TIMESTAMPS
from kyso.platform.passport import pdfpage, qrmask
from kyso.platform.passport.hsm import HsmSigner
from kyso.platform.passport.valuesets import value_sets

__all__ = [
    "PassportDocument",
    "PdfSigning",
    "QrSymbol",
    "passport_page",
    "passport_pdf",
    "qr_png",
    "qr_symbol",
    "sign_pdf",
    "signed_passport_pdf",
    "symbol_png",
]

logger = logging.getLogger(__name__)

FONT_DIRS: Final = ("/usr/share/fonts/truetype/dejavu",)


# QR's alphanumeric set: base45's alphabet, so an ``HC1:`` text is one alphanumeric segment.
_ALPHANUMERIC: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class QrSymbol:
    """A QR code: ``size`` x ``size`` modules, ``modules[row * size + col]`` 0 (dark) or 255."""

    payload: str
    error: str  # "Q" or "M"
    mode: str  # "alphanumeric" for an HC1 text, else "byte"
    size: int
    modules: bytes

    @property
    def version(self) -> int:
        return (self.size - 17) // 4


def qr_symbol(payload: str) -> QrSymbol:
    """The QR code of ``payload``: ECC Q when it fits, else M; an ``HC1:`` text (all in QR's
    alphanumeric set) is encoded as one alphanumeric segment.

    zxing-cpp's writer (C++, libzint) builds the symbol with data mask 0; the mask the
    ISO/IEC 18004 penalty rules choose is computed on it (``qrmask``, all 8 masks at once,
    0.5 ms where libzint took 1.4 ms) and the writer applies that one: a pure-Python encoder
    took about 20 ms of CPU per passport."""
    for error in ("Q", "M"):
        try:
            barcode = zxingcpp.create_barcode(
                payload, zxingcpp.BarcodeFormat.QRCode, ec_level=error, data_mask=0
            )
        except ValueError:
            continue
        size, modules = _modules(barcode)
        mask = qrmask.best_mask(modules, size, 0)
        if mask:
            barcode = zxingcpp.create_barcode(
                payload, zxingcpp.BarcodeFormat.QRCode, ec_level=error, data_mask=mask
            )
            size, modules = _modules(barcode)
        mode = "alphanumeric" if set(payload) <= _ALPHANUMERIC else "byte"
        return QrSymbol(payload, error, mode, size, modules)
    raise ValueError(f"{len(payload)} characters do not fit a QR code at ECC M")


def _modules(barcode: zxingcpp.Barcode) -> tuple[int, bytes]:
    image = barcode.to_image(scale=1, add_quiet_zones=False)
    return int(image.shape[0]), bytes(memoryview(image))  # type: ignore[arg-type]  # a buffer


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def symbol_png(symbol: QrSymbol, *, scale: int = 4, border: int = 4) -> bytes:
    """A 1-bit greyscale PNG of ``symbol``: ``scale`` pixels a module, ``border`` modules of
    quiet zone. Each module row is packed once (Pillow, in C) and repeated ``scale`` times;
    zlib at level 1 compresses the repeats to almost nothing (about 2 KB for a passport; level
    6 saved 15 % of that for ten times the time, a fifth of a QR PNG's cost)."""
    size = symbol.size
    side = (size + 2 * border) * scale
    rows = Image.new("1", (side, size), 1)
    matrix = Image.frombytes("L", (size, size), symbol.modules)
    rows.paste(
        matrix.resize((size * scale, size), Image.Resampling.NEAREST).convert(
            "1", dither=Image.Dither.NONE
        ),
        (border * scale, 0),
    )
    packed = rows.tobytes()
    width = (side + 7) // 8
    blank = (b"\x00" + b"\xff" * width) * (border * scale)
    lines = [blank]
    for row in range(size):
        lines.append((b"\x00" + packed[row * width : (row + 1) * width]) * scale)
    lines.append(blank)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(lines), 1))
        + _png_chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=256)
def _recent_symbol(payload: str) -> QrSymbol:
    return qr_symbol(payload)


@functools.lru_cache(maxsize=256)
def qr_png(payload: str, *, scale: int = 4, border: int = 4) -> bytes:
    """The PNG of ``payload``'s QR code. The symbol is kept per process for a while: a
    citizen's result page, QR download and PDF ask for the same passport's code within
    seconds (``qr_symbol`` itself always encodes)."""
    return symbol_png(_recent_symbol(payload), scale=scale, border=border)


def _font_dir(configured: str | None = None) -> Path:
    for candidate in ([configured] if configured else []) + list(FONT_DIRS):
        path = Path(candidate)
        if (path / "DejaVuSans.ttf").is_file() and (path / "DejaVuSans-Bold.ttf").is_file():
            return path
    raise FileNotFoundError(
        "DejaVu Sans not found: install fonts-dejavu-core or set KYSO_PASSPORT_FONT_DIR"
    )


@dataclass(frozen=True)
class PassportDocument:
    """What the PDF shows: the signed DCC, its QR text and dates."""

    dcc: Mapping[str, Any]
    payload: str
    issued_at: datetime
    expires_at: datetime


# (Vietnamese, English) labels of the 11 fields of Decision 5772/QĐ-BYT.
FIELDS: Final = (
    ("Họ và tên", "Name"),
    ("Ngày sinh", "Date of birth"),
    ("Bệnh hoặc tác nhân gây bệnh", "Disease or agent targeted"),
    ("Loại vắc xin", "Vaccine or prophylaxis"),
    ("Tên vắc xin", "Vaccine medicinal product"),
    ("Nhà sản xuất", "Marketing authorisation holder or manufacturer"),
    ("Mũi tiêm / tổng số mũi", "Dose number / overall doses"),
    ("Ngày tiêm", "Date of vaccination"),
    ("Nước tiêm", "Country of vaccination"),
    ("Đơn vị cấp", "Certificate issuer"),
    ("Mã định danh chứng nhận", "Unique certificate identifier"),
)


def display_date(value: object) -> str:
    """A DCC date as the PDF writes every date: dd/mm/yyyy (a date of birth known only to
    the month or year: mm/yyyy or yyyy)."""
    text = str(value)[:10]
    parts = text.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        try:
            return formatting.day(date.fromisoformat(text))
        except ValueError:
            return text
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return f"{parts[1]}/{parts[0]}"
    return text


def field_values(dcc: Mapping[str, Any]) -> list[str]:
    """The 11 values, in the order of ``FIELDS`` (codes shown with their value-set names)."""
    sets = value_sets()
    name = dcc["nam"]
    vaccination = dcc["v"][0]
    full_name = " ".join(p for p in (name.get("fn", ""), name.get("gn", "")) if p)
    transliterated = " ".join(p for p in (name.get("fnt", ""), name.get("gnt", "")) if p)
    country = vaccination["co"]
    return [
        f"{full_name} ({transliterated.replace('<', ' ')})",
        display_date(dcc["dob"]),
        sets.display("diseases", vaccination["tg"]),
        sets.display("prophylaxis", vaccination["vp"]),
        sets.display("products", vaccination["mp"]),
        sets.display("manufacturers", vaccination["ma"]),
        f"{vaccination['dn']} / {vaccination['sd']}",
        display_date(vaccination["dt"]),
        "Việt Nam / Viet Nam" if country == "VN" else sets.display("countries", country),
        str(vaccination["is"]),
        str(vaccination["ci"]),
    ]


FOOTER: Final = (
    "Tài liệu này được ký số bởi Cục Y tế dự phòng, Bộ Y tế. Mã QR là Chứng nhận COVID số "
    "của EU (EU DCC), kiểm tra được bằng mọi ứng dụng xác minh. / This document is digitally "
    "signed by the Department of Preventive Medicine, Ministry of Health. The QR code is an "
    "EU Digital COVID Certificate that any verifier app can check."
)
QR_BORDER: Final = 2  # modules of quiet zone around the QR code in the PDF


def _page_fonts(font_dir: str | None = None) -> dict[str, pdfpage.PageFont]:
    fonts = _font_dir(font_dir)
    return {
        "": pdfpage.page_font(fonts / "DejaVuSans.ttf", "KYSOAA"),
        "B": pdfpage.page_font(fonts / "DejaVuSans-Bold.ttf", "KYSOAB"),
    }


def warm_fonts(font_dir: str | None = None) -> bool:
    """Subset the PDF's fonts now (0.2 s of CPU for the two, then kept per process):
    ``kyso-platform serve`` calls it in gunicorn's master, so that every worker forks with them
    instead of each paying for them on its first PDF. False when the fonts are missing (the
    first PDF then says so, as before)."""
    try:
        _page_fonts(font_dir)
    except FileNotFoundError:
        return False
    return True


def _qr_rows(symbol: QrSymbol, border: int) -> tuple[int, bytes]:
    """The QR code with its quiet zone, packed 1 bit a module (1 = white), row by row."""
    side = symbol.size + 2 * border
    picture = Image.new("1", (side, side), 1)
    matrix = Image.frombytes("L", (symbol.size, symbol.size), symbol.modules)
    picture.paste(matrix.convert("1", dither=Image.Dither.NONE), (border, border))
    return side, picture.tobytes()


def passport_page(document: PassportDocument, font_dir: str | None = None) -> pdfpage.Page:
    """The A4 page: header, the 11 fields (labels Vietnamese then English), QR, dates, note."""
    page = pdfpage.Page(_page_fonts(font_dir))
    left, width = page.MARGIN, page.width

    page.set_font("B", 11)
    page.multi_cell(left, width, 6, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", center=True)
    page.set_font("", 9)
    page.multi_cell(left, width, 5, "Độc lập - Tự do - Hạnh phúc", center=True)
    page.y += 4
    page.set_font("B", 15)
    page.multi_cell(left, width, 8, "HỘ CHIẾU VẮC XIN COVID-19", center=True)
    page.set_font("", 11)
    page.multi_cell(left, width, 6, "COVID-19 VACCINE PASSPORT", center=True)
    page.y += 3

    label_width = 70
    for (vietnamese, english), value in zip(FIELDS, field_values(document.dcc), strict=True):
        top = page.y
        page.set_font("B", 9)
        page.multi_cell(left, label_width, 4.5, vietnamese)
        page.set_font("", 8)
        page.multi_cell(left, label_width, 4, english)
        label_bottom = page.y
        page.y = top
        page.set_font("", 10)
        page.multi_cell(left + label_width, width - label_width, 5, value)
        page.y = max(label_bottom, page.y) + 1.5
        page.line(left, page.y - 0.75, left + width, 200 / 255)

    qr_size = 80
    modules, rows = _qr_rows(_recent_symbol(document.payload), QR_BORDER)
    page.image((pdfpage.A4[0] - qr_size) / 2, page.y + 2, qr_size, modules, rows)
    page.y += qr_size + 4
    issued = formatting.day(document.issued_at)  # the day in Vietnam
    expires = formatting.day(document.expires_at)
    page.set_font("", 9)
    page.multi_cell(
        left,
        width,
        5,
        f"Ngày cấp / Issued: {issued}    Mã QR có giá trị đến / QR valid until: {expires}",
        center=True,
    )
    page.set_font("", 7.5)
    page.multi_cell(left, width, 3.8, FOOTER, center=True)
    return page


def _info(document: PassportDocument) -> dict[str, str]:
    return {
        "Title": "Hộ chiếu vắc xin COVID-19 / COVID-19 vaccine passport",
        "Author": str(document.dcc["v"][0]["is"]),
        "Creator": "Kyso",
    }


def passport_pdf(document: PassportDocument, font_dir: str | None = None) -> bytes:
    """The unsigned PDF passport (A4, one page)."""
    buffer = io.BytesIO()
    passport_page(document, font_dir).writer(_info(document)).write(buffer)
    return buffer.getvalue()


def signed_passport_pdf(
    document: PassportDocument,
    signing: PdfSigning,
    *,
    reason: str | None = None,
    font_dir: str | None = None,
) -> bytes:
    """The PDF passport, PAdES-signed in the writer that built it (no second parse)."""
    return _sign_as_policy_allows(
        lambda: passport_page(document, font_dir).writer(_info(document)), signing, reason
    )


@dataclass(frozen=True)
class PdfSigning:
    """How the PDF passports are signed (``config.pdf_signing`` builds it from the settings).

    ``signer``: the document-signing key (``HsmConfig.for_documents``), never the DCC signer;
    ``chain``: its certificate's issuers up to the root; ``crls``: the CRLs that show it is not
    revoked. The certificates and CRLs go into the PDF's Document Security Store, in the
    revision the signature covers, so a reader validates the signature offline, also after
    the certificate has expired. ``timestamper``: pyHanko's time-stamp client for the TSA
    (``KYSO_PASSPORT_TSA_URL``); with it the PDF is PAdES B-LTA: the signature is
    time-stamped, the validation data of the signer and of the TSA (``tsa_roots``: the TSA's
    trust roots, ``KYSO_PASSPORT_TSA_ROOTS``) are added after it, and a document time-stamp
    closes the file. ``fetch``: the revocation data not given in ``crls`` (the TSA's, say) is
    fetched from the certificates' CRL/OCSP addresses (``KYSO_PASSPORT_PDF_FETCH_REVOCATION``).
    ``tsa_policy`` (``KYSO_TSA_POLICY``): what a TSA failure does (``_sign_as_policy_allows``).
    """

    signer: HsmSigner
    chain: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    timestamper: Any = None
    tsa_roots: tuple[x509.Certificate, ...] = ()
    fetch: bool = False
    tsa_policy: str = "hard"  # when the TSA fails: "hard" (no PDF) or "soft" (B-B PDF)

    def validation_context(self) -> Any:
        """What pyHanko validates the signer and the TSA with, to embed their validation data."""
        from asn1crypto import crl as asn1_crl
        from pyhanko_certvalidator import ValidationContext

        roots = [c for c in self.chain if c.issuer == c.subject] + list(self.tsa_roots)
        return ValidationContext(
            trust_roots=[_asn1_certificate(c) for c in roots],
            other_certs=[_asn1_certificate(c) for c in self.chain if c.issuer != c.subject],
            crls=[
                asn1_crl.CertificateList.load(c.public_bytes(serialization.Encoding.DER))
                for c in self.crls
            ],
            allow_fetching=self.fetch,
            # requests-based fetchers: the default aiohttp ones leave a client session
            # unclosed for every PDF (one per validation context).
            fetcher_backend=_requests_fetchers() if self.fetch else None,
        )


@functools.cache
def _requests_fetchers() -> Any:
    from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

    return RequestsFetcherBackend()


def _asn1_certificate(certificate: x509.Certificate) -> Any:
    from asn1crypto import x509 as asn1_x509

    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


# Room for the CMS signature (bytes; twice as many hex digits in the PDF): given, pyHanko
# skips the trial signature it otherwise makes to measure it. A time-stamp token adds its
# TSA's certificates.
SIGNATURE_ROOM: Final = 8192
TIMESTAMP_ROOM: Final = 8192


_LOOPS = threading.local()


def _event_loop() -> asyncio.Runner:
    """This thread's event loop for pyHanko's signer, kept: a new loop (and its executor
    thread) for every signature cost more than a tenth of the signing."""
    runner = getattr(_LOOPS, "runner", None)
    if runner is None:
        runner = _LOOPS.runner = asyncio.Runner()
    assert isinstance(runner, asyncio.Runner)
    return runner


def sign_pdf(pdf: bytes, signing: PdfSigning, *, reason: str | None = None) -> bytes:
    """PAdES signature of ``pdf`` (an incremental update) by the document-signing key."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    return _sign_as_policy_allows(
        lambda: IncrementalPdfFileWriter(io.BytesIO(pdf)), signing, reason
    )


def _sign_as_policy_allows(
    writer: Callable[[], Any], signing: PdfSigning, reason: str | None
) -> bytes:
    """Signs the PDF ``writer()`` builds. When the TSA fails (unreachable, an error answer),
    ``tsa_policy`` decides, and neither is silent (a warning or an error in the log, and
    ``kyso_pdf_timestamps_total{outcome}``): ``hard`` refuses the PDF with a text that asks
    to try again shortly (``passport.error_pdf_timestamp``); ``soft`` signs it without
    time-stamps (PAdES B-B, the signer's validation data still embedded: valid offline until
    the certificate expires). PDFs are made on every download, never stored: the next
    download, once the TSA answers, is PAdES B-LTA again."""
    from pyhanko.sign.timestamps import TimestampRequestError

    if signing.timestamper is None:
        return _sign(writer(), signing, reason)
    try:
        signed = _sign(writer(), signing, reason)
    except TimestampRequestError as exc:
        if signing.tsa_policy == "soft":
            logger.warning(
                "PDF passport signed without time-stamps (PAdES B-B): the TSA failed: %s", exc
            )
            PDF_TIMESTAMPS.labels(outcome="signed_without").inc()
            return _sign(writer(), dataclasses.replace(signing, timestamper=None), reason)
        logger.error("PDF passport refused: the TSA failed and KYSO_TSA_POLICY is hard: %s", exc)
        PDF_TIMESTAMPS.labels(outcome="refused").inc()
        raise DomainError("passport.error_pdf_timestamp", detail=str(exc)) from exc
    PDF_TIMESTAMPS.labels(outcome="stamped").inc()
    return signed


def _sign(writer: Any, signing: PdfSigning, reason: str | None) -> bytes:
    """PAdES signature by the document-signing key (pyHanko's PKCS#11 signer), with the
    validation data in the signed revision."""
    from asn1crypto import crl as asn1_crl
    from pyhanko.sign import fields, signers
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    if signing.signer.config.purpose != "document":
        raise ValueError("the PDF passport is signed by the document-signing key, not the DCC one")
    DocumentSecurityStore.supply_dss_in_writer(
        writer,
        None,
        certs=[_asn1_certificate(c) for c in (signing.signer.certificate, *signing.chain)],
        crls=[
            asn1_crl.CertificateList.load(c.public_bytes(serialization.Encoding.DER))
            for c in signing.crls
        ],
    )
    lta = signing.timestamper is not None
    metadata = signers.PdfSignatureMetadata(
        field_name="KysoPassportSignature",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason or "Hộ chiếu vắc xin / Vaccine passport",
        location="Việt Nam",
        md_algorithm="sha256",
        embed_validation_info=lta,
        use_pades_lta=lta,
        validation_context=signing.validation_context() if lta else None,
    )
    signer = signing.signer
    pdf_signer = signers.PdfSigner(
        metadata, signer=signer.pdf_signer(signing.chain), timestamper=signing.timestamper
    )
    with signer.lock:  # pyHanko calls the module from a thread of its own
        output = _event_loop().run(
            pdf_signer.async_sign_pdf(
                writer,
                bytes_reserved=SIGNATURE_ROOM + (TIMESTAMP_ROOM if signing.timestamper else 0),
            )
        )
    return bytes(output.getvalue())
