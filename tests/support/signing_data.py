"""Many people and doses at once for the signing page's tests (``records.seed``'s bulk inserts)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from kyso.platform.models import Dose, DoseSignature, Facility, Gender, VerificationStatus
from kyso.platform.records import seed as build
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
    return build.people(
        session,
        (
            build.NewPerson(
                full_name=f"{name} {start + i:04d}",
                birth_date=date(1960, 1, 1) + timedelta(days=(start + i) * 7),
                gender=Gender.MALE if i % 2 else Gender.FEMALE,
                identity_number=f"0791{start + i:08d}",
                phone=f"09{start + i:08d}",
                area_id=facility.area_id,
                status=status,
                doses=build.doses_every(
                    first_dose, doses, product_id=seed.pfizer.id, facility_id=facility.id
                ),
            )
            for i in range(count)
        ),
    ).ids


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
