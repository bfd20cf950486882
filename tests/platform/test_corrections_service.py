"""Corrections: a new version, the history kept, signatures and passports superseded (never
deleted), the person re-verified, the dose back on the signing list as "to be signed again"."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.feedback_data import citizen, passport, registry
from support.platform_seed import Seed, add_person, add_province
from support.records_data import person_data
from support.signing_data import sign

from kyso.platform.corrections.service import (
    VerifyResult,
    correct,
    history,
    made_for,
    verify_person_now,
)
from kyso.platform.errors import DomainError
from kyso.platform.models import (
    AuditEvent,
    DoseSignature,
    Feedback,
    FeedbackStatus,
    Passport,
    Person,
    RecordVersion,
    VerificationStatus,
)
from kyso.platform.records.service import DoseData
from kyso.platform.registry.client import HttpPopulationRegistry
from kyso.platform.signing.search import SearchFilters, SigningState, StateFilter, search


def dose_data(person: Person, number: int, **changes: object) -> DoseData:
    dose = next(d for d in person.doses if d.dose_number == number)
    data = DoseData(
        dose.dose_number, dose.vaccinated_on, dose.product_id, dose.lot, dose.facility_id
    )
    return replace(data, **changes)  # type: ignore[arg-type]


def states(session: Session, org: Seed, person: Person) -> dict[int, SigningState]:
    """How the officer's signing search shows the person's doses."""
    page = search(
        session,
        org.officer,
        SearchFilters(identity_number=person.identity_number or "", state=StateFilter.ALL),
        page_size=10,
    )
    found = next(p for p in page.people if p.id == person.id)
    return {d.dose_number: d.state for d in found.doses}


def test_person_correction_versions_history_signatures_passport_and_signing_list(
    session: Session, org: Seed
) -> None:
    person = add_person(session, org, "Nguyễn Văn Sửa")
    first, second = person.doses
    signatures = [sign(session, first), sign(session, second)]
    current = passport(session, person, second, signatures[1])
    session.commit()
    assert states(session, org, person) == {1: SigningState.SIGNED, 2: SigningState.SIGNED}

    correction = correct(
        session,
        person,
        person_data(person, full_name="Nguyễn Văn Sửa Đúng"),
        org.staff,
        reason="Theo thẻ CCCD",
        expected_version=1,
        ip="192.0.2.1",
    )
    session.commit()

    assert correction is not None
    assert person.version == 2
    assert [d.version for d in person.doses] == [2, 2]  # a person edit bumps every dose
    version = session.scalars(select(RecordVersion)).one()
    assert version.kind == "person"
    assert (version.version_before, version.version_after) == (1, 2)
    assert version.fields == ["full_name"]
    assert version.before["full_name"] == "Nguyễn Văn Sửa"
    assert version.after["full_name"] == "Nguyễn Văn Sửa Đúng"
    assert version.reason == "Theo thẻ CCCD"
    assert version.user_id == org.staff.id
    assert sorted(version.superseded_signatures) == sorted(s.id for s in signatures)
    assert version.superseded_passports == [current.id]
    # Kept, never deleted, and marked.
    rows = session.scalars(select(DoseSignature).order_by(DoseSignature.id)).all()
    assert [r.id for r in rows] == [s.id for s in signatures]
    assert all(r.superseded_at is not None for r in rows)
    session.refresh(current)
    assert current.superseded_at is not None
    assert session.scalar(select(func.count()).select_from(Passport)) == 1
    # The name is an identity field: back to pending.
    assert person.verification_status is VerificationStatus.PENDING
    assert correction.reverify
    # Back on the signing list, as "to be signed again".
    assert states(session, org, person) == {1: SigningState.RESIGN, 2: SigningState.RESIGN}
    page = search(
        session,
        org.officer,
        SearchFilters(identity_number=person.identity_number or "", state=StateFilter.TO_SIGN),
        page_size=10,
    )
    assert [p.id for p in page.people] == [person.id]
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "corrections.person")
    ).one()
    assert event.user_id == org.staff.id
    assert event.ip == "192.0.2.1"
    assert event.detail is not None
    assert event.detail["fields"] == ["full_name"]
    assert history(session, person.id) == [version]


def test_dose_correction_bumps_only_that_dose(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Trần Văn Lô")
    first, second = person.doses
    sign(session, first)
    kept = sign(session, second)
    session.commit()

    correction = correct(
        session, first, dose_data(person, 1, lot="FK9999"), org.staff, reason="Sai số lô"
    )
    session.commit()

    assert correction is not None
    assert (person.version, first.version, second.version) == (1, 2, 1)
    assert person.verification_status is VerificationStatus.VERIFIED  # no identity field
    assert not correction.reverify
    assert correction.version.before == {**correction.version.after, "lot": "FK1001"}
    assert correction.version.dose_id == first.id
    session.refresh(kept)
    assert kept.superseded_at is None
    assert states(session, org, person) == {1: SigningState.RESIGN, 2: SigningState.SIGNED}


def test_phone_correction_keeps_the_verification(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Lý Thị Số")
    session.commit()
    correct(session, person, person_data(person, phone="0912345678"), org.staff, reason="Đổi số")
    assert person.version == 2
    assert person.verification_status is VerificationStatus.VERIFIED


def test_nothing_changed_is_no_version(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Đỗ Văn Giữ")
    signature = sign(session, person.doses[0])
    session.commit()
    assert correct(session, person, person_data(person), org.staff, reason="x") is None
    assert person.version == 1
    assert session.scalar(select(func.count()).select_from(RecordVersion)) == 0
    session.refresh(signature)
    assert signature.superseded_at is None


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_reason_is_required(session: Session, org: Seed, reason: str) -> None:
    person = add_person(session, org, "Bùi Văn Lý")
    session.commit()
    with pytest.raises(DomainError) as raised:
        correct(
            session, person, person_data(person, full_name="Bùi Văn Lí"), org.staff, reason=reason
        )
    assert raised.value.key in {"corrections.reason_required", "corrections.reason_too_long"}
    assert person.version == 1


def test_staff_of_another_facility_cannot_correct(session: Session, org: Seed) -> None:
    other = add_province(session)
    person = add_person(session, org, "Cao Văn Ngoài")
    session.commit()
    with pytest.raises(DomainError, match=r"^records\.not_allowed$"):
        correct(session, person, person_data(person, phone="0911111111"), other.staff, reason="x")
    with pytest.raises(DomainError, match=r"^records\.not_allowed$"):
        correct(session, person.doses[0], dose_data(person, 1, lot="X1"), other.staff, reason="x")
    assert person.version == 1


def _feedback(session: Session, org: Seed, person: Person) -> Feedback:
    from datetime import UTC, datetime, timedelta

    feedback = Feedback(
        tracking_code=f"PATEST{person.id:04d}",
        facility_id=org.station_ben_nghe.id,
        person_id=person.id,
        full_name=person.full_name,
        birth_date=person.birth_date,
        phone=person.phone or "0900000000",
        field="dose_lot",
        message="Số lô mũi 1 bị sai",
        due_at=datetime.now(UTC) + timedelta(days=7),
    )
    session.add(feedback)
    session.flush()
    return feedback


def test_a_correction_names_its_feedback(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Mai Văn Báo")
    other = add_person(session, org, "Mai Thị Khác", phone="0907777777")
    feedback = _feedback(session, org, person)
    session.commit()
    with pytest.raises(DomainError, match=r"^corrections\.feedback_other_person$"):
        correct(
            session,
            other.doses[0],
            dose_data(other, 1, lot="Z1"),
            org.staff,
            reason="x",
            feedback=feedback,
        )
    correction = correct(
        session,
        person.doses[0],
        dose_data(person, 1, lot="FK7777"),
        org.staff,
        reason="Theo phản ánh",
        feedback=feedback,
    )
    assert correction is not None
    assert correction.version.feedback_id == feedback.id
    assert feedback.status is FeedbackStatus.PROCESSING
    # Through the feedback service: the report's change of status is dated.
    assert feedback.updated_at == correction.version.at
    assert made_for(session, feedback) == [correction.version]


def test_stale_form_is_refused(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Lâm Văn Cũ")
    session.commit()
    with pytest.raises(DomainError, match=r"^records\.stale$"):
        correct(
            session,
            person,
            person_data(person, phone="0912222222"),
            org.staff,
            reason="x",
            expected_version=7,
        )


# --- verification of one person, now ----------------------------------------------------------


def test_verify_now_with_the_registry(session: Session, org: Seed, tmp_path: Path) -> None:
    good = add_person(session, org, "Nguyễn Văn Khớp", identity_number="079090000001")
    wrong_date = add_person(session, org, "Nguyễn Văn Lệch", identity_number="079090000002")
    unknown = add_person(session, org, "Nguyễn Văn Vắng", identity_number="079090000003")
    session.commit()
    people = [
        citizen(good),
        citizen(wrong_date, birth_date=date(1990, 6, 17)),
    ]
    with registry(tmp_path, people) as server:
        client = HttpPopulationRegistry(server.url, timeout=5)
        outcome = verify_person_now(session, good, client, org.staff)
        assert outcome.result is VerifyResult.VERIFIED
        assert good.verification_status is VerificationStatus.VERIFIED
        assert good.verified_at is not None

        outcome = verify_person_now(session, wrong_date, client, org.staff)
        assert outcome.result is VerifyResult.INVALID
        assert wrong_date.verification_status is VerificationStatus.MISMATCH
        assert wrong_date.verification_detail is not None
        assert wrong_date.verification_detail["fields"] == ["birth_date"]

        outcome = verify_person_now(session, unknown, client, org.staff)
        assert unknown.verification_status is VerificationStatus.MISMATCH
        assert unknown.verification_detail == {"fields": ["not_found"], "registry": {}}
        client.close()
        assert server.lookups.counts() == {
            "079090000001": 1,
            "079090000002": 1,
            "079090000003": 1,
        }
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "corrections.verify")
    ).all()
    assert len(events) == 3


def test_verify_now_format_rules_need_no_lookup(
    session: Session, org: Seed, tmp_path: Path
) -> None:
    person = add_person(
        session,
        org,
        "Phạm Văn Tỉnh",
        identity_number="099090000001",
        status=VerificationStatus.PENDING,
    )
    session.commit()
    with registry(tmp_path, []) as server:
        client = HttpPopulationRegistry(server.url, timeout=5)
        outcome = verify_person_now(session, person, client, org.staff)
        client.close()
        assert server.lookups.requests == 0
    assert outcome.result is VerifyResult.INVALID
    assert person.verification_status is VerificationStatus.WRONG_FORMAT
    assert person.verification_detail == {"rule": "province", "found": "099"}


def test_verify_now_registry_unavailable_stays_pending(session: Session, org: Seed) -> None:
    person = add_person(
        session,
        org,
        "Đinh Văn Đợi",
        identity_number="079090000004",
        status=VerificationStatus.MISMATCH,
    )
    session.commit()
    client = HttpPopulationRegistry("http://127.0.0.1:9", timeout=1, retries=0)
    outcome = verify_person_now(session, person, client, org.staff)
    client.close()
    assert outcome.result is VerifyResult.UNAVAILABLE
    assert outcome.reason == "connection"
    assert person.verification_status is VerificationStatus.PENDING
    assert person.verification_detail is None
    assert outcome.message_key == "corrections.verify_unavailable"


def test_verify_now_refused_key_stays_pending(session: Session, org: Seed, tmp_path: Path) -> None:
    person = add_person(session, org, "Đinh Văn Khóa", identity_number="079090000005")
    session.commit()
    with registry(tmp_path, [citizen(person)], api_key="right") as server:
        client = HttpPopulationRegistry(server.url, timeout=5, api_key="wrong")
        outcome = verify_person_now(session, person, client, org.staff)
        client.close()
    assert outcome.result is VerifyResult.FAILED
    assert outcome.reason == "refused"
    assert person.verification_status is VerificationStatus.PENDING


def test_one_correct_for_people_and_doses_refuses_mismatched_data(
    session: Session, org: Seed
) -> None:
    person = add_person(session, org, "Tạ Văn Một")
    session.commit()
    with pytest.raises(TypeError):
        correct(session, person, dose_data(person, 1, lot="X1"), org.staff, reason="x")
    with pytest.raises(TypeError):
        correct(session, person.doses[0], person_data(person), org.staff, reason="x")
    assert person.version == 1
