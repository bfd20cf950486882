"""User management, signing-certificate registration and the audit trail.

The rules live here, not in the views: who may see and manage whom (a national administrator
everyone, a provincial administrator the users of their province, everybody else only
themselves), what a valid account looks like for each role, and the registration of the
certificate a signing officer signs with ("Đăng ký chứng thư số").

Certificate serials are compared the way X.509 compares them: as positive integers. What a CA
prints (``54 01 0A ...`` in Windows, ``54:01:0a:...`` in OpenSSL, with or without a leading
``00`` byte) is reduced to the integer's upper-case hexadecimal digits without separators or
leading zeros (``format(serial, "X")``), which is also what ``cryptography``'s
``certificate.serial_number`` gives when the certificate is later read from the token. A serial
must fit the 20 octets RFC 5280 allows for its DER encoding (so at most 159 bits: a 20-byte
value with its top bit set needs a 21st, zero octet).

Registration is done by an administrator who manages the officer, not by the officer: a stolen
password alone must not let anyone bind their own token to an officer's name. The officer sees
their history and may deactivate their own active certificate (a lost token must be
switched off at once, by whoever notices first).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, Generic, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import ColumnElement, Select, false, func, or_, select
from sqlalchemy.orm import Session, selectinload

from kyso.platform import formatting
from kyso.platform.auth.access import manageable_users, may_manage, within_province
from kyso.platform.auth.service import audit, hash_password
from kyso.platform.auth.sessions import (
    PASSWORD_CHANGED,
    PASSWORD_RESET,
    end_sessions_after_change,
    end_user_sessions,
)
from kyso.platform.db import serialize_on, vietnamese
from kyso.platform.errors import DomainError
from kyso.platform.i18n import LANGUAGES, catalogue, translate
from kyso.platform.inputs import storable
from kyso.platform.models import (
    Area,
    AreaLevel,
    AuditEvent,
    Facility,
    Role,
    SigningCertificate,
    SigningUnit,
    User,
)
from kyso.platform.models.columns import utcnow
from kyso.platform.signing.certificates import CheckedCertificate

T = TypeVar("T")

USERNAME = re.compile(r"^[a-z0-9._-]{3,64}$")
FULL_NAME_MAX = 120
# Vietnam has had no daylight saving time since 1975: a fixed offset is exact.
VIETNAM_TIME = timezone(timedelta(hours=7), "ICT")

# Reasons the platform records by itself; anything else is the text a person typed.
REASON_REPLACED = "replaced"
REASON_ROLE_CHANGED = "role_changed"
REASON_ACCOUNT_DEACTIVATED = "account_deactivated"
# Reasons offered on the deactivate form (the catalogue has a text for each).
DEACTIVATION_REASONS = ("token_lost", "certificate_expired", "certificate_revoked", "left_unit")
KNOWN_REASONS = (
    REASON_REPLACED,
    REASON_ROLE_CHANGED,
    REASON_ACCOUNT_DEACTIVATED,
    *DEACTIVATION_REASONS,
)
REASON_MAX = 200

SERIAL_MAX_OCTETS = 20  # RFC 5280 §4.1.2.2
_SERIAL_INPUT_MAX = 200  # characters, before separators are removed
# Copying a serial from Windows' certificate dialog brings an invisible left-to-right mark;
# other tools bring non-breaking or zero-width spaces. None of them is part of the serial.
_INVISIBLE = dict.fromkeys(map(ord, "\u200e\u200f\u200b\u200c\u200d\u2060\ufeff"), None)
_SEPARATORS = re.compile(r"[\s:]+")
_HEX = re.compile(r"^[0-9A-F]+$")

# One-time passwords: no look-alike characters (0/O, 1/l/I), read aloud over the phone.
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_PASSWORD_GROUPS = 4
_PASSWORD_GROUP_LENGTH = 4

_hasher = PasswordHasher()
# PostgreSQL advisory lock that serialises certificate registrations (rare, and the rule
# "one serial, one officer" spans rows that may not exist yet, so no row lock can guard it).


# ---------------------------------------------------------------------------------------------
# Normalisation


def normalise_username(text: str) -> str:
    """Lower case and trimmed; refuses anything outside ``^[a-z0-9._-]{3,64}$``."""
    username = text.strip().lower()
    if not USERNAME.fullmatch(username):
        raise DomainError("users.username_invalid")
    return username


def normalise_full_name(text: str) -> str:
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not name:
        raise DomainError("users.full_name_required")
    if len(name) > FULL_NAME_MAX:
        raise DomainError("users.full_name_too_long", length=FULL_NAME_MAX)
    return name


def normalise_serial(text: str) -> str:
    """The serial as X.509 compares it: upper-case hex of a positive integer, no leading zeros.

    Accepts what CAs and tools print: hex digits in either case, grouped by spaces or colons
    (or not at all), with an optional ``0x`` prefix.
    """
    if len(text) > _SERIAL_INPUT_MAX:
        raise DomainError("users.serial_too_long", octets=SERIAL_MAX_OCTETS)
    cleaned = _SEPARATORS.sub("", text.translate(_INVISIBLE)).upper()
    if cleaned.startswith("0X"):
        cleaned = cleaned[2:]
    if not cleaned:
        raise DomainError("users.serial_required")
    if not _HEX.fullmatch(cleaned):
        raise DomainError("users.serial_not_hex")
    value = int(cleaned, 16)
    if value == 0:
        raise DomainError("users.serial_not_positive")
    # DER content octets of a positive INTEGER: the magnitude plus a sign bit.
    if value.bit_length() // 8 + 1 > SERIAL_MAX_OCTETS:
        raise DomainError("users.serial_too_long", octets=SERIAL_MAX_OCTETS)
    return format(value, "X")


def format_serial(serial_hex: str) -> str:
    """For reading aloud and comparing with the token: even-length hex in pairs."""
    return formatting.serial(serial_hex)


def generate_password() -> str:
    """A one-time password: 16 characters from 56 (about 93 bits), in groups of four."""
    groups = (
        "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(_PASSWORD_GROUP_LENGTH))
        for _ in range(_PASSWORD_GROUPS)
    )
    return "-".join(groups)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# ---------------------------------------------------------------------------------------------
# Pages


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    total: int
    number: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def _page_number(number: int, total: int, size: int) -> int:
    last = max(1, -(-total // size))
    return min(max(1, number), last)


# ---------------------------------------------------------------------------------------------
# Who sees whom


def visible_user(session: Session, actor: User, user_id: int) -> User | None:
    """The user, if ``actor`` may see them (themselves, or someone they manage); else None."""
    user = session.get(User, user_id)
    if user is None:
        return None
    if user.id == actor.id or may_manage(actor, user, session):
        return user
    return None


def province_name(session: Session, user: User) -> str | None:
    """The province an administrator is limited to (None: national, or not an administrator)."""
    if user.province_id is None:
        return None
    area = session.get(Area, user.province_id)
    return area.name if area is not None else None


def is_administrator(user: User) -> bool:
    return user.role is Role.ADMINISTRATOR


@dataclass(frozen=True)
class UserQuery:
    text: str = ""
    role: Role | None = None
    active: bool | None = None  # None: both


@dataclass(frozen=True)
class UserRow:
    user: User
    certificate: SigningCertificate | None


def _role_matches(text: str) -> list[Role]:
    """Roles whose value or catalogue label contains the text (search "ký duyệt" or "officer")."""
    needle = text.casefold()
    found: list[Role] = []
    if len(needle) < 4:  # "an", "le": names, not roles
        return found
    for role in Role:
        labels = [role.value, *(translate(f"users.role_{role.value}", lang) for lang in LANGUAGES)]
        if any(needle in label.casefold() for label in labels):
            found.append(role)
    return found


def list_users(
    session: Session, actor: User, query: UserQuery, page: int = 1, size: int = 50
) -> Page[UserRow]:
    """The users ``actor`` may see, searched and paginated (administrators only list others)."""
    scope: Select[tuple[int]]
    if is_administrator(actor):
        scope = manageable_users(actor)
    else:
        scope = select(User.id).where(User.id == actor.id)
    stmt = select(User).where(User.id.in_(scope))
    if query.role is not None:
        stmt = stmt.where(User.role == query.role)
    if query.active is not None:
        stmt = stmt.where(User.active.is_(query.active))
    text = " ".join(query.text.split())[:120]
    if not storable(text):
        stmt = stmt.where(false())  # no stored name or code holds a NUL byte
    elif text:
        pattern = _like(text)
        facility_ids = select(Facility.id).where(
            or_(
                Facility.name.ilike(pattern, escape="\\"), Facility.code.ilike(pattern, escape="\\")
            )
        )
        unit_ids = select(SigningUnit.id).where(
            or_(
                SigningUnit.name.ilike(pattern, escape="\\"),
                SigningUnit.code.ilike(pattern, escape="\\"),
            )
        )
        conditions = [
            User.full_name.ilike(pattern, escape="\\"),
            User.username.ilike(pattern, escape="\\"),
            User.facility_id.in_(facility_ids),
            User.signing_unit_id.in_(unit_ids),
        ]
        roles = _role_matches(text)
        if roles:
            conditions.append(User.role.in_(roles))
        stmt = stmt.where(or_(*conditions))
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    number = _page_number(page, total, size)
    users = session.scalars(
        stmt.options(selectinload(User.facility), selectinload(User.signing_unit))
        .order_by(vietnamese(session, User.full_name), User.id)
        .limit(size)
        .offset((number - 1) * size)
    ).all()
    active = {
        c.user_id: c
        for c in session.scalars(
            select(SigningCertificate).where(
                SigningCertificate.user_id.in_([u.id for u in users]),
                SigningCertificate.deactivated_at.is_(None),
            )
        )
    }
    rows = [UserRow(u, active.get(u.id)) for u in users]
    return Page(rows, total, number, size)


# ---------------------------------------------------------------------------------------------
# Form choices


def facility_choices(session: Session, actor: User) -> list[Facility]:
    stmt = select(Facility).order_by(vietnamese(session, Facility.name))
    if actor.province_id is not None:
        stmt = stmt.join(Area, Facility.area_id == Area.id).where(
            Area.province_id == actor.province_id
        )
    return list(session.scalars(stmt))


def signing_unit_choices(session: Session, actor: User) -> list[SigningUnit]:
    stmt = select(SigningUnit).order_by(vietnamese(session, SigningUnit.name))
    if actor.province_id is not None:
        stmt = stmt.where(SigningUnit.province_id == actor.province_id)
    return list(session.scalars(stmt))


def province_choices(session: Session, actor: User) -> list[Area]:
    stmt = select(Area).where(Area.level == AreaLevel.PROVINCE).order_by(Area.code)
    if actor.province_id is not None:
        stmt = stmt.where(Area.id == actor.province_id)
    return list(session.scalars(stmt))


# ---------------------------------------------------------------------------------------------
# Creating and editing users


@dataclass(frozen=True)
class UserForm:
    """What an administrator fills in; fields a role does not use are ignored for that role."""

    full_name: str
    role: Role
    facility_id: int | None = None
    signing_unit_id: int | None = None
    province_id: int | None = None
    language: str = "vi"
    active: bool = True
    username: str = ""  # creation only: user names never change (the audit trail uses them)


@dataclass(frozen=True)
class _Shape:
    facility_id: int | None
    signing_unit_id: int | None
    province_id: int | None


def _shape(session: Session, form: UserForm) -> _Shape:
    """Apply the role's rules: which of facility, signing unit and province it has."""
    facility_id = form.facility_id
    unit_id = form.signing_unit_id
    province_id = form.province_id
    if form.role is Role.FACILITY_STAFF:
        if facility_id is None:
            raise DomainError("users.facility_required")
        unit_id = province_id = None
    elif form.role is Role.SIGNING_OFFICER:
        if unit_id is None:
            raise DomainError("users.signing_unit_required")
        province_id = None
    elif form.role is Role.ADMINISTRATOR:
        facility_id = unit_id = None
    else:  # central issuers work for the Ministry, not for a facility or province
        facility_id = unit_id = province_id = None
    facility = session.get(Facility, facility_id) if facility_id is not None else None
    if facility_id is not None and facility is None:
        raise DomainError("users.facility_unknown")
    unit = session.get(SigningUnit, unit_id) if unit_id is not None else None
    if unit_id is not None and unit is None:
        raise DomainError("users.signing_unit_unknown")
    if facility is not None and unit is not None and facility.signing_unit_id != unit.id:
        # An officer signs the doses of their unit's facilities: a facility under another
        # unit (another province's, say) would let the account reach records nobody meant.
        covering = session.get(SigningUnit, facility.signing_unit_id)
        raise DomainError(
            "users.unit_not_covering_facility",
            unit=unit.name,
            facility=facility.name,
            covering=covering.name if covering is not None else "—",
        )
    if province_id is not None:
        area = session.get(Area, province_id)
        if area is None or area.level is not AreaLevel.PROVINCE:
            raise DomainError("users.province_unknown")
    return _Shape(facility_id, unit_id, province_id)


def _language(value: str) -> str:
    if value not in LANGUAGES:
        raise DomainError("users.language_unknown")
    return value


def _check_scope(session: Session, actor: User | None, user: User) -> None:
    """A provincial administrator keeps every user they create or edit inside their province.

    Every field that is set (facility, signing unit, administered province) must lie in the
    administrator's province, and the role must be one a province has: a provincial
    administrator creates neither national administrators nor central issuers (who work for
    the Ministry).
    """
    if actor is None:  # the command line: whoever runs it owns the server
        return
    if actor.role is not Role.ADMINISTRATOR or not actor.active:
        raise DomainError("users.not_allowed")
    if actor.province_id is None:
        return
    if user.role is Role.ADMINISTRATOR and user.province_id is None:
        raise DomainError("users.no_national_admin")
    if user.role is Role.CENTRAL_ISSUER:
        raise DomainError("users.no_central_issuer")
    if not within_province(user, actor.province_id, session):
        raise DomainError("users.outside_province")


def create_user(
    session: Session,
    actor: User | None,
    form: UserForm,
    password: str | None = None,
    ip: str | None = None,
) -> tuple[User, str]:
    """Creates the account; returns it and its password (generated unless one is given).

    ``actor`` None is the command line (bootstrapping the first administrator).
    """
    username = normalise_username(form.username)
    full_name = normalise_full_name(form.full_name)
    shape = _shape(session, form)
    language = _language(form.language)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise DomainError("users.username_taken", username=username)
    password = password if password is not None else generate_password()
    user = User(
        username=username,
        full_name=full_name,
        role=form.role,
        facility_id=shape.facility_id,
        signing_unit_id=shape.signing_unit_id,
        province_id=shape.province_id,
        language=language,
        active=form.active,
    )
    _check_scope(session, actor, user)
    user.password_hash = hash_password(password)
    session.add(user)
    session.flush()
    audit(
        session,
        "user.create",
        actor,
        target=username,
        ip=ip,
        role=user.role.value,
        facility_id=user.facility_id,
        signing_unit_id=user.signing_unit_id,
        province_id=user.province_id,
        active=user.active,
        **({} if actor is not None else {"via": "cli"}),
    )
    return user, password


def update_user(
    session: Session, actor: User, user: User, form: UserForm, ip: str | None = None
) -> dict[str, list[Any]]:
    """Applies the form; returns what changed (field: [before, after]), also audited."""
    if not may_manage(actor, user, session):
        raise DomainError("users.not_allowed")
    full_name = normalise_full_name(form.full_name)
    shape = _shape(session, form)
    language = _language(form.language)
    if user.id == actor.id and (
        form.role is not user.role
        or form.active != user.active
        or shape.province_id != user.province_id
    ):
        raise DomainError("users.no_self_lockout")
    wanted = {
        "full_name": full_name,
        "role": form.role,
        "facility_id": shape.facility_id,
        "signing_unit_id": shape.signing_unit_id,
        "province_id": shape.province_id,
        "language": language,
        "active": form.active,
    }
    changes: dict[str, list[Any]] = {}
    for name, value in wanted.items():
        before = getattr(user, name)
        if before != value:
            changes[name] = [_plain(before), _plain(value)]
    if not changes:
        return changes
    # Check the user as they would be after the edit, without touching the real object.
    after = User(
        role=form.role,
        facility_id=shape.facility_id,
        signing_unit_id=shape.signing_unit_id,
        province_id=shape.province_id,
    )
    _check_scope(session, actor, after)
    for name, value in wanted.items():
        setattr(user, name, value)
    if form.role is not Role.SIGNING_OFFICER or not form.active:
        reason = REASON_ACCOUNT_DEACTIVATED if not form.active else REASON_ROLE_CHANGED
        current = active_certificate(session, user)
        if current is not None:
            current.deactivated_at = utcnow()
            current.deactivated_reason = reason
            changes["certificate"] = [current.serial_hex, None]
    end_sessions_after_change(session, user, changes)
    session.flush()
    audit(session, "user.update", actor, target=user.username, ip=ip, changes=changes)
    return changes


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Role) else value


def reset_password(session: Session, actor: User, user: User, ip: str | None = None) -> str:
    """A new one-time password for ``user``, to be shown once to the administrator."""
    if not may_manage(actor, user, session):
        raise DomainError("users.not_allowed")
    password = generate_password()
    user.password_hash = hash_password(password)
    end_user_sessions(session, user, PASSWORD_RESET)
    audit(session, "user.password_reset", actor, target=user.username, ip=ip)
    return password


def change_own_password(
    session: Session,
    user: User,
    current: str,
    new: str,
    confirmation: str,
    ip: str | None = None,
) -> None:
    """Everyone replaces their own password (and the one-time password they were given)."""
    ok: bool
    try:
        ok = _hasher.verify(user.password_hash, current)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok:
        raise DomainError("users.current_password_wrong")
    if new != confirmation:
        raise DomainError("users.password_mismatch")
    if new == current:
        raise DomainError("users.password_unchanged")
    user.password_hash = hash_password(new)
    end_user_sessions(session, user, PASSWORD_CHANGED)  # the caller starts a new one
    audit(session, "user.password_change", user, target=user.username, ip=ip)


# ---------------------------------------------------------------------------------------------
# Signing certificates


def active_certificate(session: Session, officer: User) -> SigningCertificate | None:
    return session.scalar(
        select(SigningCertificate)
        .where(
            SigningCertificate.user_id == officer.id,
            SigningCertificate.deactivated_at.is_(None),
        )
        .execution_options(populate_existing=True)
    )


def certificate_history(session: Session, officer: User) -> list[SigningCertificate]:
    """Every certificate the officer registered, newest first."""
    return list(
        session.scalars(
            select(SigningCertificate)
            .options(selectinload(SigningCertificate.registered_by))
            .where(SigningCertificate.user_id == officer.id)
            .order_by(SigningCertificate.registered_at.desc(), SigningCertificate.id.desc())
        )
    )


def may_register_certificate(session: Session, actor: User, officer: User) -> bool:
    return officer.role is Role.SIGNING_OFFICER and may_manage(actor, officer, session)


def _lock_registrations(session: Session) -> None:
    # SQLite has one writer at a time: a concurrent registration fails instead of interleaving.
    serialize_on(session, "certificate-registration")


def register_certificate(
    session: Session,
    actor: User,
    officer: User,
    serial_text: str,
    ip: str | None = None,
    *,
    certificate: bytes | None = None,
    verify: Callable[[bytes, str, SigningUnit | None], CheckedCertificate] | None = None,
) -> SigningCertificate:
    """Registers the serial as the officer's active certificate ("Đăng ký chứng thư số").

    The previous active certificate is deactivated ("replaced"); registering the serial that is
    already active changes nothing and returns it. A serial active for another officer is
    refused (the attempt is audited; the caller may commit it).

    With the ``certificate`` itself (DER, read from the token or its .cer file) the serial may
    be left empty; ``verify`` (``signing.revocation.check_registration`` bound to the trust
    anchors and revocation policy) checks it now: trusted, valid, not revoked, the officer's
    unit's. A refusal is audited.

    A serial typed alone names no issuer nor OCSP responder, so it cannot be asked about by
    itself. It is refused when the platform knows the certificate compromised or revoked (any
    registration of that serial marked so); when an earlier registration bound that serial to
    its certificate, that certificate is checked with ``verify`` as above. Otherwise nothing is
    known yet: the registration has no ``der`` (callers say it is unchecked), and every check
    happens at the first batch, before anything is signed.
    """
    if officer.role is not Role.SIGNING_OFFICER:
        raise DomainError("users.certificate_officers_only")
    if not may_manage(actor, officer, session):
        raise DomainError("users.certificate_not_allowed")
    if not officer.active:
        raise DomainError("users.certificate_inactive_user")
    facility = session.get(Facility, officer.facility_id) if officer.facility_id else None
    if facility is not None and facility.signing_unit_id != officer.signing_unit_id:
        # An account made before the unit had to cover the facility: it cannot sign, and a
        # certificate must not be bound to it until an administrator corrects it.
        raise DomainError("users.certificate_account_inconsistent", facility=facility.name)
    checked = None

    def checked_now(der: bytes, serial: str) -> CheckedCertificate:
        assert verify is not None, "a certificate is checked with verify"
        try:
            return verify(der, serial, officer.signing_unit)
        except DomainError as exc:
            audit(
                session,
                "certificate.register_refused",
                actor,
                target=officer.username,
                ip=ip,
                serial=serial,
                reason=getattr(getattr(exc, "problem", None), "value", exc.key),
            )
            raise

    if certificate is not None:
        try:
            parsed = x509.load_der_x509_certificate(certificate)
        except ValueError:
            raise DomainError("users.certificate_file_invalid") from None
        serial = format(parsed.serial_number, "X")
        if serial_text.strip() and normalise_serial(serial_text) != serial:
            raise DomainError(
                "users.certificate_file_other_serial",
                serial=format_serial(normalise_serial(serial_text)),
                file_serial=format_serial(serial),
            )
        checked = checked_now(certificate, serial)
    else:
        serial = normalise_serial(serial_text)
        earlier = list(
            session.scalars(
                select(SigningCertificate)
                .where(SigningCertificate.serial_hex == serial)
                .order_by(SigningCertificate.id.desc())
            )
        )
        compromised = [r.compromised_from for r in earlier if r.compromised_from is not None]
        if compromised:
            audit(
                session,
                "certificate.register_refused",
                actor,
                target=officer.username,
                ip=ip,
                serial=serial,
                reason="compromised",
            )
            since = min(c if c.tzinfo else c.replace(tzinfo=UTC) for c in compromised)
            raise DomainError(
                "revocation.compromised", serial=serial, since=since.astimezone(formatting.VIETNAM)
            )
        known = next((r.der for r in earlier if r.der is not None), None)
        if known is not None and verify is not None:
            checked = checked_now(known, serial)
    _lock_registrations(session)
    current = active_certificate(session, officer)
    if current is not None and current.serial_hex == serial:
        if checked is not None and current.der is None:
            current.der, current.fingerprint_sha256 = checked.der, checked.fingerprint
            current.subject, current.issuer = checked.subject, checked.issuer
            current.not_before, current.not_after = checked.not_before, checked.not_after
        return current
    elsewhere = session.scalar(
        select(SigningCertificate.id).where(
            SigningCertificate.serial_hex == serial,
            SigningCertificate.deactivated_at.is_(None),
            SigningCertificate.user_id != officer.id,
        )
    )
    if elsewhere is not None:
        audit(
            session,
            "certificate.register_refused",
            actor,
            target=officer.username,
            ip=ip,
            serial=serial,
            reason="active_for_another_officer",
        )
        raise DomainError("users.serial_in_use")
    if current is not None:
        current.deactivated_at = utcnow()
        current.deactivated_reason = REASON_REPLACED
        session.flush()  # the one-active index must see the old row switched off first
    registration = SigningCertificate(
        user_id=officer.id, serial_hex=serial, registered_by_id=actor.id
    )
    if checked is not None:
        registration.der = checked.der
        registration.fingerprint_sha256 = checked.fingerprint
        registration.subject = checked.subject
        registration.issuer = checked.issuer
        registration.not_before = checked.not_before
        registration.not_after = checked.not_after
    session.add(registration)
    session.flush()
    audit(
        session,
        "certificate.register",
        actor,
        target=officer.username,
        ip=ip,
        serial=serial,
        replaced=current.serial_hex if current is not None else None,
        **({"checked": True} if checked is not None else {}),
    )
    return registration


def read_certificate_file(data: bytes) -> bytes:
    """The DER of a certificate file as CAs hand them out (.cer/.crt: DER or PEM)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            loaded = x509.load_pem_x509_certificate(data)
        else:
            loaded = x509.load_der_x509_certificate(data)
    except ValueError:
        raise DomainError("users.certificate_file_invalid") from None
    return loaded.public_bytes(serialization.Encoding.DER)


def deactivate_certificate(
    session: Session,
    actor: User,
    certificate: SigningCertificate,
    reason: str,
    ip: str | None = None,
) -> SigningCertificate:
    """Switches off a registered certificate (lost token, left the unit, ...), with a reason.

    An administrator who manages the officer may; so may the officer themselves.
    """
    officer = session.get(User, certificate.user_id)
    assert officer is not None  # a foreign key
    if actor.id != officer.id and not may_manage(actor, officer, session):
        raise DomainError("users.certificate_not_allowed")
    reason = " ".join(reason.split())
    if not reason:
        raise DomainError("users.reason_required")
    if len(reason) > REASON_MAX:
        raise DomainError("users.reason_too_long", length=REASON_MAX)
    if certificate.deactivated_at is not None:
        raise DomainError("users.certificate_already_inactive")
    certificate.deactivated_at = utcnow()
    certificate.deactivated_reason = reason
    session.flush()
    audit(
        session,
        "certificate.deactivate",
        actor,
        target=officer.username,
        ip=ip,
        serial=certificate.serial_hex,
        reason=reason,
    )
    return certificate


def find_certificate(session: Session, officer: User, certificate_id: int) -> SigningCertificate:
    certificate = session.get(SigningCertificate, certificate_id)
    if certificate is None or certificate.user_id != officer.id:
        raise DomainError("users.certificate_unknown")
    return certificate


# ---------------------------------------------------------------------------------------------
# The audit trail


@dataclass(frozen=True)
class AuditQuery:
    action: str = ""  # exact action, or a group ending in "." ("auth.")
    user: str = ""  # part of the acting user's or the target's user name
    since: date | None = None  # Vietnam dates, inclusive
    until: date | None = None


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    actor: User | None
    detail: list[tuple[str, str]] = field(default_factory=list)


def _vietnam_midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), VIETNAM_TIME).astimezone(UTC)


def audit_scope(actor: User) -> ColumnElement[bool] | None:
    """The events an administrator may read: all, or those by or about users of their province."""
    if actor.province_id is None:
        return None
    users = manageable_users(actor)
    names = select(User.username).where(User.id.in_(users))
    return or_(AuditEvent.user_id.in_(users), AuditEvent.target.in_(names))


def audit_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def audit_events(
    session: Session, actor: User, query: AuditQuery, page: int = 1, size: int = 50
) -> Page[AuditRow]:
    """The audit trail, newest first, filtered; administrators only, scoped to their province."""
    if actor.role is not Role.ADMINISTRATOR:
        raise DomainError("users.not_allowed")
    if query.since and query.until and query.since > query.until:
        raise DomainError("users.audit_dates_reversed")
    stmt = select(AuditEvent)
    scope = audit_scope(actor)
    if scope is not None:
        stmt = stmt.where(scope)
    if query.action:
        if query.action.endswith("."):
            stmt = stmt.where(AuditEvent.action.startswith(query.action, autoescape=True))
        else:
            stmt = stmt.where(AuditEvent.action == query.action)
    who = query.user.strip().lower()[:64]
    if who:
        pattern = _like(who)
        named = select(User.id).where(User.username.ilike(pattern, escape="\\"))
        stmt = stmt.where(
            or_(AuditEvent.user_id.in_(named), AuditEvent.target.ilike(pattern, escape="\\"))
        )
    if query.since:
        stmt = stmt.where(AuditEvent.at >= _vietnam_midnight_utc(query.since))
    if query.until:
        stmt = stmt.where(AuditEvent.at < _vietnam_midnight_utc(query.until + timedelta(days=1)))
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    number = _page_number(page, total, size)
    events = session.scalars(
        stmt.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(size)
        .offset((number - 1) * size)
    ).all()
    actor_ids = {e.user_id for e in events if e.user_id is not None}
    actors = {u.id: u for u in session.scalars(select(User).where(User.id.in_(actor_ids)))}
    rows = [
        AuditRow(e, actors.get(e.user_id) if e.user_id else None, _detail(e.detail)) for e in events
    ]
    return Page(rows, total, number, size)


def audit_summary(event: AuditEvent, language: str) -> str | None:
    """The event in one sentence ("Đã ký lô 237 mũi, từ chối 0 mũi"), where the catalogue
    has one for its action (``users.summary_<action>``); None shows the raw detail instead."""
    key = "users.summary_" + event.action.replace(".", "_")
    if key not in catalogue():
        return None
    values: dict[str, Any] = {"target": event.target or "—"}
    for name, value in (event.detail or {}).items():
        counted = isinstance(value, int) and not isinstance(value, bool)
        values[name] = formatting.number(value, language) if counted else value
    return translate(key, language, **values)


def _detail(detail: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not detail:
        return []
    shown = []
    for key, value in detail.items():
        if value is None:
            continue
        if isinstance(value, dict):
            text = "; ".join(f"{k}: {_change(v)}" for k, v in value.items())
        else:
            text = str(value)
        shown.append((key, text))
    return shown


def _change(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2:
        before, after = ("—" if v is None else str(v) for v in value)
        return f"{before} → {after}"
    return str(value)


def to_vietnam_time(moment: datetime | None) -> datetime | None:
    """Stored times are UTC (SQLite hands them back without a zone)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(VIETNAM_TIME)
