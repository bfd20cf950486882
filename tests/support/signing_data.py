"""Many people and doses at once for the signing page's tests (bulk inserts, both databases)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from kyso.platform.models import (
    Dose,
    DoseSignature,
    Facility,
    Gender,
    Person,
    VerificationStatus,
)
from kyso.platform.records.names import name_key
from support.platform_seed import Seed


def bulk_people(
    session: Session,
    seed: Seed,
    count: int,
    *,
    doses: int = 1,
    facility: Facility | None = None,
    status: VerificationStatus = VerificationStatus.VERIFIED,
    name: str = "Nguyễn Văn Bình",
    first_dose: date = date(2022, 3, 1),
    start: int = 0,
) -> list[int]:
    """``count`` people named "<name> 0001"… with ``doses`` doses each; returns their ids."""
    facility = facility or seed.station_ben_nghe
    now = datetime.now(UTC)
    people = [
        {
            "full_name": f"{name} {start + i:04d}",
            "name_key": name_key(f"{name} {start + i:04d}"),
            "birth_date": date(1960, 1, 1) + timedelta(days=(start + i) * 7),
            "gender": Gender.MALE if i % 2 else Gender.FEMALE,
            "identity_number": f"0791{start + i:08d}",
            "phone": f"09{start + i:08d}",
            "area_id": facility.area_id,
            "verification_status": status,
            "verification_attempts": 0,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    ids = list(
        session.scalars(insert(Person).returning(Person.id, sort_by_parameter_order=True), people)
    )
    if doses:
        session.execute(
            insert(Dose),
            [
                {
                    "person_id": person_id,
                    "product_id": seed.pfizer.id,
                    "lot": f"FK{1000 + n}",
                    "vaccinated_on": first_dose + timedelta(days=28 * (n - 1)),
                    "dose_number": n,
                    "facility_id": facility.id,
                    "created_by_facility_id": facility.id,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for person_id in ids
                for n in range(1, doses + 1)
            ],
        )
    session.flush()
    return ids


def sign(session: Session, dose: Dose, version: int | None = None) -> DoseSignature:
    """A signature over ``version`` (default: the dose's current version)."""
    signature = DoseSignature(dose_id=dose.id, dose_version=version or dose.version)
    session.add(signature)
    session.flush()
    return signature


def edit(session: Session, dose: Dose) -> None:
    """An edit of the dose: its version moves on, as the records service does."""
    session.execute(update(Dose).where(Dose.id == dose.id).values(version=Dose.version + 1))
    session.flush()
    session.refresh(dose)
