"""Citizen feedback ("Phản ánh thông tin tiêm chủng"): submit, follow, answer.

A citizen reports, without an account, that a field of their record or one of their doses is
wrong. The report is matched to a person and routed to the facility that administered the dose
they name (or, for a person field, the facility of their latest dose), which answers it in its
inbox. A report that matches nobody (or a person without doses) is kept unrouted, in the national
administrators' inbox; the citizen's answer is the same whether or not their details matched
(same page, same status, a tracking code, no facility named), so that the form tells a stranger
nothing about anyone. Reports go through status ``new`` → ``processing`` → ``resolved`` or
``rejected``, with a due date (``due_days`` after submission, 7 by default; overdue reports are
highlighted) and replies that the citizen reads on the public status page with the tracking
code and their phone number.

Abuse resistance without a third-party captcha (no script or cookie from another company on a
government page, and nothing that fails for citizens whose network blocks such services):

- a **time-based form token**: the form carries ``<issued-at>.<HMAC>`` signed with the app's
  secret; a submission sooner than ``min_seconds`` after the form was served (a script posting
  at once) or later than ``max_age`` (a replayed token) is refused. It needs no JavaScript,
  unlike a proof of work, which would also cost most on the cheapest phones;
- a **honeypot** field, hidden from people and filled in by naive bots;
- **rate limits stored in the database** (``kyso.platform.throttle``), so that they hold across
  workers and restarts: per address ``per_ip_hour`` / ``per_ip_day`` submissions, per identity
  (the identity number, or the phone number when there is none; stored hashed) and address
  ``per_subject_day``; per identity from anywhere, after ``per_subject_day`` a day only a
  delay of min(2^k s, 60 s) after the latest report, so that a stranger cannot lock the citizen
  out; failed status lookups are limited per address and per (tracking code, address), with
  the same bounded delay per tracking code;
- **size limits** on every field (and Flask's request size limit), CSRF on the form (Flask-WTF).

Matching is deliberately tolerant, because the field the citizen reports may be the one that
is wrong: a person matches when at least two of identity number, phone, birth date and name
agree, one of them being the identity number or the phone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from kyso.platform import throttle
from kyso.platform.auth.access import visible_facilities
from kyso.platform.auth.service import audit
from kyso.platform.errors import DomainError
from kyso.platform.i18n import DEFAULT_LANGUAGE
from kyso.platform.inputs import DateInvalid, is_number, parse_date
from kyso.platform.models import (
    Dose,
    Feedback,
    FeedbackReply,
    FeedbackStatus,
    Person,
    Role,
    User,
)
from kyso.platform.records import rules
from kyso.platform.records.names import name_key

PERSON_FIELDS: Final = ("full_name", "birth_date", "gender", "identity_number", "phone", "address")
DOSE_FIELDS: Final = ("dose_date", "dose_product", "dose_lot", "dose_facility")
OTHER_FIELDS: Final = ("dose_missing", "other")
FIELDS: Final = PERSON_FIELDS + DOSE_FIELDS + OTHER_FIELDS

NAME_MAX: Final = 120
MESSAGE_MIN: Final = 10
MESSAGE_MAX: Final = 2000
CORRECT_VALUE_MAX: Final = 200
REPLY_MAX: Final = 2000
CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U
CODE_LENGTH: Final = 8
INBOX_ROLES: Final = frozenset({Role.FACILITY_STAFF, Role.ADMINISTRATOR})
OPEN: Final = (FeedbackStatus.NEW, FeedbackStatus.PROCESSING)
CLOSED: Final = (FeedbackStatus.RESOLVED, FeedbackStatus.REJECTED)
SUBMIT: Final = "feedback"
STATUS: Final = "feedback-status"
_DIGITS: Final = re.compile(r"\D")
_CODE: Final = re.compile(r"[^A-Z0-9]")


@dataclass(frozen=True)
class Settings:
    """The knobs (app config ``FEEDBACK_*``); the defaults suit a national deployment."""

    due_days: int = 7
    min_seconds: int = 3
    max_age: timedelta = timedelta(hours=2)
    per_ip_hour: int = 30  # mobile carriers put many people behind one address (CGNAT)
    per_ip_day: int = 200
    per_subject_day: int = 3  # per (person, address); from anywhere only a bounded delay
    status_failures_per_ip: int = 10
    status_failures_per_code: int = 5  # per (tracking code, address); then a bounded delay
    status_window: timedelta = timedelta(minutes=15)

    def submit_policy(self) -> throttle.Policy:
        return throttle.Policy(
            scope=SUBMIT,
            limits=(
                throttle.Limit("pair", self.per_subject_day, timedelta(days=1)),
                throttle.Limit("address", self.per_ip_hour, timedelta(hours=1)),
                throttle.Limit("address", self.per_ip_day, timedelta(days=1)),
            ),
            subject_free=self.per_subject_day,
            subject_window=timedelta(days=1),
            messages=(
                ("pair", "feedback.too_many_for_person"),
                ("address", "feedback.too_many_from_address"),
                ("subject", "feedback.person_wait"),
            ),
            failures_only=False,
        )

    def status_policy(self) -> throttle.Policy:
        return throttle.Policy(
            scope=STATUS,
            limits=(
                throttle.Limit("pair", self.status_failures_per_code, self.status_window),
                throttle.Limit("address", self.status_failures_per_ip, self.status_window),
            ),
            subject_free=self.status_failures_per_code,
            subject_window=self.status_window,
            messages=(
                ("pair", "feedback.status_throttled"),
                ("address", "feedback.status_throttled"),
                ("subject", "feedback.status_wait"),
            ),
        )

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Settings:
        def number(key: str, default: int) -> int:
            value = config.get(key)
            try:
                return int(str(value)) if value not in (None, "") else default
            except ValueError:
                return default

        base = cls()
        return cls(
            due_days=max(1, number("FEEDBACK_DUE_DAYS", base.due_days)),
            min_seconds=max(0, number("FEEDBACK_MIN_SECONDS", base.min_seconds)),
            per_ip_hour=number("FEEDBACK_PER_IP_HOUR", base.per_ip_hour),
            per_ip_day=number("FEEDBACK_PER_IP_DAY", base.per_ip_day),
            per_subject_day=number("FEEDBACK_PER_SUBJECT_DAY", base.per_subject_day),
        )


# --- the form token ----------------------------------------------------------------------------


def _sign(secret: bytes, issued: int) -> str:
    mac = hmac.new(secret, f"kyso-feedback-form:{issued}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def issue_form_token(secret: bytes, now: datetime | None = None) -> str:
    issued = int((now or datetime.now(UTC)).timestamp())
    return f"{issued}.{_sign(secret, issued)}"


def check_form_token(
    secret: bytes, token: str, settings: Settings, now: datetime | None = None
) -> None:
    """Refuse a form posted too soon after it was served, too late, or with a forged token."""
    now = now or datetime.now(UTC)
    head, sep, mac = (token or "").partition(".")
    if not sep or not is_number(head, 12) or not hmac.compare_digest(mac, _sign(secret, int(head))):
        raise DomainError("feedback.form_invalid")
    age = now.timestamp() - int(head)
    if age < settings.min_seconds:
        raise DomainError("feedback.form_too_fast", seconds=settings.min_seconds)
    if age > settings.max_age.total_seconds():
        raise DomainError("feedback.form_expired")


# --- submitting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackForm:
    """What the citizen typed (raw)."""

    full_name: str
    birth_date: str
    phone: str
    identity_number: str
    field: str
    message: str
    dose_number: str = ""
    correct_value: str = ""
    honeypot: str = ""
    token: str = ""


@dataclass(frozen=True)
class CleanForm:
    full_name: str
    birth_date: date
    phone: str
    identity_number: str | None
    field: str
    message: str
    dose_number: int | None
    correct_value: str | None


class InvalidFeedback(DomainError):
    """One or more fields are wrong; ``problems`` maps each field to its DomainError."""

    def __init__(self, problems: dict[str, DomainError]) -> None:
        self.first = next(iter(problems.values()))
        super().__init__(self.first.key, **self.first.values)
        self.problems = problems

    def text(self, language: str = DEFAULT_LANGUAGE) -> str:
        return self.first.text(language)  # a date's problem names its field in the language


def clean(form: FeedbackForm, today: date | None = None) -> CleanForm:
    """The form checked field by field; ``InvalidFeedback`` lists every problem at once."""
    today = today or rules.today_in_vietnam()
    problems: dict[str, DomainError] = {}
    name = rules.clean_text(form.full_name[: NAME_MAX * 2]) or ""
    if not name:
        problems["full_name"] = DomainError("feedback.name_required")
    elif len(name) > NAME_MAX:
        problems["full_name"] = DomainError("feedback.name_too_long", limit=NAME_MAX)
    try:
        born = parse_date(form.birth_date[:40], "feedback.birth_date")
        if born is None or born > today or born < rules.EARLIEST_BIRTH_DATE:
            problems["birth_date"] = DomainError("feedback.birth_date_invalid")
    except DateInvalid as invalid:
        problems["birth_date"] = invalid
    phone = rules.clean_phone(form.phone[:30]) or ""
    if not re.fullmatch(r"0\d{9,10}", phone):
        problems["phone"] = DomainError("feedback.phone_invalid")
    number = re.sub(r"[\s.\-]", "", form.identity_number[:30]) or None
    if number is not None and not re.fullmatch(r"\d{9}|\d{12}", number):
        problems["identity_number"] = DomainError("feedback.identity_invalid")
    if form.field not in FIELDS:
        problems["field"] = DomainError("feedback.field_required")
    dose_number: int | None = None
    raw_dose = form.dose_number.strip()
    if raw_dose:
        if is_number(raw_dose) and 1 <= int(raw_dose) <= rules.MAX_DOSES:
            dose_number = int(raw_dose)
        else:
            problems["dose_number"] = DomainError("feedback.dose_invalid", max=rules.MAX_DOSES)
    elif form.field in DOSE_FIELDS:
        problems["dose_number"] = DomainError("feedback.dose_required")
    message = (form.message or "").strip()
    if len(message) < MESSAGE_MIN:
        problems["message"] = DomainError("feedback.message_too_short", min=MESSAGE_MIN)
    elif len(message) > MESSAGE_MAX:
        problems["message"] = DomainError("feedback.message_too_long", limit=MESSAGE_MAX)
    correct = rules.clean_text(form.correct_value)
    if correct is not None and len(correct) > CORRECT_VALUE_MAX:
        problems["correct_value"] = DomainError(
            "feedback.correct_value_too_long", limit=CORRECT_VALUE_MAX
        )
    if problems:
        raise InvalidFeedback(problems)
    assert born is not None
    return CleanForm(name, born, phone, number, form.field, message, dose_number, correct)


def match_person(session: Session, form: CleanForm) -> Person | None:
    """The person the citizen is, by at least two agreeing factors (one a number)."""
    by_number = [Person.phone == form.phone]
    if form.identity_number:
        by_number.append(Person.identity_number == form.identity_number)
    candidates = session.scalars(select(Person).where(or_(*by_number)).limit(50)).all()
    key = name_key(form.full_name)
    best: tuple[int, int] | None = None
    found: Person | None = None
    for person in candidates:
        score = sum(
            (
                bool(form.identity_number) and person.identity_number == form.identity_number,
                person.phone == form.phone,
                person.birth_date == form.birth_date,
                person.name_key == key,
            )
        )
        if score >= 2 and (best is None or (score, -person.id) > best):
            best, found = (score, -person.id), person
    return found


def route(person: Person | None, dose_number: int | None) -> tuple[int | None, Dose | None]:
    """The facility that answers: the named dose's, else the person's latest dose's; none for
    nobody or a person without doses (the report then waits for a national administrator)."""
    if person is None or not person.doses:
        return None, None
    if dose_number is not None:
        dose = next((d for d in person.doses if d.dose_number == dose_number), None)
        if dose is not None:
            return dose.facility_id, dose
    latest = max(person.doses, key=lambda d: (d.vaccinated_on, d.dose_number))
    return latest.facility_id, None


def new_tracking_code(session: Session) -> str:
    while True:
        code = "PA" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if session.scalar(select(Feedback.id).where(Feedback.tracking_code == code)) is None:
            return code


def submit(
    session: Session,
    form: FeedbackForm,
    *,
    ip: str,
    secret: bytes,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> Feedback:
    """Record a citizen's report; DomainError (``feedback.*``) when refused.

    The attempt is recorded (for the rate limits) once the form passed the token and size
    checks; the caller commits also when this raises.
    """
    settings = settings or Settings()
    now = now or datetime.now(UTC)
    ip = (ip or "?")[:64]
    check_form_token(secret, form.token, settings, now)
    if form.honeypot.strip():
        raise DomainError("feedback.form_invalid")
    cleaned = clean(form, today=now.astimezone(rules.VIETNAM).date())
    # Counted once the form passed the token and field checks (refused forms are not).
    attempt = throttle.attempt(
        session,
        settings.submit_policy(),
        subject=cleaned.identity_number or cleaned.phone,
        ip=ip,
        now=now,
    )
    # Matched or not, the same work and the same answer: a tracking code, no facility named.
    person = match_person(session, cleaned)
    facility_id, dose = route(person, cleaned.dose_number)
    feedback = Feedback(
        tracking_code=new_tracking_code(session),
        status=FeedbackStatus.NEW,
        facility_id=facility_id,
        person_id=person.id if person else None,
        dose_id=dose.id if dose else None,
        full_name=cleaned.full_name,
        birth_date=cleaned.birth_date,
        phone=cleaned.phone,
        identity_number=cleaned.identity_number,
        dose_number=cleaned.dose_number,
        field=cleaned.field,
        correct_value=cleaned.correct_value,
        message=cleaned.message,
        ip=ip,
        created_at=now,
        updated_at=now,
        due_at=now + timedelta(days=settings.due_days),
    )
    session.add(feedback)
    attempt.succeeded()
    audit(
        session,
        "feedback.submit",
        None,
        target=f"feedback:{feedback.id}",
        ip=ip,
        code=feedback.tracking_code,
        facility=facility_id,
        matched=person is not None,
        field=cleaned.field,
    )
    return feedback


# --- the citizen's status page -----------------------------------------------------------------


def find_for_citizen(
    session: Session,
    code: str,
    phone: str,
    *,
    ip: str,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> Feedback:
    """The report with this tracking code and phone; failures are throttled per address and
    per (code, address), with a bounded delay per code."""
    settings = settings or Settings()
    now = now or datetime.now(UTC)
    ip = (ip or "?")[:64]
    wanted = _CODE.sub("", code.upper())[:16]
    attempt = throttle.attempt(session, settings.status_policy(), subject=wanted, ip=ip, now=now)
    cleaned_phone = rules.clean_phone(phone[:30]) or ""
    feedback = None
    if wanted and cleaned_phone:
        feedback = session.scalar(
            select(Feedback).where(
                Feedback.tracking_code == wanted, Feedback.phone == cleaned_phone
            )
        )
    if feedback is None:
        raise DomainError("feedback.status_not_found")
    attempt.succeeded()
    return feedback


# --- the facility's inbox ----------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def is_overdue(feedback: Feedback, now: datetime | None = None) -> bool:
    now = now or datetime.now(UTC)
    return feedback.status in OPEN and _aware(feedback.due_at) < now


def _scope(user: User) -> ColumnElement[bool]:
    """The reports a user answers: their facilities'; national administrators also the unrouted
    ones (matched nobody, or a person without doses)."""
    routed = Feedback.facility_id.in_(visible_facilities(user))
    if user.role is Role.ADMINISTRATOR and user.province_id is None:
        return or_(routed, Feedback.facility_id.is_(None))
    return routed


def _require_inbox_role(user: User) -> None:
    if user.role not in INBOX_ROLES or not user.active:
        raise DomainError("feedback.not_allowed")


@dataclass(frozen=True)
class InboxCursor:
    due_at: datetime
    id: int

    def encode(self) -> str:
        return f"{self.id}:{int(_aware(self.due_at).timestamp() * 1_000_000)}"

    @classmethod
    def decode(cls, text: str | None) -> InboxCursor | None:
        head, sep, tail = (text or "").partition(":")
        if not sep or not is_number(head) or not is_number(tail, 17):
            return None
        return cls(datetime.fromtimestamp(int(tail) / 1_000_000, UTC), int(head))


@dataclass(frozen=True)
class Inbox:
    items: tuple[Feedback, ...]
    counts: dict[FeedbackStatus, int]
    overdue: int
    next_cursor: InboxCursor | None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def inbox(
    session: Session,
    user: User,
    *,
    status: FeedbackStatus | None = None,
    overdue_only: bool = False,
    after: InboxCursor | None = None,
    size: int = 50,
    now: datetime | None = None,
) -> Inbox:
    """The reports of the user's facilities, earliest due first (keyset pages)."""
    _require_inbox_role(user)
    now = now or datetime.now(UTC)
    scope = _scope(user)
    statement = select(Feedback).where(scope)
    if status is not None:
        statement = statement.where(Feedback.status == status)
    elif overdue_only:
        statement = statement.where(Feedback.status.in_(OPEN), Feedback.due_at < now)
    if after is not None:
        statement = statement.where(
            tuple_(Feedback.due_at, Feedback.id) > tuple_(literal(after.due_at), literal(after.id))
        )
    rows = list(session.scalars(statement.order_by(Feedback.due_at, Feedback.id).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    counts = dict.fromkeys(FeedbackStatus, 0)
    for value, count in session.execute(
        select(Feedback.status, func.count()).where(scope).group_by(Feedback.status)
    ):
        counts[FeedbackStatus(value)] = int(count)
    overdue = int(
        session.scalar(
            select(func.count())
            .select_from(Feedback)
            .where(scope, Feedback.status.in_(OPEN), Feedback.due_at < now)
        )
        or 0
    )
    cursor = InboxCursor(rows[-1].due_at, rows[-1].id) if more and rows else None
    return Inbox(tuple(rows), counts, overdue, cursor, now)


def get_for_user(session: Session, user: User, feedback_id: int) -> Feedback:
    _require_inbox_role(user)
    feedback = session.scalar(select(Feedback).where(Feedback.id == feedback_id, _scope(user)))
    if feedback is None:
        raise DomainError("feedback.not_found")
    return feedback


_TRANSITIONS: Final = {
    FeedbackStatus.NEW: {
        FeedbackStatus.PROCESSING,
        FeedbackStatus.RESOLVED,
        FeedbackStatus.REJECTED,
    },
    FeedbackStatus.PROCESSING: {
        FeedbackStatus.PROCESSING,
        FeedbackStatus.RESOLVED,
        FeedbackStatus.REJECTED,
    },
}


def next_statuses(feedback: Feedback) -> list[FeedbackStatus]:
    """The statuses a reply may give this report now (none once it is closed), in order."""
    allowed = _TRANSITIONS.get(feedback.status, set())
    return [status for status in FeedbackStatus if status in allowed]


def start_processing(session: Session, feedback: Feedback, now: datetime | None = None) -> None:
    """A new report is being worked on (a correction names it): ``new`` → ``processing``.

    Any other status is left as it is: a report already in processing stays so, and a closed
    one is not reopened by a later correction.
    """
    if feedback.status is not FeedbackStatus.NEW:
        return
    feedback.status = FeedbackStatus.PROCESSING
    feedback.updated_at = now or datetime.now(UTC)
    session.flush()


def answer(
    session: Session,
    feedback: Feedback,
    user: User,
    *,
    body: str,
    status: FeedbackStatus,
    ip: str | None = None,
    now: datetime | None = None,
) -> FeedbackReply:
    """A reply the citizen will read, and the report's new status.

    Closed reports (resolved, rejected) take no more replies; every reply needs a text, since
    it is what the citizen sees (a rejection must say why).
    """
    _require_inbox_role(user)
    now = now or datetime.now(UTC)
    if feedback.status in CLOSED:
        raise DomainError("feedback.closed")
    if status not in _TRANSITIONS.get(feedback.status, set()):
        raise DomainError("feedback.bad_status")
    text = (body or "").strip()
    if not text:
        raise DomainError("feedback.reply_required")
    if len(text) > REPLY_MAX:
        raise DomainError("feedback.reply_too_long", limit=REPLY_MAX)
    reply = FeedbackReply(
        feedback_id=feedback.id, author_id=user.id, body=text, status=status, created_at=now
    )
    session.add(reply)
    feedback.status = status
    feedback.updated_at = now
    if status in CLOSED:
        feedback.closed_at = now
    session.flush()
    session.refresh(feedback, ["replies"])
    audit(
        session,
        "feedback.answer",
        user,
        target=f"feedback:{feedback.id}",
        ip=ip,
        code=feedback.tracking_code,
        status=status.value,
    )
    return reply
