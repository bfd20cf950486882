"""No taking over a person through an import (issue 12, break 3).

Staff of one facility import an invented dose for a person another signing unit vaccinated and
signed, knowing only the CCCD, name, birth date and gender. The dose is recorded (one person,
many facilities is normal) but it grants nothing else: the importer does not see the person's
phone, address or the other unit's doses, cannot correct them, and a change of the person's
data that would supersede the other unit's signature becomes a correction request to that unit,
which accepts (the correction runs, signatures are superseded) or rejects it with a reason.
The import's report, dry run or not, is the same whether the number is recorded elsewhere or not.
"""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import PASSWORD, Seed, add_person
from support.signing_data import sign

from kyso.platform.auth.service import hash_password
from kyso.platform.corrections.service import correct
from kyso.platform.errors import DomainError
from kyso.platform.models import (
    AuditEvent,
    CorrectionRequest,
    CorrectionRequestStatus,
    DoseSignature,
    Gender,
    Person,
    Role,
    User,
    VerificationStatus,
)
from kyso.platform.records.importer import ImportReport, import_records, template_headers
from kyso.platform.records.reference_data import load_reference_data
from kyso.platform.records.service import PersonData

TODAY = date(2022, 6, 1)
NUMBER = "079190123456"
SECRET_PHONE = "0901234567"
SECRET_ADDRESS = "5 Lý Tự Trọng"
IMPORT = "/records/import"


def _csv(*rows: str) -> bytes:
    return ("\r\n".join([",".join(template_headers("vi")), *rows]) + "\r\n").encode("utf-8-sig")


def _row(
    *,
    number: str = NUMBER,
    birth: str = "17/05/1990",
    dose: int = 3,
    on: str = "01/03/2022",
    lot: str = "INVENTED1",
) -> str:
    # full name, birth date, gender, CCCD, phone, address, area, dose, date, product, lot, facility
    return f"Nguyễn Thị Lan,{birth},Nữ,{number},,,,{dose},{on},Pfizer,{lot},"


@pytest.fixture
def victim(session: Session, org: Seed) -> Person:
    """Vaccinated and signed by the District 1 unit (Bến Thành), which Bến Nghé is not part of."""
    load_reference_data(session)
    session.add(
        User(
            username="nhanvien.benthanh",
            full_name="Võ Thị Mai",
            password_hash=hash_password(PASSWORD),
            role=Role.FACILITY_STAFF,
            facility_id=org.station_ben_thanh.id,
        )
    )
    person = add_person(
        session,
        org,
        "Nguyễn Thị Lan",
        facility=org.station_ben_thanh,
        identity_number=NUMBER,
        gender=Gender.FEMALE,
        phone=SECRET_PHONE,
        first_dose=date(2021, 8, 1),
    )
    person.address = SECRET_ADDRESS
    session.flush()
    for dose in person.doses:
        sign(session, dose)
    session.commit()
    return person


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    login(client, username)
    return client


def _import(client: FlaskClient, data: bytes) -> int:
    token = csrf_token(client, IMPORT)
    response = client.post(
        IMPORT,
        data={"csrf_token": token, "file": (io.BytesIO(data), "tiem.csv")},
        content_type="multipart/form-data",
    )
    return response.status_code


def _ask_phone_change(client: FlaskClient, person: Person, phone: str) -> int:
    page = f"/stats/people/{person.id}"
    response = client.post(
        f"{page}/person",
        data={
            "csrf_token": csrf_token(client, page),
            "version": str(person.version),
            "full_name": person.full_name,
            "birth_date": person.birth_date.isoformat(),
            "gender": person.gender.value,
            "identity_number": person.identity_number or "",
            "phone": phone,
            "reason": "Số điện thoại mới theo lời người tiêm",
        },
    )
    return response.status_code


def _current_signatures(session: Session, person: Person) -> int:
    session.expire_all()
    return len(
        list(
            session.scalars(
                select(DoseSignature).where(
                    DoseSignature.dose_id.in_([d.id for d in person.doses]),
                    DoseSignature.superseded_at.is_(None),
                )
            )
        )
    )


def _import_invented_dose(app: Flask, session: Session, victim: Person) -> FlaskClient:
    """Bến Nghé's staff import an invented dose 3 for the District 1 unit's person."""
    attacker = _client(app, "nhanvien.bennghe")
    assert _import(attacker, _csv(_row())) == 200
    session.expire_all()
    assert [d.dose_number for d in victim.doses] == [1, 2, 3], "one person, many facilities"
    return attacker


def _attack(app: Flask, session: Session, victim: Person) -> FlaskClient:
    """The invented dose, then a change of the phone number."""
    attacker = _import_invented_dose(app, session, victim)
    assert _ask_phone_change(attacker, victim, "0999999999") in (200, 302)
    return attacker


def test_an_imported_dose_grants_no_view_and_no_takeover(
    app: Flask, session: Session, org: Seed, victim: Person
) -> None:
    """Fails on the old code: the page showed the phone and the other unit's doses, and the
    phone change was applied, superseding the District 1 unit's signatures."""
    attacker = _import_invented_dose(app, session, victim)

    page = attacker.get(f"/stats/people/{victim.id}").get_data(as_text=True)
    assert "INVENTED1" in page, "the importer sees and corrects its own dose"
    assert SECRET_PHONE not in page
    assert SECRET_ADDRESS not in page
    assert "FK1001" not in page, "another unit's doses are not shown"
    assert "FK1002" not in page

    assert _ask_phone_change(attacker, victim, "0999999999") in (200, 302)

    session.expire_all()
    assert victim.phone == SECRET_PHONE
    assert victim.version == 1
    assert _current_signatures(session, victim) == 2
    request = session.scalar(select(CorrectionRequest))
    assert request is not None
    assert request.signing_unit_id == org.unit_district.id
    assert request.changes == {"phone": "0999999999"}
    assert request.status is CorrectionRequestStatus.PENDING

    # The service refuses the direct correction too, whatever the page does.
    data = PersonData(
        victim.full_name, victim.birth_date, victim.gender, NUMBER, phone="0988888888"
    )
    with pytest.raises(DomainError) as refused:
        correct(session, victim, data, org.staff, reason="thử")
    assert refused.value.key == "records.signed_elsewhere"
    session.rollback()
    assert _current_signatures(session, victim) == 2

    # The requester cannot decide its own request.
    token = csrf_token(attacker, "/records/requests")
    denied = attacker.post(f"/records/requests/{request.id}/accept", data={"csrf_token": token})
    assert denied.status_code == 403
    assert f"request-{request.id}" not in attacker.get("/records/requests").get_data(as_text=True)


def test_the_unit_that_signed_accepts_the_request(
    app: Flask, session: Session, org: Seed, victim: Person
) -> None:
    """Fails on the old code: there were no correction requests (the change was applied)."""
    _attack(app, session, victim)
    request = session.scalar(select(CorrectionRequest))
    assert request is not None
    owner = _client(app, "nhanvien.benthanh")
    record = owner.get(f"/stats/people/{victim.id}").get_data(as_text=True)
    assert SECRET_PHONE in record, "the unit that recorded the person first keeps seeing it"
    assert "FK1001" in record
    assert "INVENTED1" not in record, "nor does it see the other facility's dose"
    assert "person-signed-elsewhere" not in record
    inbox = owner.get("/records/requests").get_data(as_text=True)
    assert f"request-{request.id}" in inbox
    assert "0999999999" in inbox

    token = csrf_token(owner, "/records/requests")
    response = owner.post(f"/records/requests/{request.id}/accept", data={"csrf_token": token})
    assert response.status_code == 302
    session.expire_all()
    assert victim.phone == "0999999999"
    assert victim.version == 2
    assert _current_signatures(session, victim) == 0, "the correction superseded the signatures"
    assert request.status is CorrectionRequestStatus.ACCEPTED
    assert request.record_version_id is not None
    actions = list(session.scalars(select(AuditEvent.action)))
    assert {
        "corrections.request_create",
        "corrections.request_accept",
        "corrections.person",
    } <= set(actions)
    again = owner.post(f"/records/requests/{request.id}/accept", data={"csrf_token": token})
    assert again.status_code == 409


def test_the_unit_that_signed_rejects_the_request_with_a_reason(
    app: Flask, session: Session, org: Seed, victim: Person
) -> None:
    """Fails on the old code: there were no correction requests (the change was applied)."""
    _attack(app, session, victim)
    request = session.scalar(select(CorrectionRequest))
    assert request is not None
    owner = _client(app, "nhanvien.benthanh")
    token = csrf_token(owner, "/records/requests")
    url = f"/records/requests/{request.id}/reject"
    assert owner.post(url, data={"csrf_token": token, "reason": " "}).status_code == 400
    session.expire_all()
    assert request.status is CorrectionRequestStatus.PENDING

    response = owner.post(url, data={"csrf_token": token, "reason": "Không có mũi 3 tại Bến Nghé"})
    assert response.status_code == 302
    session.expire_all()
    assert request.status is CorrectionRequestStatus.REJECTED
    assert request.decision_reason == "Không có mũi 3 tại Bến Nghé"
    assert victim.phone == SECRET_PHONE
    assert _current_signatures(session, victim) == 2
    event = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "corrections.request_reject")
    )
    assert event is not None
    assert event.detail is not None
    assert event.detail["reason"] == "Không có mũi 3 tại Bến Nghé"


def _answer(report: ImportReport) -> tuple[Any, ...]:
    """Everything the importer learns from a report."""
    return (
        report.ok,
        [(p.row, p.field, p.text("vi"), p.text("en")) for p in report.problems],
        [(n.row, n.field, n.text("vi"), n.text("en")) for n in report.notes],
        report.people_created,
        report.people_existing,
        report.doses_created,
        report.doses_skipped,
    )


def _run(session: Session, org: Seed, data: bytes, dry_run: bool) -> ImportReport:
    return import_records(
        session, io.BytesIO(data), "tiem.csv", org.station_ben_nghe, org.staff,
        dry_run=dry_run, today=TODAY,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("label", "row"),
    [
        ("same identity, a new dose", _row()),
        ("another birth date", _row(birth="18/05/1990")),
        ("a dose number recorded elsewhere", _row(dose=1, on="15/09/2021")),
        ("a date before a dose recorded elsewhere", _row(dose=3, on="20/08/2021")),
    ],
)
def test_the_report_does_not_tell_whether_the_number_is_recorded_elsewhere(
    session: Session, org: Seed, label: str, row: str
) -> None:
    """Fails on the old code: an existing person was counted as existing, with notes on the
    phone and address, and "birth date differs", "dose recorded" or "order" problems."""
    load_reference_data(session)
    session.commit()
    data = _csv(row)
    unknown = _answer(_run(session, org, data, dry_run=True))
    session.rollback()

    add_person(
        session,
        org,
        "Nguyễn Thị Lan",
        facility=org.station_ben_thanh,
        identity_number=NUMBER,
        gender=Gender.FEMALE,
        first_dose=date(2021, 8, 1),
    ).address = SECRET_ADDRESS
    session.commit()
    assert _answer(_run(session, org, data, dry_run=True)) == unknown, label
    assert _answer(_run(session, org, data, dry_run=False)) == unknown, label


def test_the_invalid_list_and_its_export_hide_what_the_other_unit_keeps(
    app: Flask, session: Session, org: Seed, victim: Person
) -> None:
    """Fails on the old code: the invalid-people list and export showed the phone and address
    of a person the facility only recorded one dose for."""
    victim.verification_status = VerificationStatus.MISMATCH
    victim.verification_detail = {"fields": ["birth_date"]}
    session.commit()
    attacker = _import_invented_dose(app, session, victim)
    page = attacker.get("/stats/invalid").get_data(as_text=True)
    assert "INVENTED1" in page, "the person is listed with the facility's own dose"
    assert SECRET_PHONE not in page
    assert SECRET_ADDRESS not in page
    export = attacker.get("/stats/invalid/export.xlsx")
    assert export.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(export.get_data())).worksheets[0]
    cells = {str(c) for row in sheet.iter_rows(values_only=True) for c in row if c is not None}
    assert NUMBER in cells
    assert SECRET_PHONE not in cells
    assert SECRET_ADDRESS not in cells

    # The unit that vaccinated and signed the person still sees everything.
    owner = _client(app, "nhanvien.benthanh")
    assert SECRET_PHONE in owner.get("/stats/invalid").get_data(as_text=True)


def test_a_refused_change_does_not_describe_the_other_units_dose(
    app: Flask, session: Session, victim: Person
) -> None:
    """Fails on the old code: "the date of birth is after dose 1 (01/08/2021)" told the
    importer the number and date of the other unit's dose."""
    attacker = _import_invented_dose(app, session, victim)
    page = f"/stats/people/{victim.id}"
    response = attacker.post(
        f"{page}/person",
        data={
            "csrf_token": csrf_token(attacker, page),
            "version": str(victim.version),
            "full_name": victim.full_name,
            "birth_date": "2021-08-15",
            "gender": victim.gender.value,
            "identity_number": NUMBER,
            "reason": "Ngày sinh theo giấy khai sinh",
        },
    )
    text = response.get_data(as_text=True)
    assert "Ngày sinh này sau ngày tiêm một mũi do đơn vị khác ghi nhận" in text
    assert "01/08/2021" not in text
    session.expire_all()
    assert victim.birth_date == date(1990, 5, 17)


def test_the_other_units_corrections_are_not_shown(
    app: Flask, session: Session, victim: Person
) -> None:
    """Fails on the old code: the history listed the other unit's correction and its reason."""
    owner = session.scalar(select(User).where(User.username == "nhanvien.benthanh"))
    data = PersonData(
        victim.full_name,
        victim.birth_date,
        victim.gender,
        NUMBER,
        phone=SECRET_PHONE,
        address="7 Pasteur, nhà trọ của chị Hoa",
    )
    assert correct(session, victim, data, owner, reason="Chuyển đến nhà trọ chị Hoa")
    session.commit()
    attacker = _import_invented_dose(app, session, victim)
    page = attacker.get(f"/stats/people/{victim.id}").get_data(as_text=True)
    assert "nhà trọ chị Hoa" not in page
    assert "nhà trọ chị Hoa" in _client(app, "nhanvien.benthanh").get(
        f"/stats/people/{victim.id}"
    ).get_data(as_text=True)
