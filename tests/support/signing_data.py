"""Many people and doses at once for the signing page's tests (``records.seed``'s bulk inserts)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import update
from sqlalchemy.orm import Session

from kyso.platform.models import Dose, DoseSignature, Facility, VerificationStatus
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
    return build.people(
        session,
        build.numbered_people(
            count,
            product_id=seed.pfizer.id,
            facility=facility or seed.station_ben_nghe,
            doses=doses,
            status=status,
            name=name,
            first_dose=first_dose,
            start=start,
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
