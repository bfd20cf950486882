"""Who is logged in, what they may open, and which records they may see or sign.

Every query of records goes through these scopes: nobody sees or signs outside them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import abort, g, redirect, request, session, url_for
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from kyso.platform.models import Facility, Role, User

P = ParamSpec("P")
R = TypeVar("R")


def current_user() -> User | None:
    if "user" not in g:
        from kyso.platform.app import db

        user_id = session.get("user_id")
        user = db().get(User, user_id) if isinstance(user_id, int) else None
        g.user = user if user is not None and user.active else None
    result: User | None = g.user
    return result


def login_required(view: Callable[P, R]) -> Callable[P, R | Any]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Any:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapped


def roles_required(*roles: Role) -> Callable[[Callable[P, R]], Callable[P, R | Any]]:
    def decorate(view: Callable[P, R]) -> Callable[P, R | Any]:
        @wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Any:
            user = current_user()
            if user is None:
                return redirect(url_for("auth.login", next=request.full_path))
            if user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


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
        from kyso.platform.models import Area

        return (
            select(Facility.id)
            .join(Area, Facility.area_id == Area.id)
            .where(Area.province_id == user.province_id)
        )
    return select(Facility.id)  # central issuers and national administrators


def may_manage(manager: User, user: User, session: Session) -> bool:
    """Administrators manage users of their province (or all); nobody else manages users."""
    if manager.role is not Role.ADMINISTRATOR:
        return False
    if manager.province_id is None:
        return True
    if user.facility_id is None:
        return user.province_id == manager.province_id
    facility_ids = set(session.scalars(visible_facilities(manager)))
    return user.facility_id in facility_ids
