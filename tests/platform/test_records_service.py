"""Editing records: validation rules, version bumps, reverification, permissions, audit."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_seed import Seed, add_person

from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.models import (
    AuditEvent,
    Dose,
    Gender,
    Person,
    Role,
    User,
    VerificationStatus,
)
from kyso.platform.records import rules, service
from kyso.platform.records.rules import InvalidRecord
from kyso.platform.records.service import DoseData, PersonData

TODAY = date(2022, 6, 1)


def _person_data(**changes: object) -> PersonData:
    values: dict[str, object] = {
        "full_name": "Nguyễn Thị Lan",
        "birth_date": date(1990, 5, 17),
        "gender": Gender.FEMALE,
        "identity_number": "079190123456",
        "phone": "0912345678",
    }
    values.update(changes)
    return PersonData(**values)  # type: ignore[arg-type]


def _dose_data(org: Seed, **changes: object) -> DoseData:
    values: dict[str, object] = {
        "dose_number": 1,
        "vaccinated_on": date(2021, 9, 15),
        "product_id": org.pfizer.id,
        "lot": "FK5618",
        "facility_id": org.station_ben_nghe.id,
    }
    values.update(changes)
    return DoseData(**values)  # type: ignore[arg-type]


def _as_is(person: Person, **changes: object) -> PersonData:
    """The person's data as stored, with ``changes``: an edit form submitted as it was."""
    values: dict[str, object] = {
        "full_name": person.full_name,
        "birth_date": person.birth_date,
        "gender": person.gender,
        "identity_number": person.identity_number,
        "phone": person.phone,
        "address": person.address,
        "area_id": person.area_id,
    }
    values.update(changes)
    return PersonData(**values)  # type: ignore[arg-type]


def _add(session: Session, org: Seed, person: Person, **changes: object) -> Dose:
    """Facility staff records a dose of ``person`` (the default dose, with ``changes``)."""
    return service.add_dose(session, person, _dose_data(org, **changes), org.staff, today=TODAY)


def _problem_keys(exc: pytest.ExceptionInfo[InvalidRecord]) -> set[tuple[str, str]]:
    return {(p.field, p.key) for p in exc.value.problems}


def _actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_create_person_and_doses(session: Session, org: Seed) -> None:
    person = service.create_person(
        session, _person_data(full_name="  Nguyễn  Thị   Lan "), org.staff, today=TODAY
    )
    assert person.full_name == "Nguyễn Thị Lan"
    assert person.name_key == "nguyen thi lan"
    assert person.verification_status is VerificationStatus.PENDING
    assert person.version == 1
    first = _add(session, org, person)
    second = _add(
        session, org, person, dose_number=2, vaccinated_on=date(2021, 10, 10), lot=" FK5619 "
    )
    session.commit()
    assert [d.dose_number for d in person.doses] == [1, 2]
    assert second.lot == "FK5619"
    assert first.created_by_facility_id == org.station_ben_nghe.id
    assert first.created_by_user_id == org.staff.id
    assert (first.version, second.version) == (1, 1)
    assert _actions(session) == [
        "records.person_create",
        "records.dose_create",
        "records.dose_create",
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"full_name": "   "}, ("full_name", "records.name_required")),
        ({"full_name": "Nguyễn Văn 2"}, ("full_name", "records.name_has_digits")),
        ({"full_name": "A" * 121}, ("full_name", "records.name_too_long")),
        ({"birth_date": date(2022, 6, 2)}, ("birth_date", "records.birth_date_future")),
        ({"birth_date": date(1899, 12, 31)}, ("birth_date", "records.birth_date_too_early")),
        ({"identity_number": "07919012345X"}, ("identity_number", "records.identity_not_digits")),
        ({"identity_number": "0791901234567"}, ("identity_number", "records.identity_too_long")),
        ({"phone": "12345"}, ("phone", "records.phone_invalid")),
        ({"area_id": 999_999}, ("area", "records.area_unknown")),
    ],
)
def test_person_rules(
    session: Session, org: Seed, changes: dict[str, object], expected: tuple[str, str]
) -> None:
    with pytest.raises(InvalidRecord) as exc:
        service.create_person(session, _person_data(**changes), org.staff, today=TODAY)
    assert expected in _problem_keys(exc)
    assert session.scalar(select(Person)) is None


def test_every_problem_is_reported_at_once(session: Session, org: Seed) -> None:
    data = _person_data(full_name="", birth_date=date(2030, 1, 1), phone="x")
    with pytest.raises(InvalidRecord) as exc:
        service.create_person(session, data, org.staff, today=TODAY)
    assert {f for f, _ in _problem_keys(exc)} == {"full_name", "birth_date", "phone"}
    # The error's own text is the first problem's, Vietnamese first, then English.
    assert exc.value.text("vi") == translate("records.name_required", "vi")
    assert "full name" in exc.value.text("en")


def test_identity_number_and_phone_are_normalised(session: Session, org: Seed) -> None:
    person = service.create_person(
        session,
        _person_data(identity_number="079 190.123-456", phone="+84 912 345 678"),
        org.staff,
        today=TODAY,
    )
    assert person.identity_number == "079190123456"
    assert person.phone == "0912345678"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"dose_number": 4}, ("dose_number", "records.dose_number_too_high")),
        ({"dose_number": 0}, ("dose_number", "records.dose_number_invalid")),
        (
            {"vaccinated_on": date(2021, 2, 28)},
            ("vaccinated_on", "records.vaccinated_on_too_early"),
        ),
        ({"vaccinated_on": date(2022, 6, 2)}, ("vaccinated_on", "records.vaccinated_on_future")),
        ({"lot": "  "}, ("lot", "records.lot_required")),
        ({"lot": "L" * 65}, ("lot", "records.lot_too_long")),
        ({"product_id": 999_999}, ("product", "records.product_unknown_id")),
        ({"facility_id": 999_999}, ("facility", "records.facility_unknown_id")),
    ],
)
def test_dose_rules(
    session: Session, org: Seed, changes: dict[str, object], expected: tuple[str, str]
) -> None:
    person = service.create_person(session, _person_data(), org.staff, today=TODAY)
    with pytest.raises(InvalidRecord) as exc:
        _add(session, org, person, **changes)
    assert expected in _problem_keys(exc)
    assert session.scalar(select(Dose)) is None


def test_first_day_of_vaccination_and_today_are_allowed(session: Session, org: Seed) -> None:
    person = service.create_person(session, _person_data(), org.staff, today=TODAY)
    _add(session, org, person, vaccinated_on=rules.FIRST_VACCINATION_DAY)
    service.add_dose(
        session, person, _dose_data(org, dose_number=2, vaccinated_on=TODAY), org.staff, today=TODAY
    )
    assert len(person.doses) == 2


def test_a_dose_before_birth_is_refused(session: Session, org: Seed) -> None:
    child = service.create_person(
        session, _person_data(birth_date=date(2021, 6, 1)), org.staff, today=TODAY
    )
    with pytest.raises(InvalidRecord) as exc:
        service.add_dose(
            session, child, _dose_data(org, vaccinated_on=date(2021, 5, 1)), org.staff, today=TODAY
        )
    assert ("vaccinated_on", "records.vaccinated_before_birth") in _problem_keys(exc)


def test_doses_must_follow_their_numbers(session: Session, org: Seed) -> None:
    person = service.create_person(session, _person_data(), org.staff, today=TODAY)
    _add(session, org, person, dose_number=2, vaccinated_on=date(2021, 10, 1))
    for number, on in ((1, date(2021, 10, 1)), (1, date(2021, 11, 1)), (3, date(2021, 9, 1))):
        with pytest.raises(InvalidRecord) as exc:
            _add(session, org, person, dose_number=number, vaccinated_on=on)
        assert ("vaccinated_on", "records.dose_order") in _problem_keys(exc)
    _add(session, org, person, dose_number=1, vaccinated_on=date(2021, 9, 1))
    with pytest.raises(InvalidRecord) as exc:
        _add(session, org, person, dose_number=2)
    assert ("dose_number", "records.dose_exists") in _problem_keys(exc)


def test_person_edit_bumps_person_and_every_dose(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=3)
    session.commit()
    before = [d.version for d in person.doses]
    service.update_person(
        session,
        person,
        _as_is(person, full_name="Nguyễn Văn Ân"),
        org.staff,
        expected_version=1,
        today=TODAY,
    )
    session.commit()
    assert person.version == 2
    assert [d.version for d in person.doses] == [v + 1 for v in before]
    assert person.name_key == "nguyen van an"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "records.person_update"))
    assert event is not None
    assert event.detail == {"fields": ["full_name"], "version": 2}
    assert event.target == f"person:{person.id}"
    assert event.user_id == org.staff.id


@pytest.mark.parametrize(
    "changes",
    [
        {"identity_number": "079190654321"},
        {"full_name": "Nguyễn Văn Bình"},
        {"birth_date": date(1990, 5, 18)},
        {"gender": Gender.FEMALE},
    ],
)
def test_editing_what_the_registry_checks_sends_back_to_verification(
    session: Session, org: Seed, changes: dict[str, object]
) -> None:
    person = add_person(session, org, "Nguyễn Văn An")
    person.verification_detail = {"checked": True}
    person.verified_at = datetime(2022, 1, 1, tzinfo=UTC)
    person.verification_attempts = 2
    session.commit()
    service.update_person(session, person, _as_is(person, **changes), org.staff, today=TODAY)
    assert person.verification_status is VerificationStatus.PENDING
    assert person.verification_detail is None
    assert person.verified_at is None


def test_editing_the_phone_keeps_the_verification(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An")
    session.commit()
    data = _as_is(person, phone="0987654321")
    service.update_person(session, person, data, org.staff, today=TODAY)
    assert person.verification_status is VerificationStatus.VERIFIED
    assert person.version == 2
    assert all(d.version == 2 for d in person.doses)


def test_an_edit_that_changes_nothing_changes_no_version(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An")
    session.commit()
    data = _as_is(person)
    service.update_person(session, person, data, org.staff, today=TODAY)
    service.update_dose(
        session,
        person.doses[0],
        DoseData(
            1, person.doses[0].vaccinated_on, org.pfizer.id, "FK1001", org.station_ben_nghe.id
        ),
        org.staff,
        today=TODAY,
    )
    assert person.version == 1
    assert [d.version for d in person.doses] == [1, 1]
    assert person.verification_status is VerificationStatus.VERIFIED
    assert _actions(session) == []


def test_dose_edit_bumps_only_that_dose(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=2)
    session.commit()
    first, second = person.doses
    service.update_dose(
        session,
        second,
        DoseData(2, second.vaccinated_on, org.astrazeneca.id, "ABV5300", org.station_ben_nghe.id),
        org.staff,
        expected_version=1,
        today=TODAY,
    )
    assert (first.version, second.version, person.version) == (1, 2, 1)
    assert person.verification_status is VerificationStatus.VERIFIED
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "records.dose_update"))
    assert event is not None
    assert event.detail == {"fields": ["product_id", "lot"], "version": 2}


def test_a_birth_date_after_a_dose_is_refused(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", first_dose=date(2021, 9, 1))
    data = _as_is(person, birth_date=date(2021, 10, 1))
    with pytest.raises(InvalidRecord) as exc:
        service.update_person(session, person, data, org.staff, today=TODAY)
    assert ("birth_date", "records.birth_after_dose") in _problem_keys(exc)
    assert person.version == 1


def test_stale_edits_are_refused(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An")
    session.commit()
    recorded = person.identity_number
    assert recorded
    data = _as_is(person, identity_number=None)
    with pytest.raises(DomainError) as exc:
        service.update_person(session, person, data, org.staff, expected_version=0, today=TODAY)
    assert exc.value.key == "records.stale"
    with pytest.raises(DomainError) as dose_exc:
        service.update_dose(
            session,
            person.doses[0],
            DoseData(1, date(2022, 3, 1), org.pfizer.id, "X1", org.station_ben_nghe.id),
            org.staff,
            expected_version=5,
            today=TODAY,
        )
    assert dose_exc.value.key == "records.stale"
    assert person.identity_number == recorded


def test_who_may_record_where(session: Session, org: Seed) -> None:
    ben_thanh_staff = User(
        username="nhanvien.benthanh",
        full_name="Võ Minh Tâm",
        password_hash="x",
        role=Role.FACILITY_STAFF,
        facility_id=org.station_ben_thanh.id,
    )
    session.add(ben_thanh_staff)
    session.flush()
    may = service.may_record_at
    # Bến Nghé signs its own records: its staff record there only.
    assert may(session, org.staff, org.station_ben_nghe)
    assert not may(session, org.staff, org.station_ben_thanh)
    assert not may(session, org.staff, org.mobile_team)
    # Bến Thành shares the district unit with the mobile team.
    assert may(session, ben_thanh_staff, org.mobile_team)
    assert not may(session, ben_thanh_staff, org.station_ben_nghe)
    assert may(session, org.admin, org.station_ben_thanh)
    assert may(session, None, org.station_ben_thanh)  # IT at the command line
    for user in (org.officer, org.district_officer, org.issuer):
        assert not may(session, user, org.station_ben_nghe)
    org.staff.active = False
    assert not may(session, org.staff, org.station_ben_nghe)


def test_signing_officers_cannot_edit_records(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An")
    data = _as_is(person, identity_number=None)
    with pytest.raises(DomainError) as exc:
        service.update_person(session, person, data, org.officer, today=TODAY)
    assert exc.value.key == "records.not_allowed"
    with pytest.raises(DomainError):
        service.create_person(session, _person_data(), org.issuer, today=TODAY)
    assert person.version == 1


def test_staff_cannot_edit_another_units_records(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Trần Văn Bình", facility=org.station_ben_thanh)
    data = _as_is(person, identity_number=None)
    with pytest.raises(DomainError) as exc:
        service.update_person(session, person, data, org.staff, today=TODAY)
    assert exc.value.key == "records.not_allowed"
    with pytest.raises(DomainError):
        service.update_dose(
            session,
            person.doses[0],
            DoseData(1, date(2022, 3, 1), org.pfizer.id, "X1", org.station_ben_thanh.id),
            org.staff,
            today=TODAY,
        )
    with pytest.raises(InvalidRecord) as invalid:
        service.add_dose(
            session,
            service.create_person(session, _person_data(), org.staff, today=TODAY),
            _dose_data(org, facility_id=org.station_ben_thanh.id),
            org.staff,
            today=TODAY,
        )
    assert ("facility", "records.facility_not_allowed") in _problem_keys(invalid)
    # The administrator may.
    service.update_person(
        session,
        person,
        _as_is(person, identity_number=None),
        org.admin,
        today=TODAY,
    )
    assert person.identity_number is None


def test_today_is_vietnams_day() -> None:
    assert rules.VIETNAM.utcoffset(None).total_seconds() == 7 * 3600  # type: ignore[union-attr]
    assert rules.today_in_vietnam() >= datetime.now(UTC).date()
