"""Which records and users a user may see, sign or manage: plain SQL scopes, no Flask.

Every query of records goes through these scopes: nobody sees or signs outside them. Services
call them with the user; who is logged in is the web layer's business (``kyso.platform.web``).
"""

from __future__ import annotations

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, aliased

from kyso.platform.models import Area, Facility, Role, SigningUnit, User


def signable_facilities(user: User) -> Select[tuple[int]]:
    """Ids of the facilities whose doses this user may sign (signing officers only).

    An officer who works at a facility signs only if their signing unit covers that facility
    (``facility.signing_unit_id == user.signing_unit_id``): an account whose facility lies
    under another unit (a unit of another province, say) is inconsistent and signs nothing
    until an administrator corrects it. An officer without a facility (a district health
    centre's officer) signs for their unit's facilities.
    """
    if user.role is not Role.SIGNING_OFFICER or user.signing_unit_id is None:
        return select(Facility.id).where(Facility.id.is_(None))  # nothing
    stmt = select(Facility.id).where(Facility.signing_unit_id == user.signing_unit_id)
    if user.facility_id is not None:
        own = aliased(Facility)
        covered = (
            select(own.id)
            .where(own.id == user.facility_id, own.signing_unit_id == user.signing_unit_id)
            .exists()
        )
        stmt = stmt.where(covered)
    return stmt


def visible_facilities(user: User) -> Select[tuple[int]]:
    """Ids of the facilities whose records this user may see."""
    if user.role is Role.SIGNING_OFFICER:
        return signable_facilities(user)
    if user.role is Role.FACILITY_STAFF:
        return select(Facility.id).where(Facility.id == user.facility_id)
    if user.role is Role.ADMINISTRATOR and user.province_id is not None:
        return (
            select(Facility.id)
            .join(Area, Facility.area_id == Area.id)
            .where(Area.province_id == user.province_id)
        )
    return select(Facility.id)  # central issuers and national administrators


def recordable_facilities(user: User) -> Select[tuple[int]]:
    """Ids of the facilities whose doses this user may enter and correct (records.service's
    ``may_record_at`` as a query): staff their facility's signing unit, administrators their
    scope, nobody else. A person with a dose outside it is shared with another unit, which
    keeps the person's phone, address and area."""
    if not user.active:
        return select(Facility.id).where(Facility.id.is_(None))  # nothing
    if user.role is Role.FACILITY_STAFF:
        unit = select(Facility.signing_unit_id).where(Facility.id == user.facility_id)
        return select(Facility.id).where(Facility.signing_unit_id.in_(unit))
    if user.role is Role.ADMINISTRATOR:
        return visible_facilities(user)
    return select(Facility.id).where(Facility.id.is_(None))  # nothing


def _facilities_of_province(province_id: int) -> Select[tuple[int]]:
    return (
        select(Facility.id)
        .join(Area, Facility.area_id == Area.id)
        .where(Area.province_id == province_id)
    )


def users_of_province(province_id: int) -> Select[tuple[int]]:
    """Ids of the users who lie wholly inside a province: every one of their facility, their
    signing unit and (administrators) the province they administer that is set is in it, and
    at least one is set.

    A user with one foot in another province (a facility here, a signing unit there) belongs to
    neither province's administrator: only a national administrator manages them.
    """
    facilities = _facilities_of_province(province_id)
    units = select(SigningUnit.id).where(SigningUnit.province_id == province_id)
    return select(User.id).where(
        or_(User.facility_id.is_(None), User.facility_id.in_(facilities)),
        or_(User.signing_unit_id.is_(None), User.signing_unit_id.in_(units)),
        or_(User.province_id.is_(None), User.province_id == province_id),
        or_(
            User.facility_id.is_not(None),
            User.signing_unit_id.is_not(None),
            User.province_id.is_not(None),
        ),
    )


def manageable_users(manager: User) -> Select[tuple[int]]:
    """Ids of the users an administrator manages: everyone, or the users of their province."""
    if manager.role is not Role.ADMINISTRATOR:
        return select(User.id).where(User.id.is_(None))  # nothing
    if manager.province_id is None:
        return select(User.id)
    return users_of_province(manager.province_id)


def user_provinces(user: User, session: Session) -> set[int | None]:
    """The provinces of every field of a user that is set (also for a user not saved yet):
    their facility's, their signing unit's and the province they administer.

    ``None`` in the set means a field outside every province: a unit of the Ministry, or a
    facility or unit that does not exist.
    """
    provinces: set[int | None] = set()
    if user.facility_id is not None:
        facility = session.get(Facility, user.facility_id)
        area = session.get(Area, facility.area_id) if facility is not None else None
        provinces.add(area.province_id if area is not None else None)
    if user.signing_unit_id is not None:
        unit = session.get(SigningUnit, user.signing_unit_id)
        provinces.add(unit.province_id if unit is not None else None)
    if user.province_id is not None:
        provinces.add(user.province_id)
    return provinces


def within_province(user: User, province_id: int, session: Session) -> bool:
    """Every field of the user that is set lies in the province (and at least one is set);
    the same rule as ``users_of_province``, for one user (also one not saved yet)."""
    return user_provinces(user, session) == {province_id}


def may_manage(manager: User, user: User, session: Session) -> bool:
    """Administrators manage users of their province (or all); nobody else manages users.

    A provincial administrator manages a user only if the user lies wholly inside their
    province (``within_province``): their facility, their signing unit (a district health
    centre's officer has no facility) and, for an administrator, the province they administer.
    """
    if manager.role is not Role.ADMINISTRATOR or not manager.active:
        return False
    if manager.province_id is None:
        return True
    return within_province(user, manager.province_id, session)
