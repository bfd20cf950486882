"""Certificate registration ("Đăng ký chứng thư số"): serial normalisation, history, one active
certificate per officer (also refused by the database itself), one officer per serial."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import column, func, select, table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from support.platform_seed import ProvinceSeed, Seed, add_province

from kyso.platform.errors import DomainError
from kyso.platform.models import AuditEvent, SigningCertificate, User
from kyso.platform.users import service
from kyso.platform.users.service import (
    active_certificate,
    certificate_history,
    deactivate_certificate,
    register_certificate,
)

# --- serial numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("54 01 0a 3f", "54010A3F"),
        ("54:01:0A:3F", "54010A3F"),
        ("54010a3f", "54010A3F"),
        ("  54 01\t0a\n3f  ", "54010A3F"),
        ("00:9f:12", "9F12"),  # OpenSSL prints the DER sign octet; the number is the same
        ("000000AB", "AB"),
        ("0abc", "ABC"),  # leading zeros stripped even to an odd length
        ("0x1001", "1001"),
        ("\u200e54 01 0a", "54010A"),  # Windows' certificate dialog copies a hidden LRM
        ("54\u00a001\u200b0a", "54010A"),  # non-breaking and zero-width spaces
        ("7f" + "ff" * 19, "7F" + "FF" * 19),  # the largest 20-octet DER INTEGER
        ("00 7f" + " ff" * 19, "7F" + "FF" * 19),
        ("01", "1"),
    ],
)
def test_serials_are_normalised_as_x509_compares_them(text: str, expected: str) -> None:
    assert service.normalise_serial(text) == expected


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("", "users.serial_required"),
        ("  : :  ", "users.serial_required"),
        ("0x", "users.serial_required"),
        ("54-01-0A", "users.serial_not_hex"),
        ("54 01 0G", "users.serial_not_hex"),
        ("-1A", "users.serial_not_hex"),
        ("Số sê-ri", "users.serial_not_hex"),
        ("0", "users.serial_not_positive"),
        ("00 00 00", "users.serial_not_positive"),
        ("80" + "00" * 19, "users.serial_too_long"),  # 2**159 needs a 21st (sign) octet
        ("01" + "00" * 20, "users.serial_too_long"),
        ("1" * 201, "users.serial_too_long"),
    ],
)
def test_bad_serials_are_refused(text: str, key: str) -> None:
    with pytest.raises(DomainError) as caught:
        service.normalise_serial(text)
    assert caught.value.key == key
    assert caught.value.text("vi")
    assert caught.value.text("en")


def test_serials_are_shown_in_pairs() -> None:
    assert service.format_serial("54010A3F") == "54 01 0A 3F"
    assert service.format_serial("ABC") == "0A BC"
    assert service.format_serial("1") == "01"


_EC_KEY = ec.generate_private_key(ec.SECP256R1())


@settings(max_examples=60, deadline=None)
@given(
    serial=st.integers(min_value=1, max_value=2**159 - 1),
    separator=st.sampled_from([" ", ":", ""]),
    upper=st.booleans(),
)
def test_what_windows_and_openssl_print_matches_the_certificate(
    serial: int, separator: str, upper: bool
) -> None:
    """Windows shows the DER content octets (sign octet included), OpenSSL the same with
    colons: both must normalise to the integer the certificate carries."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kyso test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_EC_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(_EC_KEY, hashes.SHA256())
    )
    content = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # DER INTEGER content
    printed = separator.join(f"{octet:02x}" for octet in content)
    printed = printed.upper() if upper else printed
    assert service.normalise_serial(printed) == format(certificate.serial_number, "X")


_sqlite_master = table("sqlite_master", column("name"), column("sql"))
_pg_indexes = table("pg_indexes", column("indexname"), column("indexdef"))


# --- registration -----------------------------------------------------------------------------


@pytest.fixture
def hanoi(session: Session, org: Seed) -> ProvinceSeed:
    data = add_province(session)
    session.commit()
    return data


def audit_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def count_rows(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SigningCertificate)) or 0)


def test_first_registration(session: Session, org: Seed) -> None:
    certificate = register_certificate(
        session, org.admin, org.officer, "54:01:0a:3f", ip="10.1.1.1"
    )
    session.commit()
    assert certificate.serial_hex == "54010A3F"
    assert certificate.active
    assert certificate.user_id == org.officer.id
    assert certificate.registered_by_id == org.admin.id
    assert certificate.registered_at is not None
    # Registered by serial alone: subject, DER and fingerprint are filled in only when the
    # certificate is read from the token through the agent ("Đọc chứng thư số từ USB token").
    assert (certificate.subject, certificate.der, certificate.fingerprint_sha256) == (
        None,
        None,
        None,
    )
    assert active_certificate(session, org.officer) is certificate
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "certificate.register"))
    (registered,) = event.all()
    assert registered.target == "kyduyet.bennghe"
    assert registered.user_id == org.admin.id
    assert registered.ip == "10.1.1.1"
    assert registered.detail == {"serial": "54010A3F", "replaced": None}


def test_new_serial_replaces_the_active_one(session: Session, org: Seed) -> None:
    first = register_certificate(session, org.admin, org.officer, "AA BB")
    session.commit()
    second = register_certificate(session, org.admin, org.officer, "CC DD")
    session.commit()
    assert first.id != second.id
    assert not first.active
    assert first.deactivated_reason == "replaced"
    assert first.deactivated_at is not None
    assert second.active
    assert active_certificate(session, org.officer) is second
    assert [c.serial_hex for c in certificate_history(session, org.officer)] == ["CCDD", "AABB"]
    active_rows = session.scalar(
        select(func.count())
        .select_from(SigningCertificate)
        .where(
            SigningCertificate.user_id == org.officer.id,
            SigningCertificate.deactivated_at.is_(None),
        )
    )
    assert active_rows == 1
    last = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "certificate.register")
    ).all()[-1]
    assert last.detail == {"serial": "CCDD", "replaced": "AABB"}


def test_registering_the_active_serial_again_changes_nothing(session: Session, org: Seed) -> None:
    first = register_certificate(session, org.admin, org.officer, "54 01 0A 3F")
    session.commit()
    actions = audit_actions(session)
    again = register_certificate(session, org.admin, org.officer, "0x00054010a3f")
    session.commit()
    assert again.id == first.id
    assert again.active
    assert count_rows(session) == 1
    assert audit_actions(session) == actions


def test_a_deactivated_serial_may_be_registered_again(session: Session, org: Seed) -> None:
    first = register_certificate(session, org.admin, org.officer, "AA")
    deactivate_certificate(session, org.admin, first, "token_lost")
    session.commit()
    again = register_certificate(session, org.admin, org.officer, "AA")
    session.commit()
    assert again.id != first.id
    assert again.active
    assert not first.active
    assert count_rows(session) == 2


def test_one_serial_is_active_for_one_officer_only(session: Session, org: Seed) -> None:
    register_certificate(session, org.admin, org.officer, "12:34:56")
    session.commit()
    with pytest.raises(DomainError) as caught:
        register_certificate(session, org.admin, org.district_officer, "123456")
    assert caught.value.key == "users.serial_in_use"
    for language in ("vi", "en"):
        text = caught.value.text(language)
        for secret in ("Lê Thị Hồng", "kyduyet.bennghe", "123456", "12 34 56"):
            assert secret not in text
    session.commit()  # what the views do: keep the record of the refused attempt
    refused = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "certificate.register_refused")
    ).all()
    assert len(refused) == 1
    assert refused[0].target == "kyduyet.quan1"
    assert active_certificate(session, org.district_officer) is None
    assert count_rows(session) == 1
    # Once the first officer's registration is switched off, the token may change hands.
    current = active_certificate(session, org.officer)
    assert current is not None
    deactivate_certificate(session, org.admin, current, "left_unit")
    registered = register_certificate(session, org.admin, org.district_officer, "12 34 56")
    session.commit()
    assert registered.active
    assert registered.user_id == org.district_officer.id


def test_a_refused_serial_keeps_the_officers_current_certificate(
    session: Session, org: Seed
) -> None:
    register_certificate(session, org.admin, org.officer, "AA")
    mine = register_certificate(session, org.admin, org.district_officer, "BB")
    session.commit()
    with pytest.raises(DomainError):
        register_certificate(session, org.admin, org.district_officer, "AA")
    session.commit()
    assert active_certificate(session, org.district_officer) is mine
    assert mine.active


@pytest.mark.parametrize(
    ("actor", "target", "key"),
    [
        ("admin", "staff", "users.certificate_officers_only"),
        ("admin", "issuer", "users.certificate_officers_only"),
        ("officer", "officer", "users.certificate_not_allowed"),  # not even their own
        ("officer", "district_officer", "users.certificate_not_allowed"),
        ("staff", "officer", "users.certificate_not_allowed"),
        ("issuer", "officer", "users.certificate_not_allowed"),
        ("hanoi_admin", "officer", "users.certificate_not_allowed"),
    ],
)
def test_who_may_register(
    session: Session, org: Seed, hanoi: ProvinceSeed, actor: str, target: str, key: str
) -> None:
    people = {"hanoi_admin": hanoi.admin}
    who: User = people.get(actor) or getattr(org, actor)
    with pytest.raises(DomainError) as caught:
        register_certificate(session, who, getattr(org, target), "AA BB CC")
    assert caught.value.key == key
    assert count_rows(session) == 0


def test_provincial_administrator_registers_for_their_officers(
    session: Session, org: Seed, hanoi: ProvinceSeed
) -> None:
    certificate = register_certificate(session, hanoi.admin, hanoi.officer, "0A:0B:0C")
    assert certificate.registered_by_id == hanoi.admin.id


def test_no_registration_for_a_deactivated_account(session: Session, org: Seed) -> None:
    org.officer.active = False
    with pytest.raises(DomainError) as caught:
        register_certificate(session, org.admin, org.officer, "AA")
    assert caught.value.key == "users.certificate_inactive_user"


def test_invalid_serial_registers_nothing(session: Session, org: Seed) -> None:
    with pytest.raises(DomainError) as caught:
        register_certificate(session, org.admin, org.officer, "not a serial")
    assert caught.value.key == "users.serial_not_hex"
    assert count_rows(session) == 0


# --- deactivation -----------------------------------------------------------------------------


def test_administrator_deactivates_with_a_reason(session: Session, org: Seed) -> None:
    certificate = register_certificate(session, org.admin, org.officer, "AA")
    deactivate_certificate(
        session, org.admin, certificate, "  token   lost in the flood ", ip="::1"
    )
    session.commit()
    assert not certificate.active
    assert certificate.deactivated_reason == "token lost in the flood"
    assert active_certificate(session, org.officer) is None
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "certificate.deactivate")
    ).one()
    assert event.detail == {"serial": "AA", "reason": "token lost in the flood"}
    assert event.ip == "::1"
    with pytest.raises(DomainError) as caught:
        deactivate_certificate(session, org.admin, certificate, "again")
    assert caught.value.key == "users.certificate_already_inactive"


def test_officer_may_switch_off_their_own_certificate(session: Session, org: Seed) -> None:
    certificate = register_certificate(session, org.admin, org.officer, "AA")
    deactivate_certificate(session, org.officer, certificate, "token_lost")
    assert not certificate.active


@pytest.mark.parametrize("actor", ["district_officer", "staff", "issuer", "hanoi_admin"])
def test_others_may_not_deactivate(
    session: Session, org: Seed, hanoi: ProvinceSeed, actor: str
) -> None:
    certificate = register_certificate(session, org.admin, org.officer, "AA")
    who: User = hanoi.admin if actor == "hanoi_admin" else getattr(org, actor)
    with pytest.raises(DomainError) as caught:
        deactivate_certificate(session, who, certificate, "token_lost")
    assert caught.value.key == "users.certificate_not_allowed"
    assert certificate.active


@pytest.mark.parametrize(
    ("reason", "key"), [("   ", "users.reason_required"), ("x" * 201, "users.reason_too_long")]
)
def test_deactivation_needs_a_reason(session: Session, org: Seed, reason: str, key: str) -> None:
    certificate = register_certificate(session, org.admin, org.officer, "AA")
    with pytest.raises(DomainError) as caught:
        deactivate_certificate(session, org.admin, certificate, reason)
    assert caught.value.key == key
    assert certificate.active


def test_find_certificate_checks_the_owner(session: Session, org: Seed) -> None:
    certificate = register_certificate(session, org.admin, org.officer, "AA")
    assert service.find_certificate(session, org.officer, certificate.id) is certificate
    with pytest.raises(DomainError):
        service.find_certificate(session, org.district_officer, certificate.id)
    with pytest.raises(DomainError):
        service.find_certificate(session, org.officer, certificate.id + 1000)


# --- the database itself ----------------------------------------------------------------------


def test_the_database_refuses_a_second_active_certificate(session: Session, org: Seed) -> None:
    """The partial unique index, not the service, is the last word (SQLite and PostgreSQL)."""
    session.add(
        SigningCertificate(user_id=org.officer.id, serial_hex="AA", registered_by_id=org.admin.id)
    )
    session.commit()
    session.add(
        SigningCertificate(user_id=org.officer.id, serial_hex="BB", registered_by_id=org.admin.id)
    )
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
    # Deactivated rows do not count: history may hold any number of them.
    now = datetime.now(UTC)
    for serial in ("CC", "DD"):
        session.add(
            SigningCertificate(
                user_id=org.officer.id,
                serial_hex=serial,
                registered_by_id=org.admin.id,
                deactivated_at=now,
                deactivated_reason="replaced",
            )
        )
    # And another officer's active certificate is independent.
    session.add(
        SigningCertificate(
            user_id=org.district_officer.id, serial_hex="EE", registered_by_id=org.admin.id
        )
    )
    session.commit()
    assert count_rows(session) == 4


def test_the_index_is_partial_in_the_schema(session: Session, org: Seed) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        sql = session.execute(
            select(func.lower(func.coalesce(func.max(_sqlite_master.c.sql), ""))).where(
                _sqlite_master.c.name == "uq_signing_certificates_active_user"
            )
        ).scalar_one()
    else:
        sql = session.execute(
            select(func.lower(_pg_indexes.c.indexdef)).where(
                _pg_indexes.c.indexname == "uq_signing_certificates_active_user"
            )
        ).scalar_one()
    assert "unique" in sql
    assert "where" in sql
    assert "deactivated_at is null" in sql
