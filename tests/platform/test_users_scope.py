"""Administrators act only inside their scope (issue 12, break 2).

The incident: a Hà Giang administrator created an officer whose facility was in Hà Giang but
whose signing unit was Hồ Chí Minh City's Bến Nghé, registered a certificate for them and signed
Bến Nghé's doses. Two provinces are seeded here: Hồ Chí Minh City (``org``) and Hà Giang, plus a
unit of the Ministry (no province) with a Ministry hospital in Hà Giang.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import PASSWORD, ProvinceSeed, Seed, add_person, add_province

from kyso.platform.auth.access import may_manage, signable_facilities
from kyso.platform.auth.service import hash_password
from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.models import (
    Facility,
    FacilityType,
    Role,
    SigningUnit,
    SigningUnitKind,
    User,
)
from kyso.platform.signing.preview import DropReason, preview
from kyso.platform.signing.search import scope_facility_ids
from kyso.platform.signing.selection import add_doses
from kyso.platform.users import service
from kyso.platform.users.service import UserForm, UserQuery


@dataclass
class World:
    hcm: Seed
    hg: ProvinceSeed
    ministry_unit: SigningUnit  # no province: signs for Ministry facilities everywhere
    ministry_hospital: Facility  # in Hà Giang, signed by the Ministry's unit
    straddler: User  # the incident's account: Hà Giang facility, Bến Nghé signing unit


@pytest.fixture
def world(session: Session, org: Seed) -> World:
    hg = add_province(session, "02", "Tỉnh Hà Giang", "hg")
    ministry_unit = SigningUnit(
        code="SU-BYT",
        name="Bệnh viện Bạch Mai (đầu mối Bộ Y tế)",
        kind=SigningUnitKind.MINISTRY_HEAD,
        province_id=None,
    )
    session.add(ministry_unit)
    session.flush()
    ministry_hospital = Facility(
        code="02-BYT-BV",
        name="Bệnh viện Bộ Y tế tại Hà Giang",
        type=FacilityType.HOSPITAL,
        area_id=hg.commune.id,
        under_ministry=True,
        signing_unit_id=ministry_unit.id,
    )
    session.add(ministry_hospital)
    # Data made before the rule: saved directly, as the old code let an administrator save it.
    straddler = User(
        username="kyduyet.vuottinh",
        full_name="Hoàng Văn Giang",
        password_hash=hash_password(PASSWORD),
        role=Role.SIGNING_OFFICER,
        facility_id=hg.station.id,
        signing_unit_id=org.unit_ben_nghe.id,
    )
    session.add(straddler)
    session.commit()
    return World(org, hg, ministry_unit, ministry_hospital, straddler)


def form(**kw: object) -> UserForm:
    values: dict[str, object] = {"username": "kyduyet.moi", "full_name": "Võ Thị Sáu"}
    values.update(kw)
    return UserForm(**values)  # type: ignore[arg-type]


def refused(call: object, key: str) -> DomainError:
    assert callable(call)
    with pytest.raises(DomainError) as caught:
        call()
    assert caught.value.key == key
    assert caught.value.text("vi") != caught.value.text("en")
    return caught.value


def no_user(session: Session, username: str) -> bool:
    return session.scalar(select(User.id).where(User.username == username)) is None


# --- service: creating and editing ------------------------------------------------------------


def test_the_incident_is_refused_for_every_actor(session: Session, world: World) -> None:
    """Hà Giang facility + Bến Nghé unit: refused for the provincial and the national
    administrator and on the command line. Failed before: all three created the account."""
    incident = form(
        role=Role.SIGNING_OFFICER,
        facility_id=world.hg.station.id,
        signing_unit_id=world.hcm.unit_ben_nghe.id,
    )
    for actor in (world.hg.admin, world.hcm.admin, None):
        error = refused(
            lambda a=actor: service.create_user(session, a, incident),  # type: ignore[misc]
            "users.unit_not_covering_facility",
        )
        assert "Trạm Y tế Phường Bến Nghé" in error.text("vi")
        assert world.hg.station.name in error.text("vi")
        session.rollback()
        assert no_user(session, "kyduyet.moi")


def test_every_field_must_lie_in_the_province(session: Session, world: World) -> None:
    """A Ministry unit (no province) covering a Hà Giang hospital: the facility is in Hà Giang,
    the unit in no province. Failed before: the Hà Giang administrator created the officer, who
    would sign every Ministry facility of the country."""
    refused(
        lambda: service.create_user(
            session,
            world.hg.admin,
            form(
                role=Role.SIGNING_OFFICER,
                facility_id=world.ministry_hospital.id,
                signing_unit_id=world.ministry_unit.id,
            ),
        ),
        "users.outside_province",
    )
    session.rollback()
    assert no_user(session, "kyduyet.moi")
    # The same move on an edit of the province's own officer.
    refused(
        lambda: service.update_user(
            session,
            world.hg.admin,
            world.hg.officer,
            UserForm(
                full_name=world.hg.officer.full_name,
                role=Role.SIGNING_OFFICER,
                facility_id=world.ministry_hospital.id,
                signing_unit_id=world.ministry_unit.id,
            ),
        ),
        "users.outside_province",
    )
    session.rollback()
    assert session.get(User, world.hg.officer.id).signing_unit_id == world.hg.unit.id  # type: ignore[union-attr]
    # A national administrator may (the Ministry's unit is theirs to staff).
    officer, _ = service.create_user(
        session,
        world.hcm.admin,
        form(
            role=Role.SIGNING_OFFICER,
            facility_id=world.ministry_hospital.id,
            signing_unit_id=world.ministry_unit.id,
        ),
    )
    assert officer.signing_unit_id == world.ministry_unit.id


def test_editing_an_officers_unit_away_from_their_facility_is_refused(
    session: Session, world: World
) -> None:
    """Keeping the Hà Giang facility and moving the unit to Bến Nghé. Failed before: the Hà
    Giang administrator's edit went through (the user still had a foot in Hà Giang)."""
    for actor in (world.hg.admin, world.hcm.admin):
        refused(
            lambda a=actor: service.update_user(  # type: ignore[misc]
                session,
                a,
                world.hg.officer,
                UserForm(
                    full_name=world.hg.officer.full_name,
                    role=Role.SIGNING_OFFICER,
                    facility_id=world.hg.station.id,
                    signing_unit_id=world.hcm.unit_ben_nghe.id,
                ),
            ),
            "users.unit_not_covering_facility",
        )
        session.rollback()
    assert session.get(User, world.hg.officer.id).signing_unit_id == world.hg.unit.id  # type: ignore[union-attr]


def test_a_provincial_administrator_creates_no_central_issuer(
    session: Session, world: World
) -> None:
    """Failed before: refused only as "outside the province", which told the administrator to
    pick a facility (a central issuer has none)."""
    error = refused(
        lambda: service.create_user(session, world.hg.admin, form(role=Role.CENTRAL_ISSUER)),
        "users.no_central_issuer",
    )
    assert "quản trị viên toàn quốc" in error.text("vi")


# --- service: users outside the province ------------------------------------------------------


def test_a_user_straddling_two_provinces_is_managed_by_neither_province(
    session: Session, world: World
) -> None:
    """Failed before: the Hà Giang (and Hồ Chí Minh City) administrator managed the incident's
    account, reset its password and registered its certificate."""
    straddler = world.straddler
    hcm_admin = add_province(session, "79", prefix="hcm").admin  # provincial, Hồ Chí Minh City
    session.commit()
    for admin in (world.hg.admin, hcm_admin):
        assert not may_manage(admin, straddler, session)
        assert service.visible_user(session, admin, straddler.id) is None
        listed = service.list_users(session, admin, UserQuery())
        assert straddler.id not in {row.user.id for row in listed.items}
        refused(
            lambda a=admin: service.update_user(  # type: ignore[misc]
                session,
                a,
                straddler,
                UserForm(full_name="X", role=Role.SIGNING_OFFICER, active=False),
            ),
            "users.not_allowed",
        )
        refused(
            lambda a=admin: service.reset_password(session, a, straddler),  # type: ignore[misc]
            "users.not_allowed",
        )
        refused(
            lambda a=admin: service.register_certificate(session, a, straddler, "5401AB"),  # type: ignore[misc]
            "users.certificate_not_allowed",
        )
        session.rollback()
    assert service.active_certificate(session, straddler) is None
    assert session.get(User, straddler.id).active  # type: ignore[union-attr]
    # The national administrator does manage them (and corrects them: the next test).
    assert may_manage(world.hcm.admin, straddler, session)


def test_no_certificate_for_an_inconsistent_account_until_it_is_corrected(
    session: Session, world: World
) -> None:
    """Failed before: the national administrator registered the incident account's serial."""
    refused(
        lambda: service.register_certificate(session, world.hcm.admin, world.straddler, "5401AB"),
        "users.certificate_account_inconsistent",
    )
    session.rollback()
    assert service.active_certificate(session, world.straddler) is None
    # The national administrator corrects the account (a Bến Nghé officer at Bến Nghé), then
    # registers.
    service.update_user(
        session,
        world.hcm.admin,
        world.straddler,
        UserForm(
            full_name=world.straddler.full_name,
            role=Role.SIGNING_OFFICER,
            facility_id=world.hcm.station_ben_nghe.id,
            signing_unit_id=world.hcm.unit_ben_nghe.id,
        ),
    )
    registered = service.register_certificate(session, world.hcm.admin, world.straddler, "5401AB")
    assert registered.serial_hex == "5401AB"


def test_provincial_administrator_still_manages_their_own_province(
    session: Session, world: World
) -> None:
    """The rule does not lock a province out of its own users (passes before and after; the
    tests above are the ones that failed)."""
    hg = world.hg
    for user in (hg.officer, hg.staff, hg.admin):
        assert may_manage(hg.admin, user, session)
    officer, _ = service.create_user(
        session,
        hg.admin,
        form(role=Role.SIGNING_OFFICER, facility_id=hg.station.id, signing_unit_id=hg.unit.id),
    )
    assert service.register_certificate(session, hg.admin, officer, "0A0B").serial_hex == "A0B"


# --- the signing scope ------------------------------------------------------------------------


def test_an_inconsistent_officer_signs_nothing(session: Session, world: World) -> None:
    """The incident's account, already in the database: Bến Nghé's doses are out of its scope.
    Failed before: its scope was Bến Nghé's facilities and it ticked Bến Nghé's doses."""
    person = add_person(session, world.hcm, "Nguyễn Thị Bến Nghé", doses=2)
    session.commit()
    straddler = world.straddler
    assert list(session.scalars(signable_facilities(straddler))) == []
    error = refused(
        lambda: scope_facility_ids(session, straddler), "signing.unit_not_covering_facility"
    )
    assert world.hg.station.name in error.text("vi")
    with pytest.raises(DomainError):
        add_doses(session, straddler, [d.id for d in person.doses])
    session.rollback()
    # A consistent officer of the same unit keeps their scope.
    assert world.hcm.station_ben_nghe.id in scope_facility_ids(session, world.hcm.officer)
    assert add_doses(session, world.hcm.officer, [d.id for d in person.doses]).added == 2


def test_a_selection_made_before_drops_out_of_the_batch(session: Session, world: World) -> None:
    """An officer ticks Bến Nghé's doses, then their account is left with a Hà Giang facility
    (saved directly, as before the rule): the preview that batch preparation uses drops every
    dose as out of scope. Failed before: the doses stayed signable."""
    person = add_person(session, world.hcm, "Nguyễn Thị Bến Nghé", doses=2)
    officer = world.hcm.officer
    assert add_doses(session, officer, [d.id for d in person.doses]).added == 2
    officer.facility_id = world.hg.station.id
    session.flush()
    result = preview(session, officer)
    assert result.people == ()
    assert [d.reason for d in result.dropped] == [DropReason.OUT_OF_SCOPE] * 2


# --- through the pages ------------------------------------------------------------------------


def post(client: FlaskClient, path: str, data: dict[str, str]) -> object:
    token = csrf_token(client, "/users/me")
    return client.post(path, data={**data, "csrf_token": token})


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


def status(response: object) -> int:
    return response.status_code  # type: ignore[attr-defined,no-any-return]


def new_user(**kw: str) -> dict[str, str]:
    data = {
        "username": "kyduyet.moi",
        "full_name": "Hoàng Văn Mới",
        "role": "signing_officer",
        "facility_id": "",
        "signing_unit_id": "",
        "province_id": "",
        "language": "vi",
        "active": "1",
    }
    data.update(kw)
    return data


def shown(key: str, **values: str) -> str:
    return str(escape(translate(key, "vi", **values)))


def test_pages_refuse_the_incident(client: FlaskClient, session: Session, world: World) -> None:
    """Failed before: the Hà Giang administrator's form created the officer (200 and a
    password) and the Ministry-unit officer; the central issuer was refused with the
    "outside the province" text."""
    login(client, "admin.hg")
    response = post(
        client,
        "/users/new",
        new_user(
            facility_id=str(world.hg.station.id), signing_unit_id=str(world.hcm.unit_ben_nghe.id)
        ),
    )
    assert status(response) == 400
    covering = session.get(SigningUnit, world.hg.unit.id)
    assert covering is not None
    assert shown(
        "users.unit_not_covering_facility",
        unit=world.hcm.unit_ben_nghe.name,
        facility=world.hg.station.name,
        covering=covering.name,
    ) in text(response)
    response = post(
        client,
        "/users/new",
        new_user(
            facility_id=str(world.ministry_hospital.id),
            signing_unit_id=str(world.ministry_unit.id),
        ),
    )
    assert status(response) == 400
    assert shown("users.outside_province") in text(response)
    response = post(client, "/users/new", new_user(role="central_issuer"))
    assert status(response) == 400
    assert shown("users.no_central_issuer") in text(response)
    session.expire_all()
    assert no_user(session, "kyduyet.moi")


def test_pages_hide_a_user_outside_the_province(
    client: FlaskClient, session: Session, world: World
) -> None:
    """Every page about the incident's account answers 404 to the Hà Giang administrator.
    Failed before: the list showed it, and edit, password reset and certificate registration
    worked."""
    straddler = world.straddler
    login(client, "admin.hg")
    assert straddler.full_name not in text(client.get("/users/"))
    for path in (f"/users/{straddler.id}", f"/users/{straddler.id}/edit"):
        assert status(client.get(path)) == 404, path
    response = post(
        client,
        f"/users/{straddler.id}/edit",
        new_user(
            full_name="Đổi Tên",
            facility_id=str(world.hg.station.id),
            signing_unit_id=str(world.hcm.unit_ben_nghe.id),
        ),
    )
    assert status(response) == 404
    assert status(post(client, f"/users/{straddler.id}/password", {})) == 404
    assert status(post(client, f"/users/{straddler.id}/certificate", {"serial": "5401AB"})) == 404
    session.expire_all()
    fresh = session.get(User, straddler.id)
    assert fresh is not None
    assert fresh.full_name == "Hoàng Văn Giang"
    assert service.active_certificate(session, fresh) is None


def test_national_page_refuses_a_certificate_for_an_inconsistent_account(
    client: FlaskClient, session: Session, world: World
) -> None:
    """Failed before: the national administrator's registration page bound the serial."""
    login(client, "admin")
    response = post(client, f"/users/{world.straddler.id}/certificate", {"serial": "54 01 AB"})
    assert status(response) == 400
    assert shown("users.certificate_account_inconsistent", facility=world.hg.station.name) in text(
        response
    )
    session.expire_all()
    assert service.active_certificate(session, world.straddler) is None
