"""User management rules without HTTP: scoping, account rules, passwords, the audit trail."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_seed import PASSWORD, ProvinceSeed, Seed, add_province

from kyso.platform.auth.access import may_manage
from kyso.platform.auth.service import authenticate
from kyso.platform.errors import DomainError
from kyso.platform.models import AuditEvent, Role, User
from kyso.platform.users import service
from kyso.platform.users.service import AuditQuery, UserForm, UserQuery


@pytest.fixture
def hanoi(session: Session, org: Seed) -> ProvinceSeed:
    data = add_province(session)
    session.commit()
    return data


@pytest.fixture
def hcm_admin(session: Session, org: Seed) -> User:
    """A provincial administrator of Hồ Chí Minh City (with a second station there)."""
    data = add_province(session, "79", prefix="hcm")
    session.commit()
    return data.admin


def usernames(page: service.Page[service.UserRow]) -> set[str]:
    return {row.user.username for row in page.items}


def events(session: Session, action: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


# --- user names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" KyDuyet.BenNghe ", "kyduyet.bennghe"),
        ("abc", "abc"),
        ("a_b-c.9", "a_b-c.9"),
        ("x" * 64, "x" * 64),
    ],
)
def test_usernames_are_normalised(text: str, expected: str) -> None:
    assert service.normalise_username(text) == expected


@pytest.mark.parametrize("text", ["", "ab", "x" * 65, "nguyễn", "a b", "a@b", "ab/c", "a+b"])
def test_bad_usernames_are_refused(text: str) -> None:
    with pytest.raises(DomainError) as caught:
        service.normalise_username(text)
    assert caught.value.key == "users.username_invalid"


# --- who sees whom ------------------------------------------------------------------------


def test_national_administrator_sees_everyone(
    session: Session, org: Seed, hanoi: ProvinceSeed
) -> None:
    page = service.list_users(session, org.admin, UserQuery())
    everyone = set(session.scalars(select(User.username)))
    assert usernames(page) == everyone
    assert page.total == len(everyone) == 8


def test_provincial_administrator_sees_only_their_province(
    session: Session, org: Seed, hanoi: ProvinceSeed, hcm_admin: User
) -> None:
    assert usernames(service.list_users(session, hanoi.admin, UserQuery())) == {
        "admin.hn",
        "kyduyet.hn",
        "nhanvien.hn",
    }
    hcm = usernames(service.list_users(session, hcm_admin, UserQuery()))
    # The district officer belongs to HCMC through their signing unit only (no facility).
    assert {"kyduyet.bennghe", "kyduyet.quan1", "nhanvien.bennghe", "admin.hcm"} <= hcm
    assert not hcm & {"admin", "cucduphong", "admin.hn", "kyduyet.hn", "nhanvien.hn"}
    assert may_manage(hcm_admin, org.district_officer, session)
    assert not may_manage(hcm_admin, org.admin, session)  # a national administrator
    assert not may_manage(hcm_admin, org.issuer, session)
    assert not may_manage(hanoi.admin, org.officer, session)


@pytest.mark.parametrize("who", ["officer", "staff", "issuer"])
def test_other_roles_see_only_themselves(session: Session, org: Seed, who: str) -> None:
    me: User = getattr(org, who)
    assert usernames(service.list_users(session, me, UserQuery())) == {me.username}
    assert not may_manage(me, org.staff, session)
    assert service.visible_user(session, me, me.id) is me
    assert service.visible_user(session, me, org.admin.id) is None


def test_search_by_name_username_role_and_facility(session: Session, org: Seed) -> None:
    def find(text: str = "", **kw: object) -> set[str]:
        return usernames(service.list_users(session, org.admin, UserQuery(text, **kw)))  # type: ignore[arg-type]

    assert find("Hồng") == {"kyduyet.bennghe"}
    assert find("trần văn") == {"kyduyet.quan1"}
    assert find("NHANVIEN") == {"nhanvien.bennghe"}
    # Facility name: staff and officer work at the Bến Nghé station.
    assert find("Trạm Y tế Phường Bến Nghé") == {"kyduyet.bennghe", "nhanvien.bennghe"}
    # Signing unit name and code.
    assert find("Quận 1") == {"kyduyet.quan1"}
    assert find("SU-79-760") == {"kyduyet.quan1"}
    # Role, by its label in either language.
    assert find("người ký duyệt") == {"kyduyet.bennghe", "kyduyet.quan1"}
    assert find("signing officer") == {"kyduyet.bennghe", "kyduyet.quan1"}
    assert find(role=Role.ADMINISTRATOR) == {"admin"}
    # LIKE wildcards are literal.
    assert find("%") == set()
    assert find("_") == set()


def test_status_filter_and_pagination(session: Session, org: Seed) -> None:
    org.staff.active = False
    session.commit()
    assert usernames(service.list_users(session, org.admin, UserQuery(active=False))) == {
        "nhanvien.bennghe"
    }
    assert "nhanvien.bennghe" not in usernames(
        service.list_users(session, org.admin, UserQuery(active=True))
    )
    pages = [service.list_users(session, org.admin, UserQuery(), n, size=2) for n in (1, 2, 3)]
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[0].pages == 3
    assert pages[0].total == 5
    assert [len(p.items) for p in pages] == [2, 2, 1]
    seen = [row.user.username for p in pages for row in p.items]
    assert len(set(seen)) == 5
    assert pages[0].has_next
    assert not pages[0].has_previous
    assert not pages[2].has_next
    # Past the end: the last page, not an empty one.
    assert service.list_users(session, org.admin, UserQuery(), 99, size=2).number == 3


def test_list_shows_active_certificates(session: Session, org: Seed) -> None:
    service.register_certificate(session, org.admin, org.officer, "0A 0B")
    session.commit()
    rows = {r.user.username: r for r in service.list_users(session, org.admin, UserQuery()).items}
    certificate = rows["kyduyet.bennghe"].certificate
    assert certificate is not None
    assert certificate.serial_hex == "A0B"
    assert rows["kyduyet.quan1"].certificate is None


# --- creating users ---------------------------------------------------------------------------


def form(**kw: object) -> UserForm:
    values: dict[str, object] = {"username": "new.user", "full_name": "Võ Thị Sáu"}
    values.update(kw)
    return UserForm(**values)  # type: ignore[arg-type]


def test_create_user_generates_a_one_time_password(session: Session, org: Seed) -> None:
    user, password = service.create_user(
        session,
        org.admin,
        form(
            username="  NguyenVan.A ",
            full_name="  Nguyễn   Văn A ",
            role=Role.SIGNING_OFFICER,
            signing_unit_id=org.unit_ben_nghe.id,
            facility_id=org.station_ben_nghe.id,
            province_id=org.province.id,  # ignored: officers are not provincial administrators
        ),
        ip="10.0.0.1",
    )
    session.commit()
    assert user.username == "nguyenvan.a"
    assert user.full_name == "Nguyễn Văn A"
    assert user.province_id is None
    assert user.signing_unit_id == org.unit_ben_nghe.id
    assert len(password) == 19
    assert password.count("-") == 3
    assert not set(password) & set("0O1lI")
    assert PasswordHasher().verify(user.password_hash, password)
    assert user.password_hash.startswith("$argon2id$")
    assert authenticate(session, "nguyenvan.a", password, "10.0.0.1").id == user.id
    created = events(session, "user.create")
    assert len(created) == 1
    assert created[0].user_id == org.admin.id
    assert created[0].target == "nguyenvan.a"
    assert created[0].ip == "10.0.0.1"
    assert created[0].detail is not None
    assert created[0].detail["role"] == "signing_officer"
    assert password not in str(created[0].detail)


def test_generated_passwords_differ() -> None:
    assert len({service.generate_password() for _ in range(50)}) == 50


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"role": Role.SIGNING_OFFICER}, "users.signing_unit_required"),
        ({"role": Role.FACILITY_STAFF}, "users.facility_required"),
        ({"role": Role.FACILITY_STAFF, "facility_id": 999999}, "users.facility_unknown"),
        ({"role": Role.SIGNING_OFFICER, "signing_unit_id": 999999}, "users.signing_unit_unknown"),
        ({"role": Role.ADMINISTRATOR, "province_id": 999999}, "users.province_unknown"),
        ({"role": Role.CENTRAL_ISSUER, "username": "ab"}, "users.username_invalid"),
        ({"role": Role.CENTRAL_ISSUER, "full_name": "   "}, "users.full_name_required"),
        ({"role": Role.CENTRAL_ISSUER, "full_name": "x" * 121}, "users.full_name_too_long"),
        ({"role": Role.CENTRAL_ISSUER, "language": "fr"}, "users.language_unknown"),
        ({"role": Role.CENTRAL_ISSUER, "username": "ADMIN"}, "users.username_taken"),
    ],
)
def test_create_user_rules(session: Session, org: Seed, kw: dict[str, object], key: str) -> None:
    before = session.scalar(select(User.id).order_by(User.id.desc()))
    with pytest.raises(DomainError) as caught:
        service.create_user(session, org.admin, form(**kw))
    assert caught.value.key == key
    assert caught.value.text("vi")
    assert caught.value.text("en")
    assert session.scalar(select(User.id).order_by(User.id.desc())) == before


def test_a_district_area_is_not_a_province(session: Session, org: Seed) -> None:
    with pytest.raises(DomainError) as caught:
        service.create_user(
            session, org.admin, form(role=Role.ADMINISTRATOR, province_id=org.district.id)
        )
    assert caught.value.key == "users.province_unknown"


def test_fields_a_role_does_not_use_are_dropped(session: Session, org: Seed) -> None:
    issuer, _ = service.create_user(
        session,
        org.admin,
        form(
            role=Role.CENTRAL_ISSUER,
            facility_id=org.station_ben_nghe.id,
            signing_unit_id=org.unit_ben_nghe.id,
            province_id=org.province.id,
        ),
    )
    assert (issuer.facility_id, issuer.signing_unit_id, issuer.province_id) == (None, None, None)
    admin, _ = service.create_user(
        session,
        org.admin,
        form(
            username="admin.79",
            role=Role.ADMINISTRATOR,
            facility_id=org.station_ben_nghe.id,
            province_id=org.province.id,
        ),
    )
    assert (admin.facility_id, admin.province_id) == (None, org.province.id)


def test_provincial_administrator_stays_in_their_province(
    session: Session, org: Seed, hanoi: ProvinceSeed
) -> None:
    def refused(key: str, **kw: object) -> None:
        with pytest.raises(DomainError) as caught:
            service.create_user(session, hanoi.admin, form(**kw))
        assert caught.value.key == key

    refused("users.outside_province", role=Role.FACILITY_STAFF, facility_id=org.station_ben_nghe.id)
    refused(
        "users.outside_province", role=Role.SIGNING_OFFICER, signing_unit_id=org.unit_district.id
    )
    refused("users.no_national_admin", role=Role.ADMINISTRATOR)
    refused("users.outside_province", role=Role.ADMINISTRATOR, province_id=org.province.id)
    refused("users.no_central_issuer", role=Role.CENTRAL_ISSUER)
    # Inside the province everything works, including a provincial administrator.
    staff, _ = service.create_user(
        session, hanoi.admin, form(role=Role.FACILITY_STAFF, facility_id=hanoi.station.id)
    )
    admin, _ = service.create_user(
        session,
        hanoi.admin,
        form(username="admin.hn2", role=Role.ADMINISTRATOR, province_id=hanoi.province.id),
    )
    assert staff.facility_id == hanoi.station.id
    assert admin.province_id == hanoi.province.id


@pytest.mark.parametrize("who", ["officer", "staff", "issuer"])
def test_only_administrators_create_users(session: Session, org: Seed, who: str) -> None:
    with pytest.raises(DomainError) as caught:
        service.create_user(session, getattr(org, who), form(role=Role.CENTRAL_ISSUER))
    assert caught.value.key == "users.not_allowed"


# --- editing users ----------------------------------------------------------------------------


def edit_form(user: User, **kw: object) -> UserForm:
    values: dict[str, object] = {
        "full_name": user.full_name,
        "role": user.role,
        "facility_id": user.facility_id,
        "signing_unit_id": user.signing_unit_id,
        "province_id": user.province_id,
        "language": user.language,
        "active": user.active,
    }
    values.update(kw)
    return UserForm(**values)  # type: ignore[arg-type]


def test_update_user_records_what_changed(session: Session, org: Seed) -> None:
    changes = service.update_user(
        session,
        org.admin,
        org.staff,
        edit_form(org.staff, full_name="Phạm Thu Trang B", language="en"),
        ip="10.0.0.2",
    )
    session.commit()
    assert changes == {
        "full_name": ["Phạm Thu Trang", "Phạm Thu Trang B"],
        "language": ["vi", "en"],
    }
    updated = events(session, "user.update")
    assert len(updated) == 1
    assert updated[0].target == "nhanvien.bennghe"
    assert updated[0].detail == {"changes": changes}
    # Saving the same values again changes nothing and records nothing.
    assert service.update_user(session, org.admin, org.staff, edit_form(org.staff)) == {}
    assert len(events(session, "user.update")) == 1


def test_role_change_and_deactivation_switch_the_certificate_off(
    session: Session, org: Seed
) -> None:
    service.register_certificate(session, org.admin, org.officer, "AA")
    service.register_certificate(session, org.admin, org.district_officer, "BB")
    changes = service.update_user(
        session,
        org.admin,
        org.officer,
        edit_form(org.officer, role=Role.FACILITY_STAFF),
    )
    assert changes["certificate"] == ["AA", None]
    assert changes["signing_unit_id"] == [org.unit_ben_nghe.id, None]
    assert service.active_certificate(session, org.officer) is None
    assert service.certificate_history(session, org.officer)[0].deactivated_reason == (
        "role_changed"
    )
    service.update_user(
        session, org.admin, org.district_officer, edit_form(org.district_officer, active=False)
    )
    session.commit()
    assert service.active_certificate(session, org.district_officer) is None
    assert service.certificate_history(session, org.district_officer)[0].deactivated_reason == (
        "account_deactivated"
    )


def test_administrators_cannot_lock_themselves_out(session: Session, org: Seed) -> None:
    for kw in ({"active": False}, {"role": Role.FACILITY_STAFF, "facility_id": 1}):
        with pytest.raises(DomainError) as caught:
            service.update_user(session, org.admin, org.admin, edit_form(org.admin, **kw))
        assert caught.value.key == "users.no_self_lockout"
    with pytest.raises(DomainError) as caught:
        service.update_user(
            session, org.admin, org.admin, edit_form(org.admin, province_id=org.province.id)
        )
    assert caught.value.key == "users.no_self_lockout"
    # Their own name and language are fine.
    assert service.update_user(
        session, org.admin, org.admin, edit_form(org.admin, language="en")
    ) == {"language": ["vi", "en"]}


def test_provincial_administrator_cannot_move_users_out_or_promote_them(
    session: Session, org: Seed, hanoi: ProvinceSeed
) -> None:
    with pytest.raises(DomainError) as caught:
        service.update_user(
            session,
            hanoi.admin,
            hanoi.staff,
            edit_form(hanoi.staff, facility_id=org.station_ben_nghe.id),
        )
    assert caught.value.key == "users.outside_province"
    with pytest.raises(DomainError) as caught:
        service.update_user(
            session,
            hanoi.admin,
            hanoi.staff,
            edit_form(hanoi.staff, role=Role.ADMINISTRATOR, facility_id=None),
        )
    assert caught.value.key == "users.no_national_admin"
    with pytest.raises(DomainError) as caught:
        service.update_user(session, hanoi.admin, org.staff, edit_form(org.staff, full_name="X"))
    assert caught.value.key == "users.not_allowed"
    session.rollback()
    assert session.get(User, hanoi.staff.id).facility_id == hanoi.station.id  # type: ignore[union-attr]
    assert session.get(User, org.staff.id).full_name == "Phạm Thu Trang"  # type: ignore[union-attr]


# --- passwords --------------------------------------------------------------------------------


def test_reset_password(session: Session, org: Seed, hanoi: ProvinceSeed) -> None:
    password = service.reset_password(session, org.admin, org.staff, ip="10.0.0.3")
    session.commit()
    assert password != PASSWORD
    with pytest.raises(DomainError):
        authenticate(session, "nhanvien.bennghe", PASSWORD, "10.0.0.3")
    assert authenticate(session, "nhanvien.bennghe", password, "10.0.0.3").id == org.staff.id
    (reset,) = events(session, "user.password_reset")
    assert (reset.user_id, reset.target) == (org.admin.id, "nhanvien.bennghe")
    with pytest.raises(DomainError) as caught:
        service.reset_password(session, hanoi.admin, org.staff)
    assert caught.value.key == "users.not_allowed"
    with pytest.raises(DomainError):
        service.reset_password(session, org.officer, org.staff)


def test_change_own_password(session: Session, org: Seed) -> None:
    def refused(key: str, current: str, new: str, again: str) -> None:
        with pytest.raises(DomainError) as caught:
            service.change_own_password(session, org.staff, current, new, again)
        assert caught.value.key == key

    refused("users.current_password_wrong", "not-my-password", "a-new-password", "a-new-password")
    refused("users.password_mismatch", PASSWORD, "a-new-password", "a-new-passw0rd")
    refused("users.password_unchanged", PASSWORD, PASSWORD, PASSWORD)
    refused("auth.password_too_short", PASSWORD, "short", "short")
    service.change_own_password(session, org.staff, PASSWORD, "a-new-password", "a-new-password")
    session.commit()
    assert authenticate(session, "nhanvien.bennghe", "a-new-password", "1.2.3.4").id == org.staff.id
    (changed,) = events(session, "user.password_change")
    assert changed.user_id == org.staff.id


# --- the audit trail --------------------------------------------------------------------------


def add_event(
    session: Session, action: str, user: User | None, target: str | None, at: datetime
) -> None:
    session.add(AuditEvent(action=action, user_id=user.id if user else None, target=target, at=at))


def test_audit_filters_and_pages(session: Session, org: Seed) -> None:
    add_event(
        session,
        "auth.login_failed",
        None,
        "kyduyet.bennghe",
        datetime(2024, 1, 1, 16, 59, tzinfo=UTC),
    )
    # 17:30 UTC on 1 January is 00:30 on 2 January in Vietnam.
    add_event(session, "auth.login", org.officer, None, datetime(2024, 1, 1, 17, 30, tzinfo=UTC))
    add_event(
        session,
        "user.create",
        org.admin,
        "nhanvien.bennghe",
        datetime(2024, 1, 3, 2, 0, tzinfo=UTC),
    )
    session.commit()

    def actions(**kw: object) -> list[str]:
        page = service.audit_events(session, org.admin, AuditQuery(**kw))  # type: ignore[arg-type]
        return [row.event.action for row in page.items]

    assert actions() == ["user.create", "auth.login", "auth.login_failed"]  # newest first
    assert actions(action="auth.login") == ["auth.login"]
    assert actions(action="auth.") == ["auth.login", "auth.login_failed"]
    assert actions(user="kyduyet.bennghe") == ["auth.login", "auth.login_failed"]
    assert actions(user="NHANVIEN") == ["user.create"]
    assert actions(user="admin") == ["user.create"]  # as the actor
    assert actions(since=date(2024, 1, 2)) == ["user.create", "auth.login"]
    assert actions(until=date(2024, 1, 1)) == ["auth.login_failed"]
    assert actions(since=date(2024, 1, 2), until=date(2024, 1, 2)) == ["auth.login"]
    with pytest.raises(DomainError) as caught:
        actions(since=date(2024, 1, 3), until=date(2024, 1, 2))
    assert caught.value.key == "users.audit_dates_reversed"
    first = service.audit_events(session, org.admin, AuditQuery(), 1, size=2)
    second = service.audit_events(session, org.admin, AuditQuery(), 2, size=2)
    assert (first.total, first.pages, len(first.items), len(second.items)) == (3, 2, 2, 1)
    failed = service.audit_events(session, org.admin, AuditQuery(action="auth.login_failed"))
    assert failed.items[0].actor is None
    created = service.audit_events(session, org.admin, AuditQuery(action="user.create"))
    assert created.items[0].actor is not None
    assert created.items[0].actor.id == org.admin.id


def test_audit_is_scoped_to_the_province(session: Session, org: Seed, hanoi: ProvinceSeed) -> None:
    at = datetime(2024, 2, 1, tzinfo=UTC)
    add_event(session, "auth.login_failed", None, "kyduyet.hn", at)  # about a Hà Nội user
    add_event(session, "auth.login_failed", None, "kyduyet.bennghe", at)  # about HCMC
    add_event(session, "auth.login_failed", None, "nobody-knows", at)  # unknown user name
    add_event(session, "user.create", org.admin, "nhanvien.hn", at)  # national admin, HN user
    add_event(session, "auth.login", hanoi.officer, None, at)  # a Hà Nội user acting
    add_event(session, "auth.login", org.officer, None, at)  # an HCMC user acting
    session.commit()
    seen = service.audit_events(session, hanoi.admin, AuditQuery())
    assert sorted((r.event.action, r.event.target or r.actor.username) for r in seen.items) == [  # type: ignore[union-attr]
        ("auth.login", "kyduyet.hn"),
        ("auth.login_failed", "kyduyet.hn"),
        ("user.create", "nhanvien.hn"),
    ]
    assert service.audit_events(session, org.admin, AuditQuery()).total == 6
    with pytest.raises(DomainError):
        service.audit_events(session, org.officer, AuditQuery())


def test_audit_detail_is_readable(session: Session, org: Seed) -> None:
    service.update_user(
        session, org.admin, org.staff, edit_form(org.staff, full_name="Phạm Thu Trang B")
    )
    session.commit()
    (row,) = service.audit_events(session, org.admin, AuditQuery(action="user.update")).items
    assert row.detail == [("changes", "full_name: Phạm Thu Trang → Phạm Thu Trang B")]
