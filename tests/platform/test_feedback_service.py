"""Citizen feedback: the form token, validation, matching, routing, rate limits, tracking,
the inbox (scope, due dates, overdue) and answers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.platform_seed import Seed, add_person, add_province

from kyso.platform.errors import DomainError
from kyso.platform.feedback import service
from kyso.platform.feedback.service import (
    FeedbackForm,
    InvalidFeedback,
    Settings,
    answer,
    find_for_citizen,
    inbox,
    issue_form_token,
    submit,
)
from kyso.platform.models import (
    AuditEvent,
    Dose,
    Feedback,
    FeedbackStatus,
    ThrottleAttempt,
)

SECRET = b"test-secret"
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SETTINGS = Settings()


def form(**changes: str) -> FeedbackForm:
    base = FeedbackForm(
        full_name="Nguyễn Văn Phản",
        birth_date="17/05/1990",
        phone="0901234567",
        identity_number="079090123456",
        field="dose_lot",
        dose_number="2",
        correct_value="FK2002",
        message="Số lô mũi 2 trên chứng nhận bị sai.",
        token=issue_form_token(SECRET, NOW - timedelta(seconds=30)),
    )
    return replace(base, **changes)


def send(session: Session, data: FeedbackForm, ip: str = "192.0.2.10", **kw: object) -> Feedback:
    return submit(session, data, ip=ip, secret=SECRET, now=NOW, **kw)  # type: ignore[arg-type]


def test_submit_routes_to_the_dose_facility(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn Phản", doses=1)
    session.add(
        Dose(
            person_id=person.id,
            product_id=org.pfizer.id,
            lot="FK2001",
            vaccinated_on=date(2022, 4, 1),
            dose_number=2,
            facility_id=org.mobile_team.id,
            created_by_facility_id=org.mobile_team.id,
        )
    )
    session.commit()
    session.refresh(person)
    feedback = send(session, form())
    assert feedback.facility_id == org.mobile_team.id  # where dose 2 was given
    assert feedback.dose_id == person.doses[1].id
    assert feedback.person_id == person.id
    assert feedback.status is FeedbackStatus.NEW
    assert feedback.due_at == NOW + timedelta(days=7)
    assert len(feedback.tracking_code) == 10
    assert feedback.tracking_code.startswith("PA")
    # A person field goes to the facility of the latest dose.
    other = send(session, form(field="full_name", dose_number="", identity_number=""))
    assert other.facility_id == org.mobile_team.id
    assert other.dose_id is None
    assert other.tracking_code != feedback.tracking_code
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "feedback.submit")
    ).first()
    assert event is not None
    assert event.ip == "192.0.2.10"


def test_due_days_are_configurable(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    settings = Settings.from_config({"FEEDBACK_DUE_DAYS": "3"})
    feedback = send(session, form(), settings=settings)
    assert feedback.due_at == NOW + timedelta(days=3)
    assert Settings.from_config({}).due_days == 7


def test_matching_tolerates_the_wrong_field(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn Phản")
    add_person(session, org, "Nguyễn Văn Khác", phone="0909999999", identity_number="079090999999")
    session.commit()
    # The record's name is what is wrong: number and birth date still match.
    found = send(session, form(full_name="Nguyễn Văn Phán", field="full_name", dose_number=""))
    assert found.person_id == person.id
    # Without an identity number: phone and birth date.
    found = send(session, form(identity_number="", field="other", dose_number=""))
    assert found.person_id == person.id
    # One factor alone is not enough: the report is kept unrouted (for a national administrator),
    # and the citizen is told the same as when it matched.
    unmatched = send(
        session,
        form(full_name="Ai Đó", birth_date="01/01/1980", identity_number=""),
        ip="192.0.2.99",
    )
    assert unmatched.person_id is None
    assert unmatched.facility_id is None
    assert unmatched.tracking_code.startswith("PA")


def test_every_field_problem_is_reported(session: Session, org: Seed) -> None:
    with pytest.raises(InvalidFeedback) as raised:
        send(
            session,
            form(
                full_name=" ",
                birth_date="31/02/1990",
                phone="12345",
                identity_number="07909012345",
                field="nonsense",
                dose_number="7",
                message="short",
                correct_value="x" * 201,
            ),
        )
    assert set(raised.value.problems) == {
        "full_name",
        "birth_date",
        "phone",
        "identity_number",
        "field",
        "dose_number",
        "message",
        "correct_value",
    }
    with pytest.raises(InvalidFeedback) as raised:
        send(session, form(message="x" * 2001, dose_number=""))
    assert set(raised.value.problems) == {"message", "dose_number"}  # a dose field needs a dose
    # Nothing was counted: the rate limits count real submissions.
    assert session.scalar(select(func.count()).select_from(ThrottleAttempt)) == 0


@pytest.mark.parametrize(
    ("token", "key"),
    [
        (lambda: issue_form_token(SECRET, NOW - timedelta(seconds=1)), "feedback.form_too_fast"),
        (lambda: issue_form_token(SECRET, NOW - timedelta(hours=3)), "feedback.form_expired"),
        (lambda: issue_form_token(b"another", NOW - timedelta(minutes=1)), "feedback.form_invalid"),
        (lambda: "garbage", "feedback.form_invalid"),
        (lambda: "", "feedback.form_invalid"),
    ],
)
def test_the_form_token(session: Session, org: Seed, token: object, key: str) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    with pytest.raises(DomainError) as raised:
        send(session, form(token=token()))  # type: ignore[operator]
    assert raised.value.key == key


def test_the_honeypot(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    with pytest.raises(DomainError, match=r"^feedback\.form_invalid$"):
        send(session, form(honeypot="http://spam.example"))


def test_rate_limits_per_address_and_per_person(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    for i in range(8):
        add_person(
            session,
            org,
            f"Người Thứ {i}",
            phone=f"09100000{i:02d}",
            identity_number=f"0790901000{i:02d}",
        )
    session.commit()
    settings = Settings(per_ip_hour=5, per_ip_day=20, per_subject_day=3)
    # Per person from anywhere: after three a day, only a bounded delay (no lock-out).
    for i in range(3):
        send(session, form(), ip=f"198.51.100.{i}", settings=settings)
    with pytest.raises(DomainError, match=r"^feedback\.person_wait$"):
        send(session, form(), ip="198.51.100.50", settings=settings)
    assert submit(
        session,
        form(),
        ip="198.51.100.50",
        secret=SECRET,
        settings=settings,
        now=NOW + timedelta(seconds=61),
    ).id
    # Per person and address: three a day.
    for minutes in (2, 4):
        submit(
            session,
            form(),
            ip="198.51.100.0",
            secret=SECRET,
            settings=settings,
            now=NOW + timedelta(minutes=minutes),
        )
    with pytest.raises(DomainError, match=r"^feedback\.too_many_for_person$"):
        submit(
            session,
            form(),
            ip="198.51.100.0",
            secret=SECRET,
            settings=settings,
            now=NOW + timedelta(minutes=6),
        )
    # Per address: five an hour, whoever they are about.
    for i in range(5):
        send(
            session,
            form(
                full_name=f"Người Thứ {i}",
                phone=f"09100000{i:02d}",
                identity_number=f"0790901000{i:02d}",
            ),
            ip="203.0.113.7",
            settings=settings,
        )
    with pytest.raises(DomainError, match=r"^feedback\.too_many_from_address$"):
        send(
            session,
            form(full_name="Người Thứ 6", phone="0910000006", identity_number="079090100006"),
            ip="203.0.113.7",
            settings=settings,
        )
    # An hour later the address may send again.
    later = submit(
        session,
        form(
            full_name="Người Thứ 6",
            phone="0910000006",
            identity_number="079090100006",
            token=issue_form_token(SECRET, NOW + timedelta(minutes=61)),
        ),
        ip="203.0.113.7",
        secret=SECRET,
        settings=settings,
        now=NOW + timedelta(minutes=62),
    )
    assert later.id
    # The attempts store a hash, never the number.
    subjects = session.scalars(select(ThrottleAttempt.subject)).all()
    assert all(len(s) == 64 and "079090" not in s for s in subjects)


def test_citizen_status_lookup(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    feedback = send(session, form())
    found = find_for_citizen(
        session, feedback.tracking_code.lower(), "+84 901 234 567", ip="192.0.2.1", now=NOW
    )
    assert found.id == feedback.id
    with pytest.raises(DomainError, match=r"^feedback\.status_not_found$"):
        find_for_citizen(session, feedback.tracking_code, "0900000000", ip="192.0.2.1", now=NOW)
    settings = Settings(status_failures_per_ip=3)
    for _ in range(2):
        with pytest.raises(DomainError, match=r"^feedback\.status_not_found$"):
            find_for_citizen(session, "PAXXXXXXXX", "0901234567", ip="192.0.2.1", now=NOW)
    with pytest.raises(DomainError, match=r"^feedback\.status_throttled$"):
        find_for_citizen(
            session,
            feedback.tracking_code,
            "0901234567",
            ip="192.0.2.1",
            now=NOW,
            settings=settings,
        )
    # Another address is not affected; the window passes.
    assert find_for_citizen(
        session, feedback.tracking_code, "0901234567", ip="192.0.2.2", now=NOW, settings=settings
    )
    assert find_for_citizen(
        session,
        feedback.tracking_code,
        "0901234567",
        ip="192.0.2.1",
        now=NOW + timedelta(minutes=16),
        settings=settings,
    )


def test_inbox_scope_order_and_overdue(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    hanoi = add_province(session)
    add_person(
        session,
        org,
        "Đặng Văn Hà",
        facility=hanoi.station,
        phone="0902000002",
        identity_number="001090000002",
    )
    session.commit()
    early = send(session, form())
    late = submit(
        session,
        form(token=issue_form_token(SECRET, NOW + timedelta(days=3, seconds=-30))),
        ip="192.0.2.3",
        secret=SECRET,
        now=NOW + timedelta(days=3),
    )
    far = send(
        session,
        form(full_name="Đặng Văn Hà", phone="0902000002", identity_number="001090000002"),
        ip="192.0.2.4",
    )
    assert far.facility_id == hanoi.station.id
    when = NOW + timedelta(days=8)  # the first is overdue, the second not yet
    box = inbox(session, org.staff, now=when)
    assert [f.id for f in box.items] == [early.id, late.id]
    assert box.overdue == 1
    assert service.is_overdue(early, when)
    assert not service.is_overdue(late, when)
    assert box.counts[FeedbackStatus.NEW] == 2
    assert [f.id for f in inbox(session, org.staff, overdue_only=True, now=when).items] == [
        early.id
    ]
    assert [f.id for f in inbox(session, hanoi.staff, now=when).items] == [far.id]
    assert len(inbox(session, org.admin, now=when).items) == 3
    # Keyset pages.
    first = inbox(session, org.admin, size=2, now=when)
    assert first.next_cursor is not None
    rest = inbox(session, org.admin, size=2, after=first.next_cursor, now=when)
    # Earliest due first: early and far were sent on the same day, late three days after.
    assert [f.id for f in first.items + rest.items] == [early.id, far.id, late.id]
    with pytest.raises(DomainError, match=r"^feedback\.not_allowed$"):
        inbox(session, org.officer)
    with pytest.raises(DomainError, match=r"^feedback\.not_found$"):
        service.get_for_user(session, hanoi.staff, early.id)
    # Answered (closed) feedback is never overdue.
    answer(session, early, org.staff, body="Đã sửa số lô.", status=FeedbackStatus.RESOLVED)
    assert not service.is_overdue(early, when)


def test_answers_and_status_changes(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    feedback = send(session, form())
    with pytest.raises(DomainError, match=r"^feedback\.reply_required$"):
        answer(session, feedback, org.staff, body="  ", status=FeedbackStatus.REJECTED)
    with pytest.raises(DomainError, match=r"^feedback\.bad_status$"):
        answer(session, feedback, org.staff, body="x", status=FeedbackStatus.NEW)
    answer(
        session,
        feedback,
        org.staff,
        body="Đang kiểm tra sổ tiêm.",
        status=FeedbackStatus.PROCESSING,
    )
    answer(session, feedback, org.staff, body="Đã sửa, sẽ ký lại.", status=FeedbackStatus.RESOLVED)
    assert feedback.status is FeedbackStatus.RESOLVED
    assert feedback.closed_at is not None
    assert [r.body for r in feedback.replies] == ["Đang kiểm tra sổ tiêm.", "Đã sửa, sẽ ký lại."]
    with pytest.raises(DomainError, match=r"^feedback\.closed$"):
        answer(session, feedback, org.staff, body="Thêm", status=FeedbackStatus.PROCESSING)
    with pytest.raises(DomainError, match=r"^feedback\.not_allowed$"):
        answer(session, feedback, org.officer, body="x", status=FeedbackStatus.PROCESSING)
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.action == "feedback.answer")
    ).all()
    assert len(actions) == 2


def test_the_statuses_a_reply_may_give_come_from_the_state_machine(
    session: Session, org: Seed
) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    feedback = send(session, form())
    open_statuses = [FeedbackStatus.PROCESSING, FeedbackStatus.RESOLVED, FeedbackStatus.REJECTED]
    assert service.next_statuses(feedback) == open_statuses
    answer(session, feedback, org.staff, body="Không đúng.", status=FeedbackStatus.REJECTED)
    assert service.next_statuses(feedback) == []  # closed: the page offers no reply


def test_a_correction_starts_processing_only_a_new_report(session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn Phản")
    session.commit()
    feedback = send(session, form())
    later = NOW + timedelta(hours=2)
    service.start_processing(session, feedback, later)
    assert feedback.status is FeedbackStatus.PROCESSING
    assert feedback.updated_at == later
    answer(session, feedback, org.staff, body="Đã sửa.", status=FeedbackStatus.RESOLVED)
    service.start_processing(session, feedback, later + timedelta(hours=1))
    assert feedback.status is FeedbackStatus.RESOLVED  # a closed report is not reopened
