"""The authorization table (``kyso.platform.authorization``) against the running platform.

(a) every endpoint of the URL map has a rule for each of its methods; (b) every rule, requested
as every actor against objects in every scope of a seeded two-province dataset (Hồ Chí Minh City,
where the actors work, and Hà Giang), answers what the table says. One seeded database per
backend for the whole module.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from support.platform_db import Databases
from support.platform_seed import PASSWORD, Seed, add_person
from support.signing_keys import Pki, make_pki, make_signer

from kyso.agent import devpki
from kyso.platform.app import create_app
from kyso.platform.auth.service import hash_password
from kyso.platform.authorization import RULES, Actor, Outcome, Rule, Scope, Target, rule_for
from kyso.platform.feedback.service import FeedbackForm, issue_form_token, submit
from kyso.platform.models import (
    Area,
    AreaLevel,
    CorrectionRequest,
    CorrectionRequestStatus,
    Facility,
    FacilityType,
    Feedback,
    Person,
    Role,
    SigningUnit,
    SigningUnitKind,
    User,
    VaccineProduct,
)
from kyso.platform.signing import batches
from kyso.platform.signing.certificates import load_trust_store
from kyso.platform.signing.manifest import load_signer
from kyso.platform.signing.selection import add_doses
from kyso.platform.users.service import active_certificate, register_certificate

ORIGIN = "http://localhost"
FEEDBACK_SECRET = b"authz-feedback-secret"
ORGANISATION = (Scope.OWN_FACILITY, Scope.SAME_UNIT, Scope.OTHER_UNIT, Scope.OTHER_PROVINCE)

# Rows that fail only because of issue 12's breaks, fixed on other branches (the lead removes
# the marker when merging them): {(endpoint, method, actor, scope): reason}.
KNOWN_BREAKS: dict[tuple[str, str, Actor, Scope | None], str] = {}


# --- the table covers the URL map ----------------------------------------------------------------


def test_every_endpoint_and_method_has_a_rule() -> None:
    app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x", "TESTING": True})
    missing = sorted(
        f"{method} {rule.endpoint} ({rule.rule})"
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        if rule_for(rule.endpoint, method) is None
    )
    assert not missing, "routes without an authorization rule (platform/authorization.py):\n" + (
        "\n".join(missing)
    )
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    stale = sorted({rule.endpoint for rule in RULES} - endpoints)
    assert not stale, f"rules for endpoints that no longer exist: {stale}"


def test_every_cell_is_complete() -> None:
    for rule in RULES:
        assert set(rule.access) == set(Actor), rule.endpoint
        for actor in Actor:
            cell = rule.access[actor]
            if not isinstance(cell, Outcome):
                assert rule.target is not None, rule.endpoint
                assert set(rule.scopes) <= set(cell), (rule.endpoint, actor)


def test_a_route_without_a_rule_is_refused(tmp_path: Path) -> None:
    app = create_app(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "SECRET_KEY": "x", "TESTING": True}
    )
    app.add_url_rule("/unruled", "unruled", lambda: "open")
    assert app.test_client().get("/unruled").status_code == 403


# --- the seeded world ---------------------------------------------------------------------------


@dataclass
class Place:
    """One province: unit ``shared`` signs for ``f1`` and ``f2``; ``f3`` signs for itself."""

    province: Area
    shared: SigningUnit
    own_unit: SigningUnit
    f1: Facility
    f2: Facility
    f3: Facility


@dataclass
class World:
    app: Flask
    ids: dict[tuple[Target, Scope], dict[str, Any]] = field(default_factory=dict)
    clients: dict[Actor, FlaskClient] = field(default_factory=dict)
    tokens: dict[Actor, str] = field(default_factory=dict)
    usernames: dict[Actor, str] = field(default_factory=dict)


def _province(session: Session, code: str, name: str) -> Place:
    province = Area(code=code, name=name, level=AreaLevel.PROVINCE)
    session.add(province)
    session.flush()
    province.province_id = province.id
    district = Area(
        code=f"{code}-D", name=f"Huyện ({name})", level=AreaLevel.DISTRICT, parent_id=province.id
    )
    district.province_id = province.id
    session.add(district)
    session.flush()
    communes = []
    for n in (1, 2, 3):
        commune = Area(
            code=f"{code}-D-{n}",
            name=f"Xã {n} ({name})",
            level=AreaLevel.COMMUNE,
            parent_id=district.id,
            province_id=province.id,
        )
        session.add(commune)
        communes.append(commune)
    shared = SigningUnit(
        code=f"SU-{code}-TTYT",
        name=f"Trung tâm Y tế huyện ({name})",
        kind=SigningUnitKind.DISTRICT_HEALTH_CENTRE,
        province_id=province.id,
        tax_code=f"{code}00000001",
    )
    own_unit = SigningUnit(
        code=f"SU-{code}-3",
        name=f"Trạm Y tế Xã 3 ({name})",
        kind=SigningUnitKind.FACILITY,
        province_id=province.id,
        tax_code=f"{code}00000003",
    )
    session.add_all([shared, own_unit])
    session.flush()
    facilities = [
        Facility(
            code=f"{code}-TYT-{n}",
            name=f"Trạm Y tế Xã {n} ({name})",
            type=FacilityType.COMMUNE_STATION,
            area_id=commune.id,
            signing_unit_id=unit.id,
        )
        for n, commune, unit in zip((1, 2, 3), communes, (shared, shared, own_unit), strict=True)
    ]
    session.add_all(facilities)
    session.flush()
    return Place(province, shared, own_unit, *facilities)


def _user(session: Session, username: str, role: Role, **kw: object) -> User:
    user = User(
        username=username,
        full_name=f"Người dùng {username}",
        password_hash=_user.password,  # type: ignore[attr-defined]
        role=role,
        **kw,
    )
    session.add(user)
    session.flush()
    return user


def _seed(session: Session, pki: Pki, instance: Path) -> tuple[dict[Actor, str], dict[Any, Any]]:
    _user.password = hash_password(PASSWORD)  # type: ignore[attr-defined]
    hcm = _province(session, "79", "Thành phố Hồ Chí Minh")
    hg = _province(session, "02", "Hà Giang")
    pfizer = VaccineProduct(
        code="EU/1/20/1528",
        name="Comirnaty (Pfizer-BioNTech)",
        manufacturer_code="ORG-100030215",
        prophylaxis_code="J07BN01",
    )
    session.add(pfizer)
    session.flush()
    national = _user(session, "admin.quocgia", Role.ADMINISTRATOR)
    actors = {
        Actor.FACILITY_STAFF: _user(
            session, "nhanvien.79", Role.FACILITY_STAFF, facility_id=hcm.f1.id
        ),
        Actor.SIGNING_OFFICER: _user(
            session,
            "kyduyet.79",
            Role.SIGNING_OFFICER,
            facility_id=hcm.f1.id,
            signing_unit_id=hcm.shared.id,
        ),
        Actor.CENTRAL_ISSUER: _user(session, "cucduphong", Role.CENTRAL_ISSUER),
        Actor.PROVINCIAL_ADMIN: _user(
            session, "admin.79", Role.ADMINISTRATOR, province_id=hcm.province.id
        ),
        Actor.NATIONAL_ADMIN: national,
    }
    # Per scope (relative to the actors, who work at Hồ Chí Minh's f1): a facility, its unit
    # and an officer there (the target of the users' pages and the owner of a batch).
    places = {
        Scope.OWN_FACILITY: (hcm.f1, hcm.shared),
        Scope.SAME_UNIT: (hcm.f2, hcm.shared),
        Scope.OTHER_UNIT: (hcm.f3, hcm.own_unit),
        Scope.OTHER_PROVINCE: (hg.f1, hg.shared),
    }
    context = batches.SigningContext(
        trust=load_trust_store(pki.anchors),
        manifest_signer=load_signer(instance / "manifest-key.pem", create=True),
        origin=ORIGIN,
    )
    ids: dict[Any, Any] = {}
    seed_view = Seed.__new__(Seed)
    seed_view.pfizer = pfizer
    now = datetime.now(UTC)
    for number, (scope, (facility, unit)) in enumerate(places.items()):
        person = add_person(
            session,
            seed_view,
            f"Nguyễn Văn Phạm Vi {number}",
            facility=facility,
            identity_number=f"0790901000{number:02d}",
            phone=f"09100000{number:02d}",
        )
        # The officer whose batch this scope's is: the actor for the own scope.
        owner = (
            actors[Actor.SIGNING_OFFICER]
            if scope is Scope.OWN_FACILITY
            else _user(
                session,
                f"kyduyet.{scope.value}",
                Role.SIGNING_OFFICER,
                facility_id=facility.id,
                signing_unit_id=unit.id,
            )
        )
        # The target of the users' pages: an officer (so the certificate pages apply) other
        # than the actors.
        target = (
            _user(
                session,
                f"muctieu.{scope.value}",
                Role.SIGNING_OFFICER,
                facility_id=facility.id,
                signing_unit_id=unit.id,
            )
            if scope is Scope.OWN_FACILITY
            else owner
        )
        # The unit's own certificate (its name as O, its tax code as UID=MST:…).
        subject = devpki.vn_organisation_subject(unit.name, tax_code=unit.tax_code)
        signer = make_signer(pki.ca, "p256", subject)
        register_certificate(session, national, owner, signer.serial)
        if target is not owner:
            register_certificate(session, national, target, make_signer(pki.ca, "p256").serial)
        session.commit()
        add_doses(session, owner, [d.id for d in person.doses])
        session.commit()
        prepared = batches.prepare(session, owner, signer.der, context)
        session.commit()
        if scope is Scope.OWN_FACILITY:  # the actor's own batch is a signed one
            attempt = prepared.attempt
            batches.accept_signatures(
                session,
                owner,
                prepared.batch_id,
                attempt.id,
                0,
                [signer.sign(d) for d in attempt.digests],
            )
            session.commit()
        feedback = submit(
            session,
            FeedbackForm(
                full_name=person.full_name,
                birth_date=person.birth_date.strftime("%d/%m/%Y"),
                phone=person.phone or "",
                identity_number=person.identity_number or "",
                field="dose_lot",
                dose_number="1",
                correct_value="FK9999",
                message="Số lô mũi 1 trên chứng nhận bị sai.",
                token=issue_form_token(FEEDBACK_SECRET, now - timedelta(seconds=30)),
            ),
            ip=f"198.51.100.{number + 1}",
            secret=FEEDBACK_SECRET,
        )
        session.commit()
        assert feedback.facility_id == facility.id
        certificate = active_certificate(session, target)
        assert certificate is not None
        ids[(Target.PERSON, scope)] = {"person_id": person.id}
        ids[(Target.DOSE, scope)] = {"dose_id": person.doses[0].id}
        ids[(Target.USER, scope)] = {"user_id": target.id}
        ids[(Target.CERTIFICATE, scope)] = {"user_id": target.id, "certificate_id": certificate.id}
        ids[(Target.FEEDBACK, scope)] = {"feedback_id": feedback.id}
        ids[(Target.BATCH, scope)] = {"batch_id": prepared.batch_id}
        # A pending correction request addressed to this scope's signing unit, about a person
        # of its own (accepting it changes only that person's phone).
        asked = add_person(
            session,
            seed_view,
            f"Trần Thị Yêu Cầu {number}",
            facility=facility,
            doses=1,
            identity_number=f"0791901000{number:02d}",
            phone=f"09200000{number:02d}",
        )
        correction_request = CorrectionRequest(
            person_id=asked.id,
            signing_unit_id=unit.id,
            status=CorrectionRequestStatus.PENDING,
            changes={"phone": f"09300000{number:02d}"},
            reason="Người dân báo số điện thoại mới.",
            person_version=asked.version,
            consented_units=[],
        )
        session.add(correction_request)
        session.flush()
        ids[(Target.REQUEST, scope)] = {"request_id": correction_request.id}
    for actor, user in actors.items():
        ids[(Target.USER, Scope.SELF, actor)] = {"user_id": user.id}
        registered = active_certificate(session, user)
        ids[(Target.CERTIFICATE, Scope.SELF, actor)] = {
            "user_id": user.id,
            "certificate_id": registered.id if registered else 0,
        }
    session.commit()
    return {actor: user.username for actor, user in actors.items()}, ids


def _csrf(client: FlaskClient) -> str:
    page = client.get("/login").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token on the login page"
    return found.group(1)


def _login(app: Flask, username: str, address: str = "127.0.0.1") -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": _csrf(client)},
    )
    assert response.status_code == 302, f"{username} could not log in"
    return client


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest,
    platform_databases: Databases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    root = tmp_path_factory.mktemp(f"authz-{request.param}")
    url = (
        platform_databases.sqlite(root)
        if request.param == "sqlite"
        else platform_databases.postgresql()
    )
    pki = make_pki(root)
    instance = root / "instance"
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "test-secret",
            "TESTING": True,
            "SESSION_COOKIE_SECURE": False,
            "REGISTRY_URL": "http://127.0.0.1:9",
            "TRUST_ANCHORS": str(pki.anchors),
            "MANIFEST_KEY": str(instance / "manifest-key.pem"),
            "PUBLIC_ORIGIN": ORIGIN,
        }
    )
    app.instance_path = str(instance)
    with app.extensions["kyso.sessions"]() as session:
        usernames, ids = _seed(session, pki, instance)
    result = World(app, ids, usernames=usernames)
    anonymous = app.test_client()
    result.clients[Actor.ANONYMOUS] = anonymous
    result.tokens[Actor.ANONYMOUS] = _csrf(anonymous)
    for actor, username in usernames.items():
        client = _login(app, username)
        result.clients[actor] = client
        result.tokens[actor] = _csrf(client)
    yield result
    app.extensions["kyso.engine"].dispose()


# --- every cell ---------------------------------------------------------------------------------


def _cases() -> Iterator[Any]:
    for rule in RULES:
        for method, actor in itertools.product(rule.methods, Actor):
            scopes: tuple[Scope | None, ...] = rule.scopes or (None,)
            for scope in scopes:
                if scope is Scope.SELF and actor is Actor.ANONYMOUS:
                    continue  # an anonymous visitor has no account of their own
                key = (rule.endpoint, method, actor, scope)
                ident = "-".join(str(p) for p in (rule.endpoint, method, actor, scope) if p)
                marks = (
                    [pytest.mark.xfail(strict=True, reason=KNOWN_BREAKS[key])]
                    if key in KNOWN_BREAKS
                    else []
                )
                yield pytest.param(rule, method, actor, scope, id=ident, marks=marks)


# Bodies that pass the CSRF check but are refused by validation once authorized.
_JSON_BODIES: dict[str, dict[str, Any]] = {
    "batches.new_attempt": {"der": "MAA="},
    "batches.post_signatures": {"attempt": "x", "offset": 0, "signatures": ["AA=="]},
}


def _url(world: World, rule: Rule, actor: Actor, scope: Scope | None) -> str:
    values: dict[str, Any] = dict(rule.extra)
    if rule.target is not None and scope is not None:
        key: Any = (rule.target, scope, actor) if scope is Scope.SELF else (rule.target, scope)
        values.update(world.ids[key])
    with world.app.test_request_context():
        from flask import url_for

        return url_for(rule.endpoint, **values)


def _observed(response: Any) -> str:
    if response.status_code in (301, 302, 303, 307, 308):
        location = urlsplit(response.headers.get("Location", "")).path
        return Outcome.LOGIN.value if location == "/login" else f"redirect {location}"
    # The JSON API's "log in" (a script cannot follow a redirect to the login form).
    api_login = ("common.login_needed", "auth.session_ended")
    if (
        response.status_code == 401
        and response.is_json
        and response.get_json()["error"] in api_login
    ):
        return Outcome.LOGIN.value
    if response.status_code == 403:
        return Outcome.FORBIDDEN.value
    if response.status_code == 404:
        return Outcome.HIDDEN.value
    return str(response.status_code)


def _matches(expected: Outcome, response: Any) -> bool:
    observed = _observed(response)
    if expected is Outcome.ALLOWED:
        refused = {Outcome.LOGIN.value, Outcome.FORBIDDEN.value, Outcome.HIDDEN.value}
        return (
            observed not in refused
            and response.status_code not in (405,)
            and (response.status_code < 500)
        )
    return observed == expected.value


@pytest.mark.parametrize(("rule", "method", "actor", "scope"), list(_cases()))
def test_outcome(world: World, rule: Rule, method: str, actor: Actor, scope: Scope | None) -> None:
    expected = rule.outcome(actor, scope)
    url = _url(world, rule, actor, scope)
    if rule.endpoint == "auth.logout":
        # A client of its own: logging out must not end the session the other cases use.
        if actor is Actor.ANONYMOUS:
            client = world.app.test_client()
        else:
            client = _login(world.app, world.usernames[actor], address="192.0.2.200")
        token = _csrf(client)
    else:
        client = world.clients[actor]
        token = world.tokens[actor]
    if method == "GET":
        response = client.get(url)
    elif url.startswith("/signing/api/"):
        response = client.post(
            url, json=_JSON_BODIES.get(rule.endpoint, {}), headers={"X-CSRFToken": token}
        )
    else:
        # Login attempts from an address of their own, so they throttle nobody else.
        environ = {"REMOTE_ADDR": "192.0.2.100"} if rule.endpoint == "auth.login" else {}
        response = client.post(url, data={"csrf_token": token}, environ_base=environ)
    if rule.endpoint == "auth.logout":
        # Allowed to everyone: it ends the session and shows the login page.
        assert expected is Outcome.ALLOWED
        assert _observed(response) == Outcome.LOGIN.value
        assert _observed(client.get("/users/me")) == Outcome.LOGIN.value
        return
    if rule.own_404 and expected is Outcome.ALLOWED and response.status_code == 404:
        return
    if rule.endpoint == "ops.readyz" and response.status_code == 503:
        # The view's own answer: the test's registry address has nothing listening.
        assert response.json["checks"]["registry"]["status"] == "fail"
        return
    assert _matches(expected, response), (
        f"{method} {url} as {actor} ({scope or 'no object'}): expected {expected.value}, "
        f"got {_observed(response)}"
    )


def test_the_dataset_spans_the_scopes(world: World) -> None:
    """The cases above compare against real objects: each scope's are distinct and exist."""
    with world.app.extensions["kyso.sessions"]() as session:
        facilities = set()
        for scope in ORGANISATION:
            person = session.get(Person, world.ids[(Target.PERSON, scope)]["person_id"])
            feedback = session.get(Feedback, world.ids[(Target.FEEDBACK, scope)]["feedback_id"])
            assert person is not None
            assert feedback is not None
            assert {d.facility_id for d in person.doses} == {feedback.facility_id}
            facilities.add(feedback.facility_id)
        assert len(facilities) == 4


# --- ids in the form body (not in the URL): outside the actor's scope ---------------------------


def _facility_and_unit(world: World, scope: Scope) -> tuple[int, int]:
    from kyso.platform.models import Dose

    with world.app.extensions["kyso.sessions"]() as session:
        dose = session.get(Dose, world.ids[(Target.DOSE, scope)]["dose_id"])
        assert dose is not None
        facility = session.get(Facility, dose.facility_id)
        assert facility is not None
        return facility.id, facility.signing_unit_id


def _post(world: World, actor: Actor, url: str, form: dict[str, Any]) -> Any:
    return world.clients[actor].post(url, data={"csrf_token": world.tokens[actor], **form})


@pytest.mark.parametrize(
    ("role", "facility_scope", "unit_scope"),
    [
        ("facility_staff", Scope.OTHER_PROVINCE, None),
        ("signing_officer", Scope.OWN_FACILITY, Scope.OTHER_PROVINCE),
        ("signing_officer", Scope.OTHER_PROVINCE, Scope.OTHER_PROVINCE),
    ],
)
def test_a_provincial_admin_cannot_create_a_user_in_another_province(
    world: World, role: str, facility_scope: Scope, unit_scope: Scope | None
) -> None:
    facility_id, _ = _facility_and_unit(world, facility_scope)
    unit_id = _facility_and_unit(world, unit_scope)[1] if unit_scope else None
    username = f"ngoaitinh.{role}.{facility_scope.value}.{unit_scope}".replace("_", "")[:60]
    response = _post(
        world,
        Actor.PROVINCIAL_ADMIN,
        "/users/new",
        {
            "username": username,
            "full_name": "Người Ngoài Tỉnh",
            "role": role,
            "facility_id": str(facility_id),
            "signing_unit_id": str(unit_id or ""),
            "language": "vi",
            "active": "1",
        },
    )
    assert response.status_code == 400
    with world.app.extensions["kyso.sessions"]() as session:
        from sqlalchemy import select

        assert session.scalar(select(User).where(User.username == username)) is None


def test_a_provincial_admin_cannot_move_a_user_to_another_province(world: World) -> None:
    target_id = world.ids[(Target.USER, Scope.OWN_FACILITY)]["user_id"]
    facility_id, unit_id = _facility_and_unit(world, Scope.OTHER_PROVINCE)
    with world.app.extensions["kyso.sessions"]() as session:
        before = session.get(User, target_id)
        assert before is not None
        kept = (before.facility_id, before.signing_unit_id, before.full_name)
    for facility, unit in ((facility_id, unit_id), (kept[0], unit_id), (facility_id, kept[1])):
        response = _post(
            world,
            Actor.PROVINCIAL_ADMIN,
            f"/users/{target_id}/edit",
            {
                "full_name": "Đã Chuyển Tỉnh",
                "role": "signing_officer",
                "facility_id": str(facility),
                "signing_unit_id": str(unit),
                "language": "vi",
                "active": "1",
            },
        )
        assert response.status_code == 400, (facility, unit)
    with world.app.extensions["kyso.sessions"]() as session:
        after = session.get(User, target_id)
        assert after is not None
        assert (after.facility_id, after.signing_unit_id, after.full_name) == kept


def _selection(world: World) -> set[int]:
    from sqlalchemy import select

    from kyso.platform.models import SigningSelection

    with world.app.extensions["kyso.sessions"]() as session:
        officer = session.scalar(
            select(User).where(User.username == world.usernames[Actor.SIGNING_OFFICER])
        )
        assert officer is not None
        return set(
            session.scalars(
                select(SigningSelection.dose_id).where(SigningSelection.user_id == officer.id)
            )
        )


@pytest.mark.parametrize("scope", [Scope.OTHER_UNIT, Scope.OTHER_PROVINCE])
def test_an_officer_cannot_select_doses_outside_their_unit(world: World, scope: Scope) -> None:
    before = _selection(world)
    person_id = world.ids[(Target.PERSON, scope)]["person_id"]
    dose_id = world.ids[(Target.DOSE, scope)]["dose_id"]
    officer = Actor.SIGNING_OFFICER
    _post(world, officer, "/signing/selection/person", {"person_id": str(person_id), "op": "add"})
    _post(world, officer, "/signing/selection", {"dose": str(dose_id)})
    _post(
        world,
        officer,
        "/signing/selection",
        {"shown": f"{dose_id}:{person_id}:1", "person": str(person_id), "action": "page_all"},
    )
    after = _selection(world)
    assert after == before
    assert dose_id not in after


@pytest.mark.parametrize(
    ("actor", "scope"),
    [
        (Actor.FACILITY_STAFF, Scope.OTHER_UNIT),
        (Actor.FACILITY_STAFF, Scope.OTHER_PROVINCE),
        (Actor.PROVINCIAL_ADMIN, Scope.OTHER_PROVINCE),
    ],
)
def test_a_dose_cannot_be_moved_to_a_facility_outside_scope(
    world: World, actor: Actor, scope: Scope
) -> None:
    from kyso.platform.models import Dose

    dose_id = world.ids[(Target.DOSE, Scope.SAME_UNIT)]["dose_id"]
    facility_id, _ = _facility_and_unit(world, scope)
    with world.app.extensions["kyso.sessions"]() as session:
        dose = session.get(Dose, dose_id)
        assert dose is not None
        kept = (dose.facility_id, dose.version)
        form = {
            "dose_number": str(dose.dose_number),
            "vaccinated_on": dose.vaccinated_on.isoformat(),
            "product_id": str(dose.product_id),
            "lot": dose.lot,
            "facility_id": str(facility_id),
            "reason": "Chuyển mũi tiêm sang cơ sở khác.",
            "version": str(dose.version),
        }
    response = _post(world, actor, f"/stats/doses/{dose_id}", form)
    assert response.status_code in (200, 400, 403, 409), response.status_code
    with world.app.extensions["kyso.sessions"]() as session:
        dose = session.get(Dose, dose_id)
        assert dose is not None
        assert (dose.facility_id, dose.version) == kept
