"""One builder for the platform's data: the demo, the benchmarks and the tests all seed through it.

A small API over the models, each call adding rows to the session and flushing (the caller
commits):

- ``area``: a province, district or commune (its ``province_id`` follows its parent);
- ``signing_unit`` and ``facility``: who signs, and where people are vaccinated;
- ``product``: a vaccine product;
- ``account``: a user (``password_hash`` from ``auth.service.hash_password``, once for many);
- ``person``: one person with doses, as ORM objects (``person.doses`` is loaded);
- ``people``: many people with their doses, bulk-inserted (``COPY`` on PostgreSQL), for
  thousands or millions of rows;
- ``numbered_people``: verified people "<name> 0001"… with numbered identity numbers and
  phones, for ``people`` (the tests' and the benchmarks' signing loads);
- ``certificate``: an officer's registered certificate (the "Đăng ký chứng thư số" step).

The demo (``records.demo``) reads its organisation from ``platform/data/demo-org.toml`` and its
people from a seeded generator; the tests' small organisation is ``tests/support/platform_seed.py``;
the benchmarks build theirs at scale. All three write through these functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy.orm import Session

from kyso.platform.models import (
    Area,
    AreaLevel,
    Dose,
    Facility,
    FacilityType,
    Gender,
    Person,
    Role,
    SigningCertificate,
    SigningUnit,
    SigningUnitKind,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.models.columns import utcnow
from kyso.platform.records import bulk
from kyso.platform.records.names import name_key
from kyso.platform.stats import summary


@dataclass(frozen=True, slots=True)
class NewDose:
    dose_number: int
    vaccinated_on: date
    product_id: int
    lot: str
    facility_id: int


@dataclass(frozen=True, slots=True)
class NewPerson:
    full_name: str
    birth_date: date
    gender: Gender
    identity_number: str | None
    phone: str | None
    area_id: int | None
    address: str | None = None
    status: VerificationStatus = VerificationStatus.PENDING
    doses: tuple[NewDose, ...] = field(default=())


def area(
    session: Session, code: str, name: str, level: AreaLevel, parent: Area | None = None
) -> Area:
    """An administrative area; a province is its own province."""
    row = Area(code=code, name=name, level=level)
    if parent is not None:
        row.parent_id = parent.id
        row.province_id = parent.province_id
    session.add(row)
    session.flush()
    if parent is None and level is AreaLevel.PROVINCE:
        row.province_id = row.id
        session.flush()
    return row


def signing_unit(
    session: Session,
    code: str,
    name: str,
    kind: SigningUnitKind,
    province: Area,
    *,
    tax_code: str | None = None,
    batch_mode: bool = False,
) -> SigningUnit:
    row = SigningUnit(
        code=code,
        name=name,
        kind=kind,
        province_id=province.id,
        tax_code=tax_code,
        batch_mode=batch_mode,
    )
    session.add(row)
    session.flush()
    return row


def facility(
    session: Session,
    code: str,
    name: str,
    type: FacilityType,
    area: Area,
    unit: SigningUnit,
    *,
    under_ministry: bool = False,
) -> Facility:
    row = Facility(
        code=code,
        name=name,
        type=type,
        area_id=area.id,
        signing_unit_id=unit.id,
        under_ministry=under_ministry,
    )
    session.add(row)
    session.flush()
    return row


def product(
    session: Session, code: str, name: str, *, manufacturer_code: str, prophylaxis_code: str
) -> VaccineProduct:
    row = VaccineProduct(
        code=code,
        name=name,
        manufacturer_code=manufacturer_code,
        prophylaxis_code=prophylaxis_code,
    )
    session.add(row)
    session.flush()
    return row


def account(
    session: Session,
    username: str,
    full_name: str,
    role: Role,
    *,
    password_hash: str,
    facility: Facility | None = None,
    signing_unit: SigningUnit | None = None,
    province: Area | None = None,
) -> User:
    """A user account; ``password_hash`` is ``hash_password(...)``, computed once for many."""
    row = User(
        username=username,
        full_name=full_name,
        password_hash=password_hash,
        role=role,
        facility_id=facility.id if facility else None,
        signing_unit_id=signing_unit.id if signing_unit else None,
        province_id=province.id if province else None,
    )
    session.add(row)
    session.flush()
    return row


def person(session: Session, new: NewPerson) -> Person:
    """One person and their doses as ORM objects (the doses created by their facility)."""
    row = Person(
        full_name=new.full_name,
        name_key=name_key(new.full_name),
        birth_date=new.birth_date,
        gender=new.gender,
        identity_number=new.identity_number,
        phone=new.phone,
        area_id=new.area_id,
        address=new.address,
        verification_status=new.status,
    )
    session.add(row)
    session.flush()
    for dose in new.doses:
        session.add(
            Dose(
                person_id=row.id,
                product_id=dose.product_id,
                lot=dose.lot,
                vaccinated_on=dose.vaccinated_on,
                dose_number=dose.dose_number,
                facility_id=dose.facility_id,
                created_by_facility_id=dose.facility_id,
            )
        )
    session.flush()
    return row


@dataclass
class Inserted:
    ids: list[int]
    doses: int


def people(session: Session, new: Iterable[NewPerson], batch_size: int = 5000) -> Inserted:
    """Bulk-inserts the people and their doses (created by the dose's facility), ``batch_size``
    people per round trip; returns their ids in order. Only one batch is held in memory."""
    inserted = Inserted([], 0)
    iterator = iter(new)
    while batch := list(itertools.islice(iterator, batch_size)):
        now = utcnow()
        ids = bulk.insert_with_ids(
            session,
            bulk.PEOPLE,
            [
                {
                    "full_name": p.full_name,
                    "name_key": name_key(p.full_name),
                    "birth_date": p.birth_date,
                    "gender": p.gender,
                    "identity_number": p.identity_number,
                    "phone": p.phone,
                    "area_id": p.area_id,
                    "address": p.address,
                    "verification_status": p.status,
                    "verification_attempts": 0,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for p in batch
            ],
        )
        dose_rows = [
            {
                "person_id": person_id,
                "product_id": d.product_id,
                "lot": d.lot,
                "vaccinated_on": d.vaccinated_on,
                "dose_number": d.dose_number,
                "facility_id": d.facility_id,
                "created_by_facility_id": d.facility_id,
                "created_by_user_id": None,
            }
            for p, person_id in zip(batch, ids, strict=True)
            for d in p.doses
        ]
        bulk.insert_doses(session, dose_rows)
        summary.refresh(session, ids)  # the statistics' summary (Core inserts: no flush)
        inserted.ids += ids
        inserted.doses += len(dose_rows)
    return inserted


def certificate(session: Session, admin: User, officer: User, serial: str) -> SigningCertificate:
    """Registers ``serial`` as the officer's certificate, as ``admin`` does on the user page."""
    from kyso.platform.users.service import register_certificate

    return register_certificate(session, admin, officer, serial)


def doses_every(
    first: date, count: int, *, product_id: int, facility_id: int, days: int = 28, lot: str = "FK"
) -> tuple[NewDose, ...]:
    """``count`` doses ``days`` apart from ``first``, lots ``FK1001``, ``FK1002``…"""
    return tuple(
        NewDose(
            dose_number=n,
            vaccinated_on=date.fromordinal(first.toordinal() + days * (n - 1)),
            product_id=product_id,
            lot=f"{lot}{1000 + n}",
            facility_id=facility_id,
        )
        for n in range(1, count + 1)
    )


def numbered_people(
    count: int,
    *,
    product_id: int,
    facility: Facility,
    doses: int = 1,
    status: VerificationStatus = VerificationStatus.VERIFIED,
    name: str = "Nguyễn Văn Bình",
    first_dose: date = date(2022, 3, 1),
    start: int = 0,
) -> Iterator[NewPerson]:
    """``count`` people of ``facility``'s area named "<name> 0001"… (from ``start``), each with
    ``doses`` doses of ``product_id`` there; identity number ``0791`` and phone ``09`` followed
    by the person's number in 8 digits; births a week apart from 01/01/1960."""
    for i in range(count):
        number = start + i
        yield NewPerson(
            full_name=f"{name} {number:04d}",
            birth_date=date(1960, 1, 1) + timedelta(days=number * 7),
            gender=Gender.MALE if i % 2 else Gender.FEMALE,
            identity_number=f"0791{number:08d}",
            phone=f"09{number:08d}",
            area_id=facility.area_id,
            status=status,
            doses=doses_every(first_dose, doses, product_id=product_id, facility_id=facility.id),
        )


__all__: Sequence[str] = (
    "Inserted",
    "NewDose",
    "NewPerson",
    "account",
    "area",
    "certificate",
    "doses_every",
    "facility",
    "numbered_people",
    "people",
    "person",
    "product",
    "signing_unit",
)
