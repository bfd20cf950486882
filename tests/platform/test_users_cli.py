"""``kyso-platform create-user`` and ``kyso-platform register-certificate`` for IT."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_seed import Seed

from kyso.platform.auth.service import authenticate
from kyso.platform.cli import main
from kyso.platform.models import AuditEvent, Role, SigningCertificate, User


@pytest.fixture
def run(database_url: str, tmp_path: Path) -> object:
    def invoke(*args: str, input: str | None = None) -> Result:
        env = {
            "DATABASE_URL": database_url,
            "KYSO_SECRET_KEY": "test",
            "KYSO_INSTANCE_PATH": str(tmp_path / "cli-instance"),
        }
        return CliRunner().invoke(main, list(args), env=env, input=input)

    return invoke


def certificates(session: Session, user: User) -> list[tuple[str, bool]]:
    session.expire_all()
    rows = session.scalars(
        select(SigningCertificate)
        .where(SigningCertificate.user_id == user.id)
        .order_by(SigningCertificate.id)
    )
    return [(c.serial_hex, c.active) for c in rows]


def test_register_certificate(run: object, session: Session, org: Seed) -> None:
    result = run("register-certificate", "KyDuyet.BenNghe", "54:01:0a:3f", "--by", "admin")  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    assert "registered 54 01 0A 3F" in result.output
    assert certificates(session, org.officer) == [("54010A3F", True)]
    again = run("register-certificate", "kyduyet.bennghe", "54010A3F", "--by", "admin")  # type: ignore[operator]
    assert again.exit_code == 0
    assert "nothing changed" in again.output
    replaced = run("register-certificate", "kyduyet.bennghe", "0B", "--by", "admin")  # type: ignore[operator]
    assert "replaces 54 01 0A 3F" in replaced.output
    assert certificates(session, org.officer) == [("54010A3F", False), ("B", True)]
    event = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "certificate.register")
        .order_by(AuditEvent.id.desc())
    ).first()
    assert event is not None
    assert event.user_id == org.admin.id
    assert event.ip is not None
    assert event.ip.startswith("cli:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody", "AA", "--by", "admin"), "no user 'nobody'"),
        (("kyduyet.bennghe", "AA", "--by", "kyduyet.quan1"), "is not an active administrator"),
        (("kyduyet.bennghe", "xyz", "--by", "admin"), "hexadecimal"),
        (("nhanvien.bennghe", "AA", "--by", "admin"), "Only signing officers"),
        (("kyduyet.bennghe", "AA"), "Missing option '--by'"),
    ],
)
def test_register_certificate_errors(
    run: object, session: Session, org: Seed, args: tuple[str, ...], message: str
) -> None:
    result = run("register-certificate", *args)  # type: ignore[operator]
    assert result.exit_code != 0
    assert message in result.output
    assert certificates(session, org.officer) == []


def test_register_certificate_refuses_another_officers_serial(
    run: object, session: Session, org: Seed
) -> None:
    assert run("register-certificate", "kyduyet.bennghe", "AA", "--by", "admin").exit_code == 0  # type: ignore[operator]
    result = run("register-certificate", "kyduyet.quan1", "aa", "--by", "admin")  # type: ignore[operator]
    assert result.exit_code == 1
    assert "registered for another user" in result.output
    assert certificates(session, org.district_officer) == []
    refused = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "certificate.register_refused")
    ).all()
    assert len(refused) == 1


def test_create_user(run: object, session: Session, org: Seed) -> None:
    result = run(  # type: ignore[operator]
        "create-user",
        "Kyduyet.Cli",
        "--full-name",
        "Đặng Văn Cli",
        "--role",
        "signing_officer",
        "--signing-unit-code",
        "SU-79-760",
        "--password",
        "a-long-enough-password",
    )
    assert result.exit_code == 0, result.output
    assert "created kyduyet.cli" in result.output
    user = session.scalar(select(User).where(User.username == "kyduyet.cli"))
    assert user is not None
    assert user.role is Role.SIGNING_OFFICER
    assert user.signing_unit_id == org.unit_district.id
    assert authenticate(session, "kyduyet.cli", "a-long-enough-password", "::1").id == user.id
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.create")).one()
    assert event.detail is not None
    assert event.detail["via"] == "cli"


def test_create_user_prompts_for_the_password(run: object, session: Session, org: Seed) -> None:
    result = run(  # type: ignore[operator]
        "create-user",
        "admin.hcm",
        "--full-name",
        "Quản trị TP.HCM",
        "--role",
        "administrator",
        "--province-code",
        "79",
        input="a-long-enough-password\na-long-enough-password\n",
    )
    assert result.exit_code == 0, result.output
    user = session.scalar(select(User).where(User.username == "admin.hcm"))
    assert user is not None
    assert user.province_id == org.province.id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("x", "--role", "central_issuer", "--password", "a-long-enough-password"), "3–64"),
        (("a.b", "--role", "signing_officer", "--password", "a-long-enough-password"), "unit"),
        (("admin", "--role", "central_issuer", "--password", "a-long-enough-password"), "taken"),
        (("a.b", "--role", "central_issuer", "--password", "short"), "at least 10"),
        (
            ("a.b", "--role", "facility_staff", "--facility-code", "NOPE", "--password", "x" * 12),
            "no facility with code 'NOPE'",
        ),
    ],
)
def test_create_user_rules(
    run: object, session: Session, org: Seed, args: tuple[str, ...], message: str
) -> None:
    result = run("create-user", *args[:1], "--full-name", "Người Thử", *args[1:])  # type: ignore[operator]
    assert result.exit_code != 0
    assert message in result.output
    assert session.scalar(select(User).where(User.username == "a.b")) is None
