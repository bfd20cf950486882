"""Signing units' tax codes on the web (issue 14): the "Đơn vị ký" page lists the units in the
administrator's scope with their tax code (MST), and sets or corrects it, checked as a
Vietnamese tax code (10 digits, or 13 for a dependent unit)."""

from __future__ import annotations

import html

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import Seed, add_province

from kyso.platform.models import AuditEvent, SigningUnit

PATH = "/users/units"


def _save(client: FlaskClient, unit: SigningUnit | int, tax_code: str) -> tuple[int, str]:
    answer = client.post(
        PATH,
        data={
            "csrf_token": csrf_token(client, PATH),
            "unit": str(unit if isinstance(unit, int) else unit.id),
            "tax_code": tax_code,
        },
        follow_redirects=True,
    )
    return answer.status_code, html.unescape(answer.get_data(as_text=True))


def _tax_code(session: Session, unit_id: int) -> str | None:
    session.expire_all()
    unit = session.get(SigningUnit, unit_id)
    assert unit is not None
    return unit.tax_code


def test_units_are_listed_with_their_tax_code(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    org.unit_district.tax_code = None
    session.commit()
    login(client, org.admin.username)
    page = html.unescape(client.get(PATH).get_data(as_text=True))
    rows = page.split("<tr id=")
    ben_nghe = next(r for r in rows if org.unit_ben_nghe.name in r)
    district = next(r for r in rows if org.unit_district.name in r)
    assert "<code>0312345678</code>" in ben_nghe
    assert "chưa có mã số thuế" in district
    assert 'href="/users/units"' in client.get("/users/").get_data(as_text=True)  # linked


def test_administrator_sets_a_branch_tax_code_typed_without_its_hyphen(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    login(client, org.admin.username)
    status, page = _save(client, org.unit_district, " 0312345600 001 ")
    assert status == 200
    assert f"Đã lưu mã số thuế 0312345600-001 cho {org.unit_district.name}." in page
    assert _tax_code(session, org.unit_district.id) == "0312345600-001"
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "signing_unit.tax_code")
    ).one()
    assert event.user_id == org.admin.id
    assert event.detail == {"before": "0312345600", "after": "0312345600-001"}
    # Shown where the unit is: on the users' pages of its officers.
    detail = html.unescape(client.get(f"/users/{org.district_officer.id}").get_data(as_text=True))
    assert "MST 0312345600-001" in detail


def test_a_malformed_tax_code_is_refused_and_changes_nothing(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    login(client, org.admin.username)
    for wrong in ("03123", "0312345678-01", "031234567A", "0312345678-0011", ""):
        status, page = _save(client, org.unit_ben_nghe, wrong)
        assert status == 400, wrong
        assert "không đúng dạng: cần 10 chữ số" in page, wrong
        assert 'aria-invalid="true"' in page
    assert _tax_code(session, org.unit_ben_nghe.id) == "0312345678"
    assert not session.scalars(
        select(AuditEvent).where(AuditEvent.action == "signing_unit.tax_code")
    ).all()


def test_a_provincial_administrator_sees_and_edits_only_their_province_units(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    hanoi = add_province(session)
    session.commit()
    login(client, hanoi.admin.username)
    page = html.unescape(client.get(PATH).get_data(as_text=True))
    assert hanoi.unit.name in page
    assert org.unit_ben_nghe.name not in page
    status, answer = _save(client, org.unit_ben_nghe, "0100000001")
    assert status == 400
    assert "Không có đơn vị ký mã" in answer
    assert _tax_code(session, org.unit_ben_nghe.id) == "0312345678"
    status, _ = _save(client, hanoi.unit, "0100000001")
    assert status == 200
    assert _tax_code(session, hanoi.unit.id) == "0100000001"


def test_english_page(client: FlaskClient, org: Seed) -> None:
    login(client, org.admin.username)
    client.get("/lang/en")
    page = html.unescape(client.get(PATH).get_data(as_text=True))
    assert "Signing units" in page
    assert "Tax code (MST)" in page
