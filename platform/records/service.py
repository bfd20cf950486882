"""Creating and correcting vaccination records.

The signed certificate document holds the person's data and the dose's, so every edit moves
versions on: a dose edit bumps that dose's ``version``; a person edit bumps ``Person.version``
and the version of all their doses. A signature covers one version, so an edited record shows
up as "to be signed again" without anything else to remember. An edit of what the population
registry checks (identity number, name, birth date, gender) sends the person back to the
verification queue. Edits are audited with the names of the fields they changed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.auth.access import recordable_facilities, visible_facilities
from kyso.platform.auth.service import audit
from kyso.platform.errors import DomainError
from kyso.platform.models import (
    Area,
    Dose,
    DoseSignature,
    Facility,
    Gender,
    Person,
    Role,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.records import rules
from kyso.platform.records.names import name_key
from kyso.platform.records.rules import InvalidRecord, Problem
from kyso.platform.registry.service import IDENTITY_FIELDS, mark_for_reverification
from kyso.platform.stats import summary  # noqa: F401 - its flush listener keeps the statistics' summary

RECORDING_ROLES = frozenset({Role.FACILITY_STAFF, Role.ADMINISTRATOR})


@dataclass(frozen=True)
class PersonData:
    """A person's data as a form or an import row gives it (cleaned here, not by the caller)."""

    full_name: str
    birth_date: date
    gender: Gender
    identity_number: str | None = None
    phone: str | None = None
    address: str | None = None
    area_id: int | None = None

    def cleaned(self) -> PersonData:
        return PersonData(
            full_name=rules.clean_text(self.full_name) or "",
            birth_date=self.birth_date,
            gender=self.gender,
            identity_number=rules.clean_identity(self.identity_number),
            phone=rules.clean_phone(self.phone),
            address=rules.clean_text(self.address),
            area_id=self.area_id,
        )


@dataclass(frozen=True)
class DoseData:
    dose_number: int
    vaccinated_on: date
    product_id: int
    lot: str
    facility_id: int  # where the dose was given

    def cleaned(self) -> DoseData:
        return DoseData(
            dose_number=self.dose_number,
            vaccinated_on=self.vaccinated_on,
            product_id=self.product_id,
            lot=rules.clean_text(self.lot) or "",
            facility_id=self.facility_id,
        )


def may_record_at(session: Session, user: User | None, facility: Facility) -> bool:
    """Whether ``user`` may enter or correct doses given at ``facility``.

    Facility staff record for their facility and for the facilities that share its signing
    unit (a district centre's mobile team, say); administrators for the facilities of their
    scope; signing officers and central issuers never edit records. ``None`` is IT at the
    command line.
    """
    if user is None:
        return True
    if user.role not in RECORDING_ROLES or not user.active:
        return False
    if user.role is Role.FACILITY_STAFF:
        own = session.get(Facility, user.facility_id) if user.facility_id else None
        return own is not None and (
            facility.id == own.id or facility.signing_unit_id == own.signing_unit_id
        )
    scope = visible_facilities(user).where(Facility.id == facility.id)
    return session.scalar(scope) is not None


def recording_facilities(session: Session, user: User | None) -> set[int] | None:
    """Ids of the facilities ``may_record_at`` allows this user (None: all, for IT)."""
    if user is None:
        return None
    return set(session.scalars(recordable_facilities(user)))


def _require_recording_role(user: User | None) -> None:
    if user is not None and (user.role not in RECORDING_ROLES or not user.active):
        raise DomainError("records.not_allowed")


def _require_person_access(session: Session, user: User | None, person: Person) -> None:
    _require_recording_role(user)
    if user is None or not person.doses:
        return
    if not any(may_record_at(session, user, dose.facility) for dose in person.doses):
        raise DomainError("records.not_allowed")


# Person data that stays with the unit that recorded the person first (their first recorded
# dose): a facility that later records a dose for them knows the identity it typed, not the
# phone, address or area the other unit keeps.
KEPT_BY_OTHERS = ("phone", "address", "area_id")


def own_doses(session: Session, user: User | None, person: Person) -> list[Dose]:
    """The person's doses this user may see and correct (IT at the command line: all)."""
    if user is None:
        return list(person.doses)
    return [dose for dose in person.doses if may_record_at(session, user, dose.facility)]


def keeps_person(session: Session, user: User | None, person: Person) -> bool:
    """Whether this user sees the data in ``KEPT_BY_OTHERS``: their scope holds the facility of
    the person's first recorded dose (or the person has no dose; IT sees everything). A dose
    added later, by import or by hand, grants only that dose."""
    if user is None or not person.doses:
        return True
    first = min(person.doses, key=lambda dose: dose.id)
    return may_record_at(session, user, first.facility)


def foreign_signing_units(
    session: Session, user: User | None, person: Person, consented: frozenset[int] = frozenset()
) -> list[int]:
    """The signing units outside this user's scope whose current signature on one of the
    person's doses a change of the person's data would supersede (minus ``consented`` ones)."""
    if user is None:
        return []
    foreign = {
        dose.id: dose.facility.signing_unit_id
        for dose in person.doses
        if not may_record_at(session, user, dose.facility)
        and dose.facility.signing_unit_id not in consented
    }
    if not foreign:
        return []
    signed = session.scalars(
        select(DoseSignature.dose_id).where(
            DoseSignature.dose_id.in_(foreign), DoseSignature.superseded_at.is_(None)
        )
    )
    return sorted({foreign[dose_id] for dose_id in signed})


def _check_version(current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise DomainError("records.stale")


def _person_problems(session: Session, data: PersonData, today: date) -> list[Problem]:
    problems = rules.check_person(
        data.full_name,
        data.birth_date,
        data.gender,
        data.identity_number,
        data.phone,
        data.address,
        today,
    )
    if data.area_id is not None and session.get(Area, data.area_id) is None:
        problems.append(Problem(rules.AREA, "records.area_unknown", {"value": data.area_id}))
    return problems


def create_person(
    session: Session,
    data: PersonData,
    user: User | None,
    *,
    ip: str | None = None,
    today: date | None = None,
) -> Person:
    _require_recording_role(user)
    data = data.cleaned()
    problems = _person_problems(session, data, today or rules.today_in_vietnam())
    if problems:
        raise InvalidRecord(problems)
    person = Person(
        full_name=data.full_name,
        name_key=name_key(data.full_name),
        birth_date=data.birth_date,
        gender=data.gender,
        identity_number=data.identity_number,
        phone=data.phone,
        address=data.address,
        area_id=data.area_id,
        verification_status=VerificationStatus.PENDING,
        version=1,
    )
    session.add(person)
    session.flush()
    audit(session, "records.person_create", user, target=f"person:{person.id}", ip=ip)
    return person


def check_person_data(
    session: Session,
    person: Person,
    data: PersonData,
    today: date | None = None,
    user: User | None = None,
) -> list[Problem]:
    """What is wrong with ``data`` (cleaned) as this person's new data. A dose outside the
    user's scope is not described (its number and date are not the user's to learn)."""
    problems = _person_problems(session, data, today or rules.today_in_vietnam())
    own = {dose.id for dose in own_doses(session, user, person)}
    for dose in person.doses:
        if data.birth_date and dose.vaccinated_on < data.birth_date:
            if dose.id in own:
                problems.append(
                    Problem(
                        rules.BIRTH_DATE,
                        "records.birth_after_dose",
                        {
                            "number": dose.dose_number,
                            "date": rules.display_date(dose.vaccinated_on),
                        },
                    )
                )
            else:
                problems.append(Problem(rules.BIRTH_DATE, "records.birth_after_other_dose"))
            break
    return problems


def update_person(
    session: Session,
    person: Person,
    data: PersonData,
    user: User | None,
    *,
    expected_version: int | None = None,
    ip: str | None = None,
    today: date | None = None,
    consented: frozenset[int] = frozenset(),
) -> Person:
    """Correct a person's data; an edit that changes nothing changes no version either.

    An edit that would supersede the signature of a signing unit outside the user's scope is
    refused unless that unit agreed (``consented``: the correction-request service's accept);
    the correction service turns such an edit into a request to that unit instead.
    """
    _require_person_access(session, user, person)
    _check_version(person.version, expected_version)
    data = data.cleaned()
    problems = check_person_data(session, person, data, today, user)
    if problems:
        raise InvalidRecord(problems)

    changed = [f.name for f in fields(data) if getattr(person, f.name) != getattr(data, f.name)]
    if not changed:
        return person
    if foreign_signing_units(session, user, person, consented):
        raise DomainError("records.signed_elsewhere")
    for name in changed:
        setattr(person, name, getattr(data, name))
    person.name_key = name_key(person.full_name)
    if set(IDENTITY_FIELDS).intersection(changed):
        mark_for_reverification(person)
    person.version += 1
    for dose in person.doses:
        dose.version += 1
    session.flush()
    audit(
        session,
        "records.person_update",
        user,
        target=f"person:{person.id}",
        ip=ip,
        fields=changed,
        version=person.version,
    )
    return person


def _dose_problems(
    session: Session,
    person: Person,
    data: DoseData,
    user: User | None,
    today: date,
    editing: Dose | None = None,
) -> list[Problem]:
    problems = rules.check_dose(
        data.dose_number, data.vaccinated_on, data.lot, person.birth_date, today
    )
    others = [d for d in person.doses if d is not editing]
    if any(d.dose_number == data.dose_number for d in others):
        problems.append(
            Problem(rules.DOSE_NUMBER, "records.dose_exists", {"number": data.dose_number})
        )
    elif not problems:
        problems += rules.check_dose_order(
            data.dose_number, data.vaccinated_on, [(d.dose_number, d.vaccinated_on) for d in others]
        )
    if session.get(VaccineProduct, data.product_id) is None:
        problems.append(Problem(rules.PRODUCT, "records.product_unknown_id"))
    facility = session.get(Facility, data.facility_id)
    if facility is None:
        problems.append(Problem(rules.FACILITY, "records.facility_unknown_id"))
    elif not may_record_at(session, user, facility):
        problems.append(
            Problem(rules.FACILITY, "records.facility_not_allowed", {"value": facility.code})
        )
    return problems


def add_dose(
    session: Session,
    person: Person,
    data: DoseData,
    user: User | None,
    *,
    created_by_facility_id: int | None = None,
    ip: str | None = None,
    today: date | None = None,
) -> Dose:
    """Record a dose; the entering facility defaults to the user's, else the administering one."""
    _require_recording_role(user)
    data = data.cleaned()
    problems = _dose_problems(session, person, data, user, today or rules.today_in_vietnam())
    if problems:
        raise InvalidRecord(problems)
    entered_by = created_by_facility_id or (user.facility_id if user else None) or data.facility_id
    dose = Dose(
        person=person,  # also appends it to person.doses
        product_id=data.product_id,
        lot=data.lot,
        vaccinated_on=data.vaccinated_on,
        dose_number=data.dose_number,
        facility_id=data.facility_id,
        created_by_facility_id=entered_by,
        created_by_user_id=user.id if user else None,
        version=1,
    )
    session.add(dose)
    session.flush()
    audit(
        session,
        "records.dose_create",
        user,
        target=f"dose:{dose.id}",
        ip=ip,
        person=person.id,
        dose_number=dose.dose_number,
    )
    return dose


def update_dose(
    session: Session,
    dose: Dose,
    data: DoseData,
    user: User | None,
    *,
    expected_version: int | None = None,
    ip: str | None = None,
    today: date | None = None,
) -> Dose:
    """Correct a dose; only a real change moves its version on."""
    _require_recording_role(user)
    if user is not None and not may_record_at(session, user, dose.facility):
        raise DomainError("records.not_allowed")
    _check_version(dose.version, expected_version)
    data = data.cleaned()
    person = dose.person
    problems = _dose_problems(
        session, person, data, user, today or rules.today_in_vietnam(), editing=dose
    )
    if problems:
        raise InvalidRecord(problems)
    changed = [f.name for f in fields(data) if getattr(dose, f.name) != getattr(data, f.name)]
    if not changed:
        return dose
    for name in changed:
        setattr(dose, name, getattr(data, name))
    dose.version += 1
    session.flush()
    audit(
        session,
        "records.dose_update",
        user,
        target=f"dose:{dose.id}",
        ip=ip,
        fields=changed,
        version=dose.version,
    )
    return dose


def importable_facilities(session: Session, user: User) -> list[Facility]:
    """The facilities this user may import for: staff their own, administrators their scope."""
    if user.role is Role.FACILITY_STAFF:
        own = session.get(Facility, user.facility_id) if user.facility_id else None
        return [own] if own else []
    query = select(Facility).where(Facility.id.in_(visible_facilities(user)))
    return list(session.scalars(query.order_by(Facility.code)))
