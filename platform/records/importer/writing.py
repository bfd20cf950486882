"""Writing a checked import: the new people and doses in bulk."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kyso.platform.models import (
    Facility,
    User,
)
from kyso.platform.records import rules
from kyso.platform.records.bulk import insert_doses, insert_people
from kyso.platform.records.importer.people import _Group
from kyso.platform.records.importer.rows import _Row
from kyso.platform.stats import summary


def _write(
    session: Session, plan: list[tuple[_Group, list[_Row]]], facility: Facility, user: User | None
) -> None:
    """Bulk inserts: a 10,000-row file is a few statements, not 30,000 ORM objects."""
    fresh = [group for group, new in plan if group.person is None and new]
    ids = insert_people(
        session,
        [
            {
                "full_name": group.first.full_name,
                "birth_date": group.first.birth_date,
                "gender": group.first.gender,
                "identity_number": group.first.identity_number,
                "phone": group.value(rules.PHONE),
                "address": group.value(rules.ADDRESS),
                "area_id": group.value("area_id"),
            }
            for group in fresh
        ],
    )
    for group, person_id in zip(fresh, ids, strict=True):
        group.person_id = person_id
    insert_doses(
        session,
        [
            {
                "person_id": group.person.id if group.person else group.person_id,
                "product_id": row.product_id,
                "lot": row.lot,
                "vaccinated_on": row.vaccinated_on,
                "dose_number": row.dose_number,
                "facility_id": row.facility_id,
                "created_by_facility_id": facility.id,
                "created_by_user_id": user.id if user else None,
            }
            for group, new in plan
            for row in new
        ],
    )
    # The statistics' summary of these people, in this transaction (Core inserts: no flush).
    touched = [group.person.id if group.person else group.person_id for group, new in plan if new]
    summary.refresh(session, [person_id for person_id in touched if person_id is not None])
    # Recorded people loaded above must not show stale dose lists to the rest of the request.
    for group, new in plan:
        if group.person is not None and new:
            session.expire(group.person, ["doses"])
