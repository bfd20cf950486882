"""Which records and users a user may see, sign or manage: plain SQL scopes, no Flask.

Every query of records goes through these scopes: nobody sees or signs outside them. Services
call them with the user; who is logged in is the web layer's business (``kyso.platform.web``).
"""

from __future__ import annotations

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from kyso.platform.models import Area, Facility, Role, SigningUnit, User


def signable_facilities(user: User) -> Select[tuple[int]]:
    """Ids of the facilities whose doses this user may sign (signing officers only)."""
    if user.role is not Role.SIGNING_OFFICER or user.signing_unit_id is None:
        return select(Facility.id).where(Facility.id.is_(None))  # nothing
    return select(Facility.id).where(Facility.signing_unit_id == user.signing_unit_id)


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


def users_of_province(province_id: int) -> Select[tuple[int]]:
    """Ids of the users who belong to a province: through their facility, their signing unit,
    or (administrators) the province they administer."""
    facilities = (
        select(Facility.id)
        .join(Area, Facility.area_id == Area.id)
        .where(Area.province_id == province_id)
    )
    units = select(SigningUnit.id).where(SigningUnit.province_id == province_id)
    return select(User.id).where(
        or_(
            User.facility_id.in_(facilities),
            User.signing_unit_id.in_(units),
            and_(User.role == Role.ADMINISTRATOR, User.province_id == province_id),
        )
    )


def manageable_users(manager: User) -> Select[tuple[int]]:
    """Ids of the users an administrator manages: everyone, or the users of their province."""
    if manager.role is not Role.ADMINISTRATOR:
        return select(User.id).where(User.id.is_(None))  # nothing
    if manager.province_id is None:
        return select(User.id)
    return users_of_province(manager.province_id)


def user_provinces(user: User, session: Session) -> set[int]:
    """The provinces a user belongs to (also for a user not saved yet)."""
    provinces: set[int | None] = set()
    if user.facility_id is not None:
        facility = session.get(Facility, user.facility_id)
        if facility is not None:
            area = session.get(Area, facility.area_id)
            provinces.add(area.province_id if area is not None else None)
    if user.signing_unit_id is not None:
        unit = session.get(SigningUnit, user.signing_unit_id)
        provinces.add(unit.province_id if unit is not None else None)
    if user.role is Role.ADMINISTRATOR:
        provinces.add(user.province_id)
    return {p for p in provinces if p is not None}


def may_manage(manager: User, user: User, session: Session) -> bool:
    """Administrators manage users of their province (or all); nobody else manages users.

    A user belongs to a province through their facility, their signing unit (a district health
    centre's officer has no facility) or, for an administrator, the province they administer.
    """
    if manager.role is not Role.ADMINISTRATOR or not manager.active:
        return False
    if manager.province_id is None:
        return True
    return manager.province_id in user_provinces(user, session)
