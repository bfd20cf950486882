"""Correcting a record: a new version, the old values kept, signatures and passports superseded.

The records service (``kyso.platform.records.service``) checks the edit, moves the versions on
(a person edit bumps the person's and all their doses' versions, a dose edit the dose's) and
sends the person back to verification when an identity field changed. Around it, a correction:

- keeps the previous values in ``record_versions`` with who, when, why and the feedback that
  asked for it;
- marks every earlier signature of the affected doses superseded (``superseded_at``; never
  deleted): the dose is unsigned in its current version, so it is back on the signing page as
  "to be signed again";
- marks the person's current passport superseded (``supersede_for_person``);
- may re-verify the person at once against the population registry (``verify_person_now``):
  one lookup, synchronously, with a clear outcome; when the registry does not answer the
  person stays ``pending`` and the verification job takes them later.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kyso.platform.auth.service import audit
from kyso.platform.errors import DomainError
from kyso.platform.feedback import service as feedback_service
from kyso.platform.models import (
    CorrectionRequest,
    CorrectionRequestStatus,
    Dose,
    DoseSignature,
    Facility,
    Feedback,
    Gender,
    Person,
    RecordVersion,
    Role,
    User,
    VerificationStatus,
)
from kyso.platform.passport.issuance import supersede_for_person
from kyso.platform.records.rules import InvalidRecord
from kyso.platform.records.service import (
    KEPT_BY_OTHERS,
    DoseData,
    PersonData,
    check_person_data,
    foreign_signing_units,
    keeps_person,
    may_record_at,
    own_doses,
    update_dose,
    update_person,
)
from kyso.platform.registry.client import (
    PopulationRegistry,
    RegistryError,
    RegistryProtocolError,
    RegistryRefused,
    RegistryUnavailable,
)
from kyso.platform.registry.identity import check_identity, normalise
from kyso.platform.registry.service import compare_with_registry, mark_for_reverification
from kyso.platform.stats import summary  # noqa: F401 - its flush listener keeps the statistics' summary

REASON_MAX = 500

PERSON_FIELDS = (
    "full_name",
    "birth_date",
    "gender",
    "identity_number",
    "phone",
    "address",
    "area_id",
)
DOSE_FIELDS = ("dose_number", "vaccinated_on", "product_id", "lot", "facility_id")


@dataclass(frozen=True)
class Correction:
    """What one correction did."""

    version: RecordVersion
    superseded_signatures: tuple[int, ...]
    superseded_passports: tuple[int, ...]
    reverify: bool  # an identity field changed: the person is back to pending


def _json_value(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def snapshot(record: Person | Dose) -> dict[str, Any]:
    """The record's correctable values, as JSON (kept in ``record_versions``)."""
    fields = PERSON_FIELDS if isinstance(record, Person) else DOSE_FIELDS
    return {name: _json_value(getattr(record, name)) for name in fields}


def _clean_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise DomainError("corrections.reason_required")
    if len(text) > REASON_MAX:
        raise DomainError("corrections.reason_too_long", limit=REASON_MAX)
    return text


def _check_feedback(feedback: Feedback | None, person: Person) -> None:
    if feedback is not None and feedback.person_id != person.id:
        raise DomainError("corrections.feedback_other_person", code=feedback.tracking_code)


def _supersede_signatures(session: Session, doses: list[Dose], now: datetime) -> tuple[int, ...]:
    """Mark every signature of an older version of these doses superseded (kept forever)."""
    ids: list[int] = []
    for dose in doses:
        ids += session.scalars(
            select(DoseSignature.id).where(
                DoseSignature.dose_id == dose.id,
                DoseSignature.superseded_at.is_(None),
                DoseSignature.dose_version != dose.version,
            )
        )
    if ids:
        session.execute(
            update(DoseSignature).where(DoseSignature.id.in_(ids)).values(superseded_at=now)
        )
    return tuple(sorted(ids))


def _finish(
    session: Session,
    *,
    kind: str,
    person: Person,
    dose: Dose | None,
    doses: list[Dose],
    before: dict[str, Any],
    after: dict[str, Any],
    version_before: int,
    version_after: int,
    reason: str,
    feedback: Feedback | None,
    user: User | None,
    ip: str | None,
    now: datetime,
) -> Correction:
    fields = [name for name in before if before[name] != after[name]]
    signatures = _supersede_signatures(session, doses, now)
    passports = supersede_for_person(
        session, person.id, f"correction: {reason}", by=user, now=now
    ).superseded
    version = RecordVersion(
        kind=kind,
        person_id=person.id,
        dose_id=dose.id if dose else None,
        version_before=version_before,
        version_after=version_after,
        fields=fields,
        before=before,
        after=after,
        reason=reason,
        feedback_id=feedback.id if feedback else None,
        user_id=user.id if user else None,
        at=now,
        superseded_signatures=list(signatures),
        superseded_passports=list(passports),
    )
    session.add(version)
    if feedback is not None:
        feedback_service.start_processing(session, feedback, now)
    session.flush()
    audit(
        session,
        f"corrections.{kind}",
        user,
        target=f"dose:{dose.id}" if dose else f"person:{person.id}",
        ip=ip,
        person=person.id,
        fields=fields,
        version=version_after,
        feedback=feedback.tracking_code if feedback else None,
        superseded_signatures=list(signatures),
        superseded_passports=list(passports),
    )
    return Correction(
        version,
        signatures,
        tuple(passports),
        person.verification_status is VerificationStatus.PENDING,
    )


def correct(
    session: Session,
    record: Person | Dose,
    data: PersonData | DoseData,
    user: User | None,
    *,
    reason: str,
    feedback: Feedback | None = None,
    expected_version: int | None = None,
    ip: str | None = None,
    now: datetime | None = None,
    today: date | None = None,
    consented: frozenset[int] = frozenset(),
) -> Correction | None:
    """Correct a person's or a dose's data; None when nothing changed (no version, no history).

    A person edit is refused (``records.signed_elsewhere``) when it would supersede the
    signature of a signing unit outside the user's scope that did not agree (``consented``):
    ``submit_person_correction`` makes such a change a request to that unit instead.
    """
    reason = _clean_reason(reason)
    person = record if isinstance(record, Person) else record.person
    _check_feedback(feedback, person)
    now = now or datetime.now(UTC)
    before = snapshot(record)
    version_before = record.version
    if isinstance(record, Person):
        if not isinstance(data, PersonData):
            raise TypeError("a person is corrected with PersonData")
        update_person(
            session,
            record,
            data,
            user,
            expected_version=expected_version,
            ip=ip,
            today=today,
            consented=consented,
        )
        dose, doses = None, list(record.doses)
    else:
        if not isinstance(data, DoseData):
            raise TypeError("a dose is corrected with DoseData")
        update_dose(
            session, record, data, user, expected_version=expected_version, ip=ip, today=today
        )
        dose, doses = record, [record]
    if record.version == version_before:
        return None
    return _finish(
        session,
        kind="person" if dose is None else "dose",
        person=person,
        dose=dose,
        doses=doses,
        before=before,
        after=snapshot(record),
        version_before=version_before,
        version_after=record.version,
        reason=reason,
        feedback=feedback,
        user=user,
        ip=ip,
        now=now,
    )


def history(session: Session, person_id: int) -> list[RecordVersion]:
    """The person's corrections, the latest first."""
    return list(
        session.scalars(
            select(RecordVersion)
            .where(RecordVersion.person_id == person_id)
            .order_by(RecordVersion.id.desc())
        )
    )


def made_for(session: Session, feedback: Feedback) -> list[RecordVersion]:
    """The corrections made on behalf of this feedback report, the oldest first."""
    return list(
        session.scalars(
            select(RecordVersion)
            .where(RecordVersion.feedback_id == feedback.id)
            .order_by(RecordVersion.id)
        )
    )


def visible_history(session: Session, user: User | None, person: Person) -> list[RecordVersion]:
    """The corrections this user may read: all of them for the unit that keeps the person
    (``keeps_person``), else only those of the user's own doses (another unit's reasons and
    fields are not theirs to read)."""
    versions = history(session, person.id)
    if keeps_person(session, user, person):
        return versions
    own = {dose.id for dose in own_doses(session, user, person)}
    return [v for v in versions if v.dose_id is not None and v.dose_id in own]


# --- verification of one person, now ---------------------------------------------------------


class VerifyResult(enum.StrEnum):
    VERIFIED = "verified"
    INVALID = "invalid"  # no number, old CMND, wrong format, or the registry disagrees
    UNAVAILABLE = "unavailable"  # the registry did not answer: stays pending
    FAILED = "failed"  # the registry refused our key or did not speak the protocol


@dataclass(frozen=True)
class VerifyOutcome:
    result: VerifyResult
    status: VerificationStatus
    detail: dict[str, Any] | None
    reason: str | None = None  # for UNAVAILABLE / FAILED: what the registry client said

    @property
    def message_key(self) -> str:
        return f"corrections.verify_{self.result.value}"


def verify_person_now(
    session: Session,
    person: Person,
    registry: PopulationRegistry,
    user: User | None,
    *,
    ip: str | None = None,
    now: datetime | None = None,
) -> VerifyOutcome:
    """Check one person against the format rules and the registry, synchronously.

    The same rules as the verification job (``check_identity``, ``compare_with_registry``); a
    person is never marked verified without the registry's word. When the registry cannot
    answer, the person is left ``pending`` (the job will take them) and the outcome says so.
    The caller commits.
    """
    now = now or datetime.now(UTC)
    check = check_identity(person.identity_number, person.birth_date, person.gender)
    outcome: VerifyOutcome
    if check.status is not None:
        outcome = VerifyOutcome(VerifyResult.INVALID, check.status, check.detail)
    else:
        number = str(normalise(person.identity_number))
        try:
            answers = registry.lookup([number])
            if number not in answers:
                raise RegistryProtocolError("the registry did not answer for the number")
        except RegistryUnavailable as exc:
            outcome = VerifyOutcome(
                VerifyResult.UNAVAILABLE, VerificationStatus.PENDING, None, exc.reason
            )
        except (RegistryRefused, RegistryProtocolError) as exc:
            reason = "refused" if isinstance(exc, RegistryRefused) else "protocol"
            outcome = VerifyOutcome(VerifyResult.FAILED, VerificationStatus.PENDING, None, reason)
        except RegistryError as exc:  # any other client failure: treat as unavailable
            outcome = VerifyOutcome(
                VerifyResult.UNAVAILABLE, VerificationStatus.PENDING, None, type(exc).__name__
            )
        else:
            status, detail = compare_with_registry(person, answers[number])
            result = (
                VerifyResult.VERIFIED
                if status is VerificationStatus.VERIFIED
                else VerifyResult.INVALID
            )
            outcome = VerifyOutcome(result, status, detail)
    if outcome.status is VerificationStatus.PENDING:
        mark_for_reverification(person)
    else:
        person.verification_status = outcome.status
        person.verification_detail = outcome.detail
        person.verified_at = now
    session.flush()
    audit(
        session,
        "corrections.verify",
        user,
        target=f"person:{person.id}",
        ip=ip,
        result=outcome.result.value,
        status=outcome.status.value,
        reason=outcome.reason,
    )
    return outcome


def may_correct(session: Session, user: User | None, person: Person) -> bool:
    """Whether ``user`` may open, correct and re-verify this person's record.

    The records service's rule: staff of a facility where one of the person's doses was given
    (or of a facility sharing its signing unit), administrators of its scope. A person without
    doses belongs to no facility: only a national administrator may correct them.
    """
    if user is None:
        return True
    if not person.doses:
        return user.role.value == "administrator" and user.province_id is None and user.active
    return any(may_record_at(session, user, dose.facility) for dose in person.doses)


def require_access(session: Session, user: User | None, person: Person) -> None:
    if not may_correct(session, user, person):
        raise DomainError("corrections.not_allowed")


# --- changes that would supersede another unit's signature: requests to that unit -------------


def _person_data(person: Person, changes: dict[str, Any]) -> PersonData:
    """The person's current data with ``changes`` (JSON values) applied."""
    values: dict[str, Any] = {name: getattr(person, name) for name in PERSON_FIELDS}
    for name, value in changes.items():
        if name == "birth_date":
            value = date.fromisoformat(value)
        elif name == "gender":
            value = Gender(value)
        values[name] = value
    return PersonData(**values)


def _own_units(session: Session, user: User | None, person: Person) -> set[int]:
    return {dose.facility.signing_unit_id for dose in own_doses(session, user, person)}


def submit_person_correction(
    session: Session,
    person: Person,
    data: PersonData,
    user: User | None,
    *,
    reason: str,
    feedback: Feedback | None = None,
    expected_version: int | None = None,
    ip: str | None = None,
    now: datetime | None = None,
    today: date | None = None,
) -> Correction | CorrectionRequest | None:
    """Correct a person's data, or ask the unit whose signature the change would supersede.

    A user who does not keep the person (``keeps_person``) does not see the data in
    ``KEPT_BY_OTHERS``: a field they leave empty is left as it is. When the change
    would supersede a current signature of a unit outside the user's scope, nothing is changed:
    a ``CorrectionRequest`` to that unit is stored (the unit with the lowest id first; each
    accepting unit passes it on to the next). None when nothing would change.
    """
    require_access(session, user, person)
    reason = _clean_reason(reason)
    _check_feedback(feedback, person)
    if expected_version is not None and expected_version != person.version:
        raise DomainError("records.stale")
    if not keeps_person(session, user, person):
        kept = {name: getattr(person, name) for name in KEPT_BY_OTHERS}
        data = PersonData(
            **{
                name: kept[name]
                if name in kept and getattr(data, name) in (None, "")
                else getattr(data, name)
                for name in PERSON_FIELDS
            }
        )
    foreign = foreign_signing_units(session, user, person)
    if not foreign:
        return correct(
            session,
            person,
            data,
            user,
            reason=reason,
            feedback=feedback,
            expected_version=expected_version,
            ip=ip,
            now=now,
            today=today,
        )
    data = data.cleaned()
    problems = check_person_data(session, person, data, today, user)
    if problems:
        raise InvalidRecord(problems)
    before = snapshot(person)
    after = {name: _json_value(getattr(data, name)) for name in PERSON_FIELDS}
    changes = {name: after[name] for name in PERSON_FIELDS if after[name] != before[name]}
    if not changes:
        return None
    return _new_request(
        session,
        person,
        foreign[0],
        changes=changes,
        reason=reason,
        consented=_own_units(session, user, person),
        requested_by=user,
        ip=ip,
        now=now,
    )


def _new_request(
    session: Session,
    person: Person,
    unit_id: int,
    *,
    changes: dict[str, Any],
    reason: str,
    consented: set[int],
    requested_by: User | None,
    ip: str | None,
    now: datetime | None,
) -> CorrectionRequest:
    request = CorrectionRequest(
        person_id=person.id,
        signing_unit_id=unit_id,
        status=CorrectionRequestStatus.PENDING,
        changes=changes,
        reason=reason,
        person_version=person.version,
        consented_units=sorted(consented),
        requested_by_id=requested_by.id if requested_by else None,
        requested_by_facility_id=requested_by.facility_id if requested_by else None,
        requested_at=now or datetime.now(UTC),
    )
    session.add(request)
    session.flush()
    audit(
        session,
        "corrections.request_create",
        requested_by,
        target=f"correction_request:{request.id}",
        ip=ip,
        person=person.id,
        signing_unit=unit_id,
        fields=sorted(changes),
    )
    return request


def may_decide(session: Session, user: User | None, request: CorrectionRequest) -> bool:
    """Staff of a facility of the addressed signing unit, and administrators whose scope
    holds one of its facilities, accept or reject a request."""
    if user is None:
        return True
    if not user.active or user.role not in (Role.FACILITY_STAFF, Role.ADMINISTRATOR):
        return False
    facilities = session.scalars(
        select(Facility).where(Facility.signing_unit_id == request.signing_unit_id)
    )
    return any(may_record_at(session, user, facility) for facility in facilities)


def _pending_for(session: Session, user: User | None, request_id: int) -> CorrectionRequest:
    request = session.get(CorrectionRequest, request_id)
    if request is None or not may_decide(session, user, request):
        raise DomainError("corrections.request_not_allowed")
    if request.status is not CorrectionRequestStatus.PENDING:
        raise DomainError("corrections.request_decided")
    return request


def requests_for(session: Session, user: User) -> list[CorrectionRequest]:
    """The pending requests this user may decide, the oldest first (their work list)."""
    pending = session.scalars(
        select(CorrectionRequest)
        .where(CorrectionRequest.status == CorrectionRequestStatus.PENDING)
        .order_by(CorrectionRequest.id)
    )
    return [request for request in pending if may_decide(session, user, request)]


def accept_request(
    session: Session,
    request_id: int,
    user: User | None,
    *,
    ip: str | None = None,
    now: datetime | None = None,
    today: date | None = None,
) -> Correction | CorrectionRequest | None:
    """Accept: the change is applied through ``correct`` (signatures and passports are
    superseded, the doses are to be signed again), or, when yet another unit's signature would
    be superseded, passed on to that unit as a new request. None when it changes nothing now.
    """
    request = _pending_for(session, user, request_id)
    person = request.person
    now = now or datetime.now(UTC)
    consented = frozenset(request.consented_units) | {request.signing_unit_id}
    consented |= _own_units(session, user, person)
    remaining = [
        unit
        for unit in foreign_signing_units(session, user, person, consented)
        if unit not in consented
    ]
    request.status = CorrectionRequestStatus.ACCEPTED
    request.decided_by_id = user.id if user else None
    request.decided_at = now
    result: Correction | CorrectionRequest | None
    if remaining:
        requester = session.get(User, request.requested_by_id) if request.requested_by_id else None
        result = _new_request(
            session,
            person,
            remaining[0],
            changes=dict(request.changes),
            reason=request.reason,
            consented=set(consented),
            requested_by=requester,
            ip=ip,
            now=now,
        )
        request.forwarded_to_id = result.id
    else:
        result = correct(
            session,
            person,
            _person_data(person, request.changes),
            user,
            reason=request.reason,
            ip=ip,
            now=now,
            today=today,
            consented=consented,
        )
        if result is not None:
            request.record_version_id = result.version.id
    session.flush()
    audit(
        session,
        "corrections.request_accept",
        user,
        target=f"correction_request:{request.id}",
        ip=ip,
        person=person.id,
        forwarded_to=request.forwarded_to_id,
        record_version=request.record_version_id,
    )
    return result


def reject_request(
    session: Session,
    request_id: int,
    user: User | None,
    *,
    reason: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> CorrectionRequest:
    """Reject with a reason (required): nothing is changed, the reason is kept and audited."""
    request = _pending_for(session, user, request_id)
    request.decision_reason = _clean_reason(reason)
    request.status = CorrectionRequestStatus.REJECTED
    request.decided_by_id = user.id if user else None
    request.decided_at = now or datetime.now(UTC)
    session.flush()
    audit(
        session,
        "corrections.request_reject",
        user,
        target=f"correction_request:{request.id}",
        ip=ip,
        person=request.person_id,
        reason=request.decision_reason,
    )
    return request
