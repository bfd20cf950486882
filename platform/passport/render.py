"""What citizens download: the QR image and the PDF passport, signed by the central key.

- QR: the ``HC1:`` text in alphanumeric mode (its base45 alphabet is QR's alphanumeric set),
  error correction Q where the text fits a QR code at Q, else M (hcert spec 1.0.8, 4.1).
- PDF (A4): the 11 fields of Decision 5772/QĐ-BYT, each labelled in Vietnamese and English
  (name, date of birth, disease, vaccine type, vaccine product, manufacturer, dose number /
  series, date of vaccination, country, issuer, certificate identifier), the QR code, the
  issue and expiry dates. Text is set in DejaVu Sans, embedded (subset), which covers every
  Vietnamese letter. The PDF is then PAdES-signed (PAdES B-B: ETSI.CAdES.detached) with the
  central key through pyHanko's PKCS#11 signer (``hsm.HsmSigner.pdf_signer``), so any PDF
  reader shows who signed it and that it was not changed.

The font comes from ``KYSO_PASSPORT_FONT_DIR`` or the Debian package fonts-dejavu-core
(``/usr/share/fonts/truetype/dejavu``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import segno
from fpdf import FPDF

from kyso.platform.passport.hsm import HsmSigner
from kyso.platform.passport.valuesets import value_sets

__all__ = ["PassportDocument", "passport_pdf", "qr_png", "qr_symbol", "sign_pdf"]

FONT_DIRS: Final = ("/usr/share/fonts/truetype/dejavu",)
VIETNAM_TIME: Final = timezone(timedelta(hours=7), "ICT")


def qr_symbol(payload: str) -> Any:
    """The QR code of ``payload``: alphanumeric mode, ECC Q when it fits, else M."""
    for error in ("q", "m"):
        try:
            return segno.make_qr(payload, error=error, mode="alphanumeric", boost_error=False)
        except segno.DataOverflowError:
            continue
    raise ValueError(f"{len(payload)} characters do not fit a QR code at ECC M")


def qr_png(payload: str, *, scale: int = 4, border: int = 4) -> bytes:
    buffer = io.BytesIO()
    qr_symbol(payload).save(buffer, kind="png", scale=scale, border=border)
    return buffer.getvalue()


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
        str(dcc["dob"]),
        sets.display("diseases", vaccination["tg"]),
        sets.display("prophylaxis", vaccination["vp"]),
        sets.display("products", vaccination["mp"]),
        sets.display("manufacturers", vaccination["ma"]),
        f"{vaccination['dn']} / {vaccination['sd']}",
        str(vaccination["dt"]),
        "Việt Nam / Viet Nam" if country == "VN" else sets.display("countries", country),
        str(vaccination["is"]),
        str(vaccination["ci"]),
    ]


def passport_pdf(document: PassportDocument, font_dir: str | None = None) -> bytes:
    """The unsigned PDF passport (A4, one page)."""
    fonts = _font_dir(font_dir)
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_title("Hộ chiếu vắc xin COVID-19 / COVID-19 vaccine passport")
    pdf.set_author(str(document.dcc["v"][0]["is"]))
    pdf.set_creator("Kyso")
    pdf.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=False)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    pdf.set_font("DejaVu", "B", 11)
    pdf.cell(
        width, 6, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", align="C", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font("DejaVu", "", 9)
    pdf.cell(width, 5, "Độc lập - Tự do - Hạnh phúc", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(width, 8, "HỘ CHIẾU VẮC XIN COVID-19", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 11)
    pdf.cell(width, 6, "COVID-19 VACCINE PASSPORT", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    label_width = 70
    for (vietnamese, english), value in zip(FIELDS, field_values(document.dcc), strict=True):
        top = pdf.get_y()
        pdf.set_font("DejaVu", "B", 9)
        pdf.multi_cell(label_width, 4.5, vietnamese, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 8)
        pdf.multi_cell(label_width, 4, english, new_x="LMARGIN", new_y="NEXT")
        label_bottom = pdf.get_y()
        pdf.set_xy(pdf.l_margin + label_width, top)
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(width - label_width, 5, value, new_x="LMARGIN", new_y="NEXT")
        pdf.set_y(max(label_bottom, pdf.get_y()) + 1.5)
        pdf.set_draw_color(200, 200, 200)
        pdf.line(pdf.l_margin, pdf.get_y() - 0.75, pdf.l_margin + width, pdf.get_y() - 0.75)

    qr_size = 80
    pdf.image(
        io.BytesIO(qr_png(document.payload, scale=8, border=2)),
        x=(pdf.w - qr_size) / 2,
        y=pdf.get_y() + 2,
        w=qr_size,
        h=qr_size,
    )
    pdf.set_y(pdf.get_y() + qr_size + 4)
    issued = document.issued_at.astimezone(VIETNAM_TIME)
    expires = document.expires_at.astimezone(VIETNAM_TIME)
    pdf.set_font("DejaVu", "", 9)
    pdf.cell(
        width,
        5,
        f"Ngày cấp / Issued: {issued:%d/%m/%Y}    Mã QR có giá trị đến / QR valid until: "
        f"{expires:%d/%m/%Y}",
        align="C",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.set_font("DejaVu", "", 7.5)
    pdf.multi_cell(
        width,
        3.8,
        "Tài liệu này được ký số bởi Cục Y tế dự phòng, Bộ Y tế. Mã QR là Chứng nhận COVID số "
        "của EU (EU DCC), kiểm tra được bằng mọi ứng dụng xác minh. / This document is digitally "
        "signed by the Department of Preventive Medicine, Ministry of Health. The QR code is an "
        "EU Digital COVID Certificate that any verifier app can check.",
        align="C",
    )
    return bytes(pdf.output())


def sign_pdf(pdf: bytes, central: HsmSigner, *, reason: str | None = None) -> bytes:
    """PAdES B-B signature of ``pdf`` by the central key (pyHanko's PKCS#11 signer)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    metadata = signers.PdfSignatureMetadata(
        field_name="KysoPassportSignature",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason or "Hộ chiếu vắc xin / Vaccine passport",
        location="Việt Nam",
        md_algorithm="sha256",
    )
    with central.lock:  # pyHanko calls the module from a thread of its own
        output = signers.sign_pdf(writer, metadata, signer=central.pdf_signer())
    return bytes(output.getvalue())
