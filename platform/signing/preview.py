"""The preview ("Xem danh sách"): exactly the doses that would be signed, checked again now.

Between ticking and previewing, a dose may have been edited, its person un-verified, someone
else may have signed it, or the officer's signing unit may have changed. Such doses drop out of
the selection here, each with the reason, so that what the officer reviews is what a batch
prepared from this preview (the signing issue's ``prepare``) would sign.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from kyso.platform.i18n import translate
from kyso.platform.models import (
    Dose,
    Facility,
    Gender,
    Person,
    SigningSelection,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.signing.search import (
    SigningState,
    scope_facility_ids,
    signed_any,
    signed_current,
)
from kyso.platform.signing.selection import MAX_DOSES, MAX_PEOPLE
from kyso.platform.signing.texts import status_reason


class DropReason(enum.StrEnum):
    OUT_OF_SCOPE = "out_of_scope"
    NOT_VERIFIED = "not_verified"
    CHANGED = "changed"
    ALREADY_SIGNED = "already_signed"


@dataclass(frozen=True)
class Dropped:
    """A ticked dose that left the selection, and why."""

    dose_id: int
    person_name: str
    dose_number: int
    facility: str
    reason: DropReason
    status: VerificationStatus
    detail: Mapping[str, Any] | None

    def text(self, lang: str) -> str:
        return translate(
            f"signing.dropped_{self.reason.value}",
            lang,
            name=self.person_name,
            number=self.dose_number,
            facility=self.facility,
            reason=status_reason(self.status, self.detail, lang),
        )


@dataclass(frozen=True)
class PreviewDose:
    id: int
    version: int  # the version that a batch prepared from this preview signs
    dose_number: int
    vaccinated_on: date
    product: str
    lot: str
    facility_id: int
    facility: str
    state: SigningState  # UNSIGNED or RESIGN


@dataclass(frozen=True)
class PreviewPerson:
    id: int
    full_name: str
    birth_date: date
    gender: Gender
    identity_number: str | None
    doses: tuple[PreviewDose, ...]


@dataclass(frozen=True)
class Preview:
    people: tuple[PreviewPerson, ...]
    dropped: tuple[Dropped, ...]

    @property
    def people_count(self) -> int:
        return len(self.people)

    @property
    def dose_count(self) -> int:
        return sum(len(p.doses) for p in self.people)

    @property
    def doses(self) -> dict[int, int]:
        """Dose id -> version: what a batch prepared from this preview must sign."""
        return {d.id: d.version for p in self.people for d in p.doses}

    @property
    def first_date(self) -> date | None:
        return min((d.vaccinated_on for p in self.people for d in p.doses), default=None)

    @property
    def last_date(self) -> date | None:
        return max((d.vaccinated_on for p in self.people for d in p.doses), default=None)

    @property
    def facilities(self) -> tuple[str, ...]:
        """The facilities that administered the doses, by name (each once)."""
        return tuple(sorted({d.facility for p in self.people for d in p.doses}))

    @property
    def resign_count(self) -> int:
        return sum(1 for p in self.people for d in p.doses if d.state is SigningState.RESIGN)

    @property
    def within_limits(self) -> bool:
        return 0 < self.dose_count <= MAX_DOSES and self.people_count <= MAX_PEOPLE


def preview(session: Session, officer: User) -> Preview:
    """The officer's selection, re-validated; doses that no longer qualify are removed from it.

    The caller owns the transaction (commit to make the removals stick).
    """
    scope = set(scope_facility_ids(session, officer))
    rows = session.execute(
        select(
            SigningSelection.dose_version.label("selected_version"),
            Dose.id,
            Dose.version,
            Dose.dose_number,
            Dose.vaccinated_on,
            Dose.lot,
            Dose.facility_id,
            VaccineProduct.name.label("product"),
            Facility.name.label("facility"),
            Person.id.label("person_id"),
            Person.full_name,
            Person.birth_date,
            Person.gender,
            Person.identity_number,
            Person.verification_status,
            Person.verification_detail,
            signed_current().label("signed"),
            signed_any().label("signed_before"),
        )
        .join(Dose, Dose.id == SigningSelection.dose_id)
        .join(Person, Person.id == Dose.person_id)
        .join(VaccineProduct, VaccineProduct.id == Dose.product_id)
        .join(Facility, Facility.id == Dose.facility_id)
        .where(SigningSelection.user_id == officer.id)
        .order_by(Person.name_key, Person.id, Dose.dose_number, Dose.id)
    )
    people: list[PreviewPerson] = []
    dropped: list[Dropped] = []
    current: list[PreviewDose] = []
    last: Any = None

    def close_person() -> None:
        if last is not None and current:
            people.append(
                PreviewPerson(
                    id=last.person_id,
                    full_name=last.full_name,
                    birth_date=last.birth_date,
                    gender=last.gender,
                    identity_number=last.identity_number,
                    doses=tuple(current),
                )
            )

    for row in rows:
        if last is None or row.person_id != last.person_id:
            close_person()
            current = []
            last = row
        reason = _drop_reason(row, scope)
        if reason is not None:
            dropped.append(
                Dropped(
                    dose_id=row.id,
                    person_name=row.full_name,
                    dose_number=row.dose_number,
                    facility=row.facility,
                    reason=reason,
                    status=row.verification_status,
                    detail=row.verification_detail,
                )
            )
            continue
        current.append(
            PreviewDose(
                id=row.id,
                version=row.version,
                dose_number=row.dose_number,
                vaccinated_on=row.vaccinated_on,
                product=row.product,
                lot=row.lot,
                facility_id=row.facility_id,
                facility=row.facility,
                state=SigningState.RESIGN if row.signed_before else SigningState.UNSIGNED,
            )
        )
    close_person()
    if dropped:
        ids = [d.dose_id for d in dropped]
        for start in range(0, len(ids), 500):
            session.execute(
                delete(SigningSelection).where(
                    SigningSelection.user_id == officer.id,
                    SigningSelection.dose_id.in_(ids[start : start + 500]),
                )
            )
    return Preview(people=tuple(people), dropped=tuple(dropped))


def _drop_reason(row: Any, scope: set[int]) -> DropReason | None:
    if row.facility_id not in scope:
        return DropReason.OUT_OF_SCOPE
    if row.verification_status is not VerificationStatus.VERIFIED:
        return DropReason.NOT_VERIFIED
    if row.signed:
        return DropReason.ALREADY_SIGNED
    if row.version != row.selected_version:
        return DropReason.CHANGED
    return None
