"""The passport pages through HTTP: issuer page (central issuers only), lookup, verify."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy.orm import Session
from support.cms_pki import Officer, Pki
from support.passport_data import sign_people
from support.passport_fixtures import *  # noqa: F403
from support.passport_hsm import PIN, PassportKeys
from support.platform_client import csrf_token, login
from support.platform_seed import Seed, add_person
from werkzeug.test import TestResponse

from kyso.platform.passport import render


@pytest.fixture
def configured(
    app: Flask,
    passport_keys: PassportKeys,
    facility_pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Flask:
    environment = passport_keys.environment("ES256")
    app.config.update(
        PASSPORT_PKCS11_MODULE=environment["KYSO_PASSPORT_PKCS11_MODULE"],
        PASSPORT_TOKEN_LABEL=environment["KYSO_PASSPORT_TOKEN_LABEL"],
        PASSPORT_KEY_LABEL=environment["KYSO_PASSPORT_KEY_LABEL"],
        PASSPORT_PDF_KEY_LABEL=environment["KYSO_PASSPORT_PDF_KEY_LABEL"],
        **passport_keys.write_document_files(tmp_path / "pdf"),
        TRUST_ANCHORS=str(
            facility_pki.write_anchors(tmp_path / "anchors.pem", with_intermediate=True)
        ),
    )
    app.config["PASSPORT_PIN"] = PIN  # KYSO_PASSPORT_PIN, read when the app was made
    return app


def _signed_person(
    session: Session, org: Seed, pki: Pki, officer: Officer, name: str = "Hồ Thị Kỳ Duyên"
) -> int:
    person = add_person(session, org, name, identity_number="079190000777", phone="0987654321")
    session.commit()
    sign_people(session, org, pki, officer, [person.id])
    return person.id


def test_only_central_issuers_open_the_issuer_page(
    configured: Flask, client: FlaskClient, org: Seed
) -> None:
    assert client.get("/passports/issuer").status_code == 302  # to the login page
    login(client, "kyduyet.bennghe")
    assert client.get("/passports/issuer").status_code == 403


def test_the_issuer_runs_the_queue_from_the_page(
    configured: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
) -> None:
    _signed_person(session, org, facility_pki, facility_officer)
    login(client, "cucduphong")
    page = client.get("/passports/issuer").get_data(as_text=True)
    assert 'id="count-pending">2<' in page
    token = csrf_token(client, "/passports/issuer")
    done = client.post("/passports/issuer/run", data={"csrf_token": token}, follow_redirects=True)
    text = done.get_data(as_text=True)
    assert "đã cấp 1 hộ chiếu" in text
    assert 'id="count-passports">1<' in text
    assert 'id="count-pending">0<' in text
    assert "web:cucduphong" in text  # the run in the history


def _look_up(
    client: FlaskClient, token: str, phone_last4: str, *, follow_redirects: bool = False
) -> TestResponse:
    """The lookup form posted for the test's citizen (Hồ Thị Kỳ Duyên, 079190000777)."""
    return client.post(
        "/passports/lookup",
        data={
            "csrf_token": token,
            "identity_number": "079190000777",
            "birth_date": "17/05/1990",
            "phone_last4": phone_last4,
        },
        follow_redirects=follow_redirects,
    )


def test_a_citizen_downloads_qr_and_signed_pdf(
    configured: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issue: object,
) -> None:
    _signed_person(session, org, facility_pki, facility_officer)
    issue()  # type: ignore[operator]
    token = csrf_token(client, "/passports/lookup")
    wrong = _look_up(client, token, "0000")
    assert "Không tìm thấy hộ chiếu" in wrong.get_data(as_text=True)
    assert client.get("/passports/lookup/passport.pdf").status_code == 302  # nothing looked up
    found = _look_up(client, token, "4321", follow_redirects=True)
    page = found.get_data(as_text=True)
    assert "Hộ chiếu vắc xin của Hồ Thị Kỳ Duyên" in page
    assert "Comirnaty" in page
    assert "URN:UVCI:01:VN:" in page
    # The page shows the download's PNG (one QR encoding per visit), not a second inline copy.
    assert '<img src="/passports/lookup/qr.png"' in page
    assert "data:image" not in page
    qr = client.get("/passports/lookup/qr.png")
    assert qr.status_code == 200
    assert qr.mimetype == "image/png"
    pdf = client.get("/passports/lookup/passport.pdf")
    assert pdf.status_code == 200
    assert pdf.data.startswith(b"%PDF")
    assert b"/ETSI.CAdES.detached" in pdf.data
    # Signed by the document-signing key, not by the DCC signer.
    (signature,) = PdfFileReader(io.BytesIO(pdf.data)).embedded_signatures
    assert signature.signer_cert.subject.native["common_name"] == "Kyso Test PDF Signer"

    # The verify page accepts the downloaded QR picture and shows the content.
    token = csrf_token(client, "/passports/verify")
    checked = client.post(
        "/passports/verify",
        data={"csrf_token": token, "image": (io.BytesIO(qr.data), "qr.png")},
        content_type="multipart/form-data",
    )
    text = checked.get_data(as_text=True)
    assert "HỢP LỆ: chứng nhận được ký" in text
    assert "Hồ Thị Kỳ Duyên" in text
    assert "HO&lt;THI" not in text  # names shown as written, with their ICAO form in brackets


def test_the_result_page_reads_the_passport_and_its_person_in_one_query(
    configured: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issue: object,
) -> None:
    """Every citizen's visit opens it (issue 16's load: 100 lookups a second on 2 cores)."""
    from sqlalchemy import event

    _signed_person(session, org, facility_pki, facility_officer)
    issue()  # type: ignore[operator]
    token = csrf_token(client, "/passports/lookup")
    found = _look_up(client, token, "4321")
    assert found.status_code == 302
    engine = configured.extensions["kyso.engine"]
    statements: list[str] = []

    def record(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            statements.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        page = client.get("/passports/lookup/result").get_data(as_text=True)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert "Hộ chiếu vắc xin của Hồ Thị Kỳ Duyên" in page
    assert len(statements) == 1, statements


def test_the_lookup_finds_the_person_and_the_passport_in_one_query(
    configured: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issue: object,
) -> None:
    from sqlalchemy import event

    _signed_person(session, org, facility_pki, facility_officer)
    issue()  # type: ignore[operator]
    token = csrf_token(client, "/passports/lookup")
    engine = configured.extensions["kyso.engine"]
    statements: list[str] = []

    def record(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        if re.search(r"\bFROM (people|passports)\b", sql):
            statements.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        found = _look_up(client, token, "4321")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert found.status_code == 302
    assert found.headers["Location"].endswith("/passports/lookup/result")
    assert len(statements) == 1, statements


def test_the_verify_page_says_what_failed(
    configured: Flask, client: FlaskClient, session: Session, org: Seed
) -> None:
    token = csrf_token(client, "/passports/verify")
    empty = client.post("/passports/verify", data={"csrf_token": token})
    assert empty.status_code == 400
    assert "Chưa có gì để kiểm tra" in empty.get_data(as_text=True)
    page = client.post("/passports/verify", data={"csrf_token": token, "text": "HC2:ABC"})
    text = page.get_data(as_text=True)
    assert "KHÔNG HỢP LỆ" in text
    assert re.search(r"bước không đạt: Nội dung bắt đầu bằng HC1:", text)
    picture = client.post(
        "/passports/verify",
        data={"csrf_token": token, "image": (io.BytesIO(render.qr_png("HC1:NOT*BASE45")), "a.png")},
        content_type="multipart/form-data",
    )
    assert "Mã hóa base45 hợp lệ" in picture.get_data(as_text=True)
    assert "KHÔNG HỢP LỆ" in picture.get_data(as_text=True)


def test_when_the_tsa_is_away_the_citizen_is_told_to_download_the_pdf_later(
    configured: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issue: object,
) -> None:
    # The platform's TSA (KYSO_TSA_URL) time-stamps the PDFs too; KYSO_TSA_POLICY is hard.
    configured.config.update(TSA_URL="http://127.0.0.1:9/tsa", TSA_TIMEOUT=2.0)
    _signed_person(session, org, facility_pki, facility_officer)
    issue()  # type: ignore[operator]
    token = csrf_token(client, "/passports/lookup")
    _look_up(client, token, "4321")
    pdf = client.get("/passports/lookup/passport.pdf", follow_redirects=True)
    assert pdf.mimetype == "text/html"
    page = pdf.get_data(as_text=True)
    assert "máy chủ cấp dấu thời gian (TSA) không trả lời" in page
    assert "Hộ chiếu vắc xin của Hồ Thị Kỳ Duyên" in page  # back on the result, QR still there
