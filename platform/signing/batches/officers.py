"""The officer, the officer's certificate and the officer's batches, checked for every step."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from kyso.platform.errors import DomainError
from kyso.platform.models import (
    RejectReason,
    Role,
    SigningBatch,
    SigningCertificate,
    SigningUnit,
    User,
)
from kyso.platform.signing import revocation as revocations
from kyso.platform.signing.batches.values import (
    SigningContext,
)
from kyso.platform.signing.certificates import CheckedCertificate, check_certificate
from kyso.platform.users.service import active_certificate


def inspect_certificate(
    session: Session, officer: User, der: bytes, context: SigningContext
) -> CheckedCertificate:
    """The checks of ``prepare`` on a certificate read from the token, without preparing."""
    registration = active_certificate(session, officer)
    return _checked(session, officer, registration, der, context, datetime.now(UTC))


def _officer_unit(session: Session, officer: User) -> SigningUnit:
    if officer.role is not Role.SIGNING_OFFICER or not officer.active:
        raise DomainError("signing.not_an_officer")
    unit = session.get(SigningUnit, officer.signing_unit_id) if officer.signing_unit_id else None
    if unit is None:
        raise DomainError("signing.no_unit")
    return unit


def _check_officer_certificate(
    session: Session, officer: User, der: bytes, context: SigningContext, now: datetime
) -> tuple[SigningCertificate, CheckedCertificate]:
    registration = active_certificate(session, officer)
    checked = _checked(session, officer, registration, der, context, now)
    assert registration is not None  # check_certificate refuses an unregistered officer
    if registration.fingerprint_sha256 is None:
        # The first batch binds the registered serial to the certificate read from the token.
        registration.fingerprint_sha256 = checked.fingerprint
        registration.der = checked.der
        registration.subject = checked.subject
        registration.issuer = checked.certificate.issuer.rfc4514_string()
        registration.not_before = checked.not_before
        registration.not_after = checked.not_after
    elif registration.fingerprint_sha256 != checked.fingerprint:
        raise DomainError("batches.certificate_differs", serial=registration.serial_hex)
    return registration, checked


def _checked(
    session: Session,
    officer: User,
    registration: SigningCertificate | None,
    der: bytes,
    context: SigningContext,
    now: datetime,
) -> CheckedCertificate:
    """Path, revocation, organisation binding and compromise, each checked once (the path was
    validated twice per batch before: once with revocation, once without)."""
    if registration is None:  # refused: the officer has no registered certificate
        return check_certificate(der, registered_serial=None, trust=context.trust, at=now)
    unit = _officer_unit(session, officer)
    return revocations.check_for_unit(
        session,
        registration,
        der,
        unit,
        trust=context.trust,
        revocation=context.revocation,
        at=now,
    )


def _certificate_problem(
    session: Session,
    officer: User,
    batch: SigningBatch,
    certificate: x509.Certificate,
    now: datetime,
) -> RejectReason | None:
    registration = active_certificate(session, officer)
    if registration is None or registration.id != batch.certificate_id:
        return RejectReason.CERTIFICATE_NOT_REGISTERED
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return RejectReason.CERTIFICATE_EXPIRED
    return None


def _own_batch(
    session: Session, officer: User, batch_id: str, *, lock: bool = False
) -> SigningBatch:
    query = select(SigningBatch).where(
        SigningBatch.id == batch_id, SigningBatch.officer_id == officer.id
    )
    if lock:
        query = query.with_for_update()
    batch = session.scalar(query)
    if batch is None:
        raise DomainError("batches.not_found", batch=batch_id)
    return batch
