"""Issue 17: one language, one time, one format (pages, on SQLite and PostgreSQL).

Times in Vietnam time on every page, dates typed as dd/mm/yyyy text whatever the browser's
locale (a day that does not exist is refused with a message, never emptied), and names in
Vietnamese alphabetical order (Dương before Đặng and Đoàn). The browser side is in
test_formatting_browser.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from support.platform_client import login
from support.platform_seed import PASSWORD, Seed

from kyso.platform.models import AuditEvent, BatchMode, BatchStatus, Role, SigningBatch, User


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


def test_signed_batches_are_listed_in_vietnam_time(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    """A batch made at 20:30 UTC on 8 April was made at 03:30 on 9 April in Vietnam.

    Before: the list showed "08/04/2021 20:30" (UTC) while the audit log showed UTC+7.
    """
    certificate = _certificate(session, org)
    session.add(
        SigningBatch(
            id="KB210408TESTUTC",
            signing_unit_id=org.unit_ben_nghe.id,
            officer_id=org.officer.id,
            certificate_id=certificate,
            certificate_fingerprint="00" * 32,
            mode=BatchMode.BATCH,
            algorithm="ES256",
            origin="https://tiemchung.example.vn",
            signing_time=datetime(2021, 4, 8, 20, 30, tzinfo=UTC),
            status=BatchStatus.COMPLETED,
            total=1860,
            people=1860,
            signed=1860,
            rejected=0,
            created_at=datetime(2021, 4, 8, 20, 30, tzinfo=UTC),
        )
    )
    session.commit()
    login(client, "kyduyet.bennghe")
    page = text(client.get("/signing/batches"))
    row = re.search(r"KB210408TESTUTC</a></td>\s*<td>([^<]+)</td>", page)
    assert row, page
    assert row.group(1) == "09/04/2021 03:30"
    assert "1.860" in page
    # The batch's certificate serial in the one format of every page: pairs, upper case.
    result = text(client.get("/signing/batches/KB210408TESTUTC"))
    # (its DER here is no certificate: the serial alone, and no error page)
    assert '<dd id="batch-certificate">0A 1B</dd>' in result


def _certificate(session: Session, org: Seed) -> int:
    from kyso.platform.models import SigningCertificate

    found = SigningCertificate(
        user_id=org.officer.id,
        subject="CN=Lê Thị Hồng",
        issuer="CN=Test CA",
        serial_hex="A1B",
        fingerprint_sha256="11" * 32,
        not_before=datetime(2021, 1, 1, tzinfo=UTC),
        not_after=datetime(2031, 1, 1, tzinfo=UTC),
        der=b"\x30\x00",
        registered_by_id=org.admin.id,
    )
    session.add(found)
    session.flush()
    return found.id


def test_audit_dates_are_typed_day_month_year(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    """dd/mm/yyyy filters the log; 31/02/2021 and year 20211 are refused with a message.

    Before: "02/01/2024" was refused (only the date picker's ISO value was read).
    """
    session.add_all(
        [
            AuditEvent(at=datetime(2024, 1, 1, 10, 0, tzinfo=UTC), action="auth.login_failed"),
            AuditEvent(at=datetime(2024, 1, 2, 10, 0, tzinfo=UTC), action="user.create"),
        ]
    )
    session.commit()
    login(client, "admin")
    page = client.get("/users/audit?since=02/01/2024&until=02/01/2024&action=user.create")
    assert page.status_code == 200
    body = text(page)
    assert 'value="02/01/2024"' in body
    assert "02/01/2024 17:00:00" in body  # 10:00 UTC is 17:00 in Vietnam
    for wrong in ("31/02/2021", "08/04/20211"):
        refused = client.get(f"/users/audit?since={wrong}")
        assert refused.status_code == 400
        assert f"“{wrong}” không hợp lệ" in text(refused)
        assert "ngày/tháng/năm" in text(refused)


def test_users_are_listed_in_vietnamese_alphabetical_order(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    """D comes before Đ, tones second: Dương, Đặng, Đoàn (before: Đoàn came before Đặng)."""
    from kyso.platform.auth.service import hash_password

    password = hash_password(PASSWORD)
    for username, name in (
        ("doan", "Đoàn Văn Phản"),
        ("dang", "Đặng Thị Lan"),
        ("duong", "Dương Minh Tuấn"),
    ):
        session.add(
            User(
                username=username,
                full_name=name,
                password_hash=password,
                role=Role.FACILITY_STAFF,
                facility_id=org.station_ben_nghe.id,
            )
        )
    session.commit()
    login(client, "admin")
    page = text(client.get("/users/"))
    positions = [page.index(name) for name in ("Dương Minh Tuấn", "Đặng Thị Lan", "Đoàn Văn Phản")]
    assert positions == sorted(positions), positions


def test_the_audit_log_says_what_happened_in_words(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    """ "Ký xong lô" and "Đã ký lô 1.860 mũi, từ chối 0 mũi", not signing.batch_completed and
    "signed: 1860 rejected: 0" (before: the raw action name and detail were shown)."""
    session.add(
        AuditEvent(
            at=datetime(2024, 1, 2, 10, 0, tzinfo=UTC),
            user_id=org.officer.id,
            action="signing.batch_completed",
            target="KB240102AUDIT",
            detail={"signed": 1860, "rejected": 0},
        )
    )
    session.commit()
    login(client, "admin")
    page = text(client.get("/users/audit"))
    assert "Ký xong lô" in page
    assert "Đã ký lô 1.860 mũi, từ chối 0 mũi" in page
    assert "signing.batch_completed" not in page.split("<tbody>")[1]
    assert "signed:" not in page
    client.get("/lang/en")
    english = text(client.get("/users/audit"))
    assert "Signed a batch of 1,860 doses, 0 refused" in english


def test_sqlite_sorts_by_bytes_that_compare_as_the_sort_key() -> None:
    """db.vietnamese on SQLite orders by formatting.sort_bytes: the same order as sort_key."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kyso.platform.formatting import sort_bytes, sort_key

    letters = st.text(alphabet="aăâdđeêouươyAĐƯ áàảãạ9-" + "\u0301\u0300\u0323", max_size=12)

    @settings(max_examples=500, deadline=None)
    @given(letters, letters)
    def same_order(a: str, b: str) -> None:
        assert (sort_key(a) < sort_key(b)) == (sort_bytes(a) < sort_bytes(b)), (a, b)
        assert (sort_key(a) == sort_key(b)) == (sort_bytes(a) == sort_bytes(b)), (a, b)

    same_order()
    names = ["Đoàn Văn Phản", "Dư Văn Hùng", "Đặng Thị Hoa", "Duy Văn Bình", "Dương Văn Minh"]
    assert sorted(names, key=sort_bytes) == [
        "Duy Văn Bình",
        "Dư Văn Hùng",
        "Dương Văn Minh",
        "Đặng Thị Hoa",
        "Đoàn Văn Phản",
    ]


def _issued_certificate(key: object, serial: int, not_after: datetime) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from kyso.agent.devpki import vn_organisation_subject

    subject = vn_organisation_subject("Trạm Y tế Phường Bến Nghé")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(serial)
        .not_valid_before(datetime(2026, 1, 1, 3, tzinfo=UTC))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def test_a_certificate_reads_as_people_compare_it() -> None:
    """Organisation, tax code (MST from UID), key type, validity in Vietnam days, one serial
    format: two certificates with the same subject are told apart (issue 17)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from kyso.platform.formatting import certificate_facts, serial, serial_digits

    late = datetime(2027, 12, 4, 18, 30, tzinfo=UTC)  # already 5 December in Vietnam
    rsa_der = _issued_certificate(rsa.generate_private_key(65537, 2048), 0x0A1B2C, late)
    ec_der = _issued_certificate(ec.generate_private_key(ec.SECP256R1()), 0x0A1B2D, late)
    first, second = certificate_facts(rsa_der), certificate_facts(ec_der)
    assert first.organisation == "Trạm Y tế Phường Bến Nghé"
    assert first.tax_code == "0312345678"
    assert (first.key_type, second.key_type) == ("RSA-2048", "ECDSA P-256")
    assert first.valid == "01/01/2026–05/12/2027"
    assert first.serial == "0A 1B 2C"
    assert first.serial_hex == "A1B2C"
    assert first.label() != second.label()
    assert first.label() == (
        "Trạm Y tế Phường Bến Nghé · MST 0312345678 · RSA-2048 · 01/01/2026–05/12/2027 · 0A 1B 2C"
    )
    # typed with colons, spaces or none: one serial, one way of writing it
    assert {serial_digits(t) for t in ("0a:1b:2c", "0A 1B 2C", "a1b2c")} == {"A1B2C"}
    assert {serial(t) for t in ("0a:1b:2c", "0A 1B 2C", "a1b2c")} == {"0A 1B 2C"}
    # only the serial registered (no certificate read yet): the serial alone
    only = certificate_facts(None, "a1b2c")
    assert (only.serial, only.key_type, only.valid) == ("0A 1B 2C", "—", "—")
    assert certificate_facts(b"\x30\x00", "a1b2c") == only  # unreadable: the serial alone
