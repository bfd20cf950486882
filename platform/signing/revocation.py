"""Revoked and compromised officers' certificates: what the platform does about them.

- When the CA answers that a registered certificate is revoked (at preparation, or when a
  batch's signatures come back), the registration is marked compromised from the CA's
  revocation date (``compromised_source = "ca"``), unless an administrator gave an earlier date.
- An administrator may mark a registered certificate compromised from a date
  (``mark_compromised``; a lost or stolen token, before the CA has revoked it).
- Either way: every signature made with it from that date on is superseded (kept, never
  deleted), so those doses are "cần ký lại" on the signing page again; the people's current
  passports are superseded and no passport is issued from such a signature; the batches signed
  from that date on are flagged in the batch lists (``flagged``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kyso.platform.auth.service import audit
from kyso.platform.errors import DomainError
from kyso.platform.inputs import DateInvalid, parse_date
from kyso.platform.models import (
    Dose,
    DoseSignature,
    RejectReason,
    SigningBatch,
    SigningCertificate,
    SigningUnit,
    User,
)
from kyso.platform.signing.certificates import (
    VIETNAM_TIME,
    CertificateRejected,
    CheckedCertificate,
    Problem,
    TrustStore,
    check_certificate,
    compromised_at,
    organisation_problem,
)
from kyso.platform.signing.validation import RevocationChecker

__all__ = [
    "SOURCE_ADMINISTRATOR",
    "SOURCE_CA",
    "CompromiseResult",
    "check_for_unit",
    "check_registration",
    "compromised_at",
    "expiry_warning",
    "flagged",
    "mark_compromised",
    "normalise_tax_code",
    "parse_since",
    "prefetch",
    "revocation_reason",
    "set_unit_tax_code",
]

SOURCE_ADMINISTRATOR = "administrator"
SOURCE_CA = "ca"
SUPERSEDED_REASON = "certificate_compromised"


class CompromiseResult:
    def __init__(self, signatures: int, people: int) -> None:
        self.signatures = signatures
        self.people = people


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def mark_compromised(
    session: Session,
    registration: SigningCertificate,
    since: datetime,
    *,
    source: str,
    actor: User | None = None,
    ip: str | None = None,
    now: datetime | None = None,
) -> CompromiseResult:
    """Marks the registration compromised from ``since`` (an earlier date already recorded is
    kept) and supersedes every signature made with it from then on. The caller commits."""
    from kyso.platform.passport.issuance import supersede_for_person  # passport imports signing

    now = now or datetime.now(UTC)
    since = _utc(since)
    if since > now:
        raise DomainError("revocation.compromised_in_future")
    if registration.compromised_from is None or _utc(registration.compromised_from) > since:
        registration.compromised_from = since
        registration.compromised_source = source
    since = _utc(registration.compromised_from)
    affected = list(
        session.execute(
            select(DoseSignature.id, DoseSignature.dose_id).where(
                DoseSignature.certificate_id == registration.id,
                DoseSignature.signed_at >= since,
                DoseSignature.superseded_at.is_(None),
            )
        ).tuples()
    )
    people: set[int] = set()
    if affected:
        session.execute(
            update(DoseSignature)
            .where(DoseSignature.id.in_([signature_id for signature_id, _ in affected]))
            .values(superseded_at=now)
        )
        people = set(
            session.scalars(
                select(Dose.person_id).where(Dose.id.in_([dose_id for _, dose_id in affected]))
            )
        )
        for person_id in sorted(people):
            supersede_for_person(session, person_id, SUPERSEDED_REASON, by=actor, now=now)
    session.flush()
    audit(
        session,
        "certificate.compromised",
        actor,
        target=registration.serial_hex,
        ip=ip,
        since=since.isoformat(),
        source=source,
        signatures=len(affected),
        people=len(people),
    )
    return CompromiseResult(len(affected), len(people))


def flagged(session: Session, batch_ids: Iterable[str]) -> set[str]:
    """The batches among ``batch_ids`` signed with a certificate compromised at signing time."""
    ids = list(batch_ids)
    if not ids:
        return set()
    rows = session.execute(
        select(SigningBatch.id, SigningBatch.signing_time, SigningCertificate.compromised_from)
        .join(SigningCertificate, SigningCertificate.id == SigningBatch.certificate_id)
        .where(SigningBatch.id.in_(ids), SigningCertificate.compromised_from.is_not(None))
    ).tuples()
    return {
        batch_id
        for batch_id, signing_time, since in rows
        if since is not None and _utc(signing_time) >= _utc(since)
    }


def prefetch(
    registration: SigningCertificate | None,
    der: bytes,
    *,
    trust: TrustStore,
    revocation: RevocationChecker | None,
    at: datetime,
) -> bool:
    """Starts the path validation (OCSP) of the certificate the officer's page sent, in the
    background, when it is the officer's registered one; ``check_for_unit`` then finds its
    outcome cached or waits for it. The batch preparation reads its records meanwhile, so a
    cold cache no longer adds the responder's round trip to it. Refuses nothing (the checks
    that follow do); True when a validation was started."""
    if registration is None or revocation is None:
        return False
    try:
        certificate = x509.load_der_x509_certificate(der)
        registered = int(registration.serial_hex, 16)
    except ValueError:
        return False
    if certificate.serial_number != registered:
        return False
    return revocation.prefetch(certificate, trust.anchors, trust.intermediates, _utc(at))


def check_for_unit(
    session: Session,
    registration: SigningCertificate,
    der: bytes,
    unit: SigningUnit,
    *,
    trust: TrustStore,
    revocation: RevocationChecker | None,
    at: datetime,
) -> CheckedCertificate:
    """The checks of a certificate that is to sign for ``unit`` at ``at``, beyond the serial:
    path and revocation (``check_certificate``), the organisation binding and compromise;
    returns the checked certificate.

    A revocation the CA reports is recorded on the registration (``persist`` is set on the
    error, so that the caller commits that record while refusing)."""
    try:
        checked = check_certificate(
            der,
            registered_serial=registration.serial_hex,
            trust=trust,
            at=at,
            revocation=revocation,
        )
    except CertificateRejected as exc:
        if exc.problem is Problem.REVOKED:
            revoked_at = exc.values.get("revoked_at")
            if isinstance(revoked_at, datetime):
                mark_compromised(session, registration, revoked_at, source=SOURCE_CA, now=at)
                exc.persist = True
        raise
    problem = organisation_problem(checked.certificate, unit.name, unit.tax_code)
    if problem is not None:
        raise problem
    if compromised_at(registration, at):
        assert registration.compromised_from is not None
        raise DomainError(
            "revocation.compromised",
            serial=registration.serial_hex,
            since=_utc(registration.compromised_from).astimezone(VIETNAM_TIME),
        )
    return checked


def revocation_reason(
    session: Session,
    registration: SigningCertificate,
    *,
    trust: TrustStore | None,
    revocation: RevocationChecker | None,
    at: datetime,
) -> RejectReason | None:
    """``CERTIFICATE_REVOKED`` when signatures arriving at ``at`` must be refused because the
    certificate is compromised by then or the CA says it is revoked (recorded); None otherwise.
    Raises ``CertificateRejected`` (``REVOCATION_UNAVAILABLE``) when the ``hard`` policy cannot
    get an answer: nothing is stored, the officer tries again later."""
    if compromised_at(registration, at):
        return RejectReason.CERTIFICATE_REVOKED
    if trust is None or revocation is None or registration.der is None:
        return None
    try:
        check_certificate(
            registration.der,
            registered_serial=registration.serial_hex,
            trust=trust,
            at=at,
            revocation=revocation,
        )
    except CertificateRejected as exc:
        if exc.problem is Problem.REVOKED:
            revoked_at = exc.values.get("revoked_at")
            mark_compromised(
                session,
                registration,
                revoked_at if isinstance(revoked_at, datetime) else at,
                source=SOURCE_CA,
                now=at,
            )
            return RejectReason.CERTIFICATE_REVOKED
        if exc.problem is Problem.REVOCATION_UNAVAILABLE:
            raise
        return None  # expiry and the rest: the batch's own checks decide
    return None


def check_registration(
    der: bytes,
    serial_hex: str,
    unit: SigningUnit | None,
    *,
    trust: TrustStore,
    revocation: RevocationChecker | None,
    at: datetime,
) -> CheckedCertificate:
    """The certificate an administrator registers (read from the token or its .cer file): it
    must be the serial being registered, valid, trusted, not revoked and the unit's."""
    checked = check_certificate(
        der, registered_serial=serial_hex, trust=trust, at=at, revocation=revocation
    )
    if unit is None:
        raise DomainError("signing.no_unit")
    problem = organisation_problem(checked.certificate, unit.name, unit.tax_code)
    if problem is not None:
        raise problem
    return checked


_TIME_OF_DAY = re.compile(r"([01]?\d|2[0-3])[:hH]([0-5]\d)(?::[0-5]\d)?")


def parse_since(text: str) -> datetime:
    """A date and time typed in Vietnam time, as UTC: "20/11/2026 10:15" (the form's
    dd/mm/yyyy hh:mm), a day alone (from its midnight), or ISO "2026-11-20T10:15". The day goes
    through the one date parser (``inputs.parse_date``): 31/02 or a five-digit year is refused."""
    day_text, _, time_text = text.strip()[:40].replace("T", " ", 1).partition(" ")
    try:
        day = parse_date(day_text)
    except DateInvalid:
        day = None
    time_text = time_text.strip()
    clock = _TIME_OF_DAY.fullmatch(time_text) if time_text else None
    if day is None or (time_text and clock is None):
        raise DomainError("revocation.bad_since")
    hour, minute = (int(clock[1]), int(clock[2])) if clock else (0, 0)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=VIETNAM_TIME).astimezone(UTC)


def expiry_warning(
    registration: SigningCertificate | None, now: datetime, days: int
) -> datetime | None:
    """The registered certificate's expiry (Vietnam time) when it is within ``days`` of ``now``
    and not past (the signing page warns the officer to renew it); None otherwise."""
    if registration is None or registration.not_after is None:
        return None
    expires = _utc(registration.not_after)
    if _utc(now) <= expires <= _utc(now) + timedelta(days=days):
        return expires.astimezone(VIETNAM_TIME)
    return None


_TAX_CODE = re.compile(r"^(\d{10})(?:-?(\d{3}))?$")


def normalise_tax_code(text: str) -> str:
    """A Vietnamese tax code (mã số thuế) as typed: 10 digits, or 13 for a dependent unit
    ("0123456789-001", also typed without the hyphen or with spaces), as certificates carry it
    (``UID=MST:0123456789-001``). Raises ``DomainError`` (``revocation.bad_tax_code``)."""
    value = "".join(text.split())
    found = _TAX_CODE.fullmatch(value)
    if found is None:
        raise DomainError("revocation.bad_tax_code", tax_code=text.strip())
    head, branch = found.groups()
    return f"{head}-{branch}" if branch else head


def set_unit_tax_code(
    session: Session,
    unit_code: str,
    tax_code: str,
    *,
    actor: User | None = None,
    ip: str | None = None,
) -> SigningUnit:
    """Records a signing unit's tax code (10 digits, or 10-3 for a branch), which its officers'
    certificates must carry as ``UID=MST:…``. ``actor``: the administrator on the web page, who
    may set it only for units of their province (a provincial administrator) or any (a national
    one); the command line passes none. The caller commits."""
    unit = session.scalars(select(SigningUnit).where(SigningUnit.code == unit_code)).one_or_none()
    outside = (
        unit is not None
        and actor is not None
        and actor.province_id is not None
        and unit.province_id != actor.province_id
    )
    if unit is None or outside:
        raise DomainError("revocation.unknown_unit", unit=unit_code)
    value = normalise_tax_code(tax_code)
    before, unit.tax_code = unit.tax_code, value
    if before != value:
        audit(
            session,
            "signing_unit.tax_code",
            actor,
            target=unit.code,
            ip=ip,
            before=before,
            after=value,
        )
    return unit
