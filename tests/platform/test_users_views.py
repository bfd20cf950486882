"""User management pages through Flask's test client, CSRF protection on."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import PASSWORD, ProvinceSeed, Seed, add_province

from kyso.platform.models import AuditEvent, Role, User


@pytest.fixture
def hanoi(session: Session, org: Seed) -> ProvinceSeed:
    data = add_province(session)
    session.commit()
    return data


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


def post(client: FlaskClient, path: str, data: dict[str, str]) -> object:
    token = csrf_token(client, "/users/me")
    return client.post(path, data={**data, "csrf_token": token})


def fresh(session: Session, user_id: int) -> User:
    session.expire_all()
    user = session.get(User, user_id)
    assert user is not None
    return user


def assert_no_inline_code(page: str) -> None:
    assert "<script>" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert " style=" not in page
    assert not re.search(r"\son[a-z]+=", page)  # no onclick= and friends


# --- the list ---------------------------------------------------------------------------------


def test_administrator_sees_the_user_list(client: FlaskClient, org: Seed) -> None:
    login(client, "admin")
    response = client.get("/users/")
    page = text(response)
    assert response.status_code == 200
    assert "Danh sách người dùng" in page
    for name in ("Lê Thị Hồng", "Trần Văn Minh", "Phạm Thu Trang", "Cục Y tế dự phòng"):
        assert name in page
    # "Đăng ký chứng thư số" on each officer's row, and only there.
    assert page.count(f'href="/users/{org.officer.id}/certificate"') == 1
    assert page.count(f'href="/users/{org.district_officer.id}/certificate"') == 1
    assert f'href="/users/{org.staff.id}/certificate"' not in page
    assert "Chưa đăng ký" in page
    assert_no_inline_code(page)


def test_search_and_pages(client: FlaskClient, app: object, org: Seed) -> None:
    login(client, "admin")
    page = text(client.get("/users/?q=h%E1%BB%93ng"))  # "hồng"
    assert "Lê Thị Hồng" in page
    assert "Trần Văn Minh" not in page
    assert "1 người dùng" in page
    page = text(client.get("/users/?role=signing_officer"))
    assert "Lê Thị Hồng" in page
    assert "Trần Văn Minh" in page
    assert "Phạm Thu Trang" not in page
    app.config["PAGE_SIZE"] = 2  # type: ignore[attr-defined]
    first = text(client.get("/users/?role=&status=all"))
    assert "Trang 1/3" in first
    assert 'href="/users/?page=2&amp;q=&amp;role=&amp;status=all"' in first
    assert "Trang 3/3" in text(client.get("/users/?page=3"))


def test_other_roles_land_on_their_profile(client: FlaskClient, org: Seed) -> None:
    login(client, "nhanvien.bennghe")
    response = client.get("/users/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/users/me")
    page = text(client.get("/users/me"))
    assert "Phạm Thu Trang" in page
    assert "Lê Thị Hồng" not in page
    assert "Đổi mật khẩu" in page
    assert_no_inline_code(page)


@pytest.mark.parametrize("username", ["kyduyet.bennghe", "nhanvien.bennghe", "cucduphong"])
def test_wrong_roles_get_403(
    client: FlaskClient, session: Session, org: Seed, username: str
) -> None:
    login(client, username)
    other = org.admin.id
    for path in (
        "/users/new",
        "/users/audit",
        f"/users/{other}",
        f"/users/{other}/edit",
        f"/users/{org.district_officer.id}/certificate",
    ):
        assert client.get(path).status_code == 403, path
    for path in (
        "/users/new",
        f"/users/{org.staff.id}/edit",
        f"/users/{org.staff.id}/password",
        f"/users/{org.district_officer.id}/certificate",
    ):
        assert post(client, path, {"full_name": "X", "role": "administrator"}).status_code == 403
    assert fresh(session, org.staff.id).full_name == "Phạm Thu Trang"


def test_anonymous_is_sent_to_login(client: FlaskClient, org: Seed) -> None:
    for path in ("/users/", "/users/me", "/users/audit", f"/users/{org.officer.id}/certificate"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_provincial_administrator_sees_only_their_province(
    client: FlaskClient, org: Seed, hanoi: ProvinceSeed
) -> None:
    login(client, "admin.hn")
    page = text(client.get("/users/"))
    assert "Nguyễn Văn An" in page
    assert "Lê Thị Hồng" not in page
    assert "Quản trị viên cấp tỉnh" in page or "chỉ thấy người dùng của tỉnh mình" in page
    # Other provinces' users do not exist for them.
    for path in (
        f"/users/{org.officer.id}",
        f"/users/{org.officer.id}/edit",
        f"/users/{org.officer.id}/certificate",
        f"/users/{org.admin.id}",
    ):
        assert client.get(path).status_code == 404, path
    assert post(client, f"/users/{org.officer.id}/certificate", {"serial": "AA"}).status_code == (
        404
    )
    assert post(client, f"/users/{org.staff.id}/password", {}).status_code == 404
    assert client.get(f"/users/{hanoi.officer.id}/certificate").status_code == 200


# --- creating and editing ---------------------------------------------------------------------


def new_user_form(**kw: str) -> dict[str, str]:
    data = {
        "username": "Kyduyet.Moi",
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


def test_create_user_shows_the_password_once(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    login(client, "admin")
    form_page = text(client.get("/users/new"))
    assert 'name="csrf_token"' in form_page
    assert "Trạm Y tế Phường Bến Nghé" in form_page
    assert_no_inline_code(form_page)
    response = post(client, "/users/new", new_user_form(signing_unit_id=str(org.unit_district.id)))
    page = text(response)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "Đã tạo tài khoản kyduyet.moi" in page
    password = re.search(r'<code class="secret">([^<]+)</code>', page)
    assert password
    user = session.scalar(select(User).where(User.username == "kyduyet.moi"))
    assert user is not None
    assert user.signing_unit_id == org.unit_district.id
    # The password works, and it is on no other page.
    other = client.application.test_client()
    assert login(other, "kyduyet.moi", password.group(1)).status_code == 302
    assert password.group(1) not in text(client.get(f"/users/{user.id}"))


def test_create_without_csrf_is_refused(client: FlaskClient, session: Session, org: Seed) -> None:
    login(client, "admin")
    response = client.post("/users/new", data=new_user_form(signing_unit_id="1"))
    assert response.status_code == 400
    assert session.scalar(select(User).where(User.username == "kyduyet.moi")) is None


def test_create_errors_keep_the_form(client: FlaskClient, session: Session, org: Seed) -> None:
    login(client, "admin")
    response = post(client, "/users/new", new_user_form())  # an officer without a unit
    page = text(response)
    assert response.status_code == 400
    assert "Người ký duyệt phải thuộc một đơn vị ký" in page
    assert 'value="Kyduyet.Moi"' in page
    assert 'value="Hoàng Văn Mới"' in page
    assert session.scalar(select(User).where(User.username == "kyduyet.moi")) is None
    response = post(client, "/users/new", new_user_form(role="nobody"))
    assert response.status_code == 400
    assert "Vai trò không hợp lệ" in text(response)
    response = post(client, "/users/new", new_user_form(facility_id="x1"))
    assert response.status_code == 400
    assert "Lựa chọn không hợp lệ" in text(response)


def test_provincial_admin_cannot_create_outside(
    client: FlaskClient, session: Session, org: Seed, hanoi: ProvinceSeed
) -> None:
    login(client, "admin.hn")
    form_page = text(client.get("/users/new"))
    assert "Trạm Y tế Phường Bến Nghé" not in form_page  # only their province is offered
    assert "Toàn quốc" not in form_page
    response = post(
        client,
        "/users/new",
        new_user_form(role="facility_staff", facility_id=str(org.station_ben_nghe.id)),
    )
    assert response.status_code == 400
    assert "chỉ quản lý người dùng của tỉnh mình" in text(response)
    response = post(client, "/users/new", new_user_form(role="administrator"))
    assert response.status_code == 400
    assert "không tạo được quản trị viên toàn quốc" in text(response)
    assert session.scalar(select(User).where(User.username == "kyduyet.moi")) is None


def test_edit_user(client: FlaskClient, session: Session, org: Seed) -> None:
    login(client, "admin")
    page = text(client.get(f"/users/{org.staff.id}/edit"))
    assert 'value="Phạm Thu Trang"' in page
    response = post(
        client,
        f"/users/{org.staff.id}/edit",
        {
            "full_name": "Phạm Thu Trang",
            "role": "facility_staff",
            "facility_id": str(org.station_ben_thanh.id),
            "language": "vi",
            # "active" unticked: deactivate
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/users/{org.staff.id}")
    user = fresh(session, org.staff.id)
    assert user.facility_id == org.station_ben_thanh.id
    assert not user.active
    assert "Đã lưu thông tin của Phạm Thu Trang" in text(client.get(response.headers["Location"]))
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.update")).one()
    assert event.detail is not None
    assert set(event.detail["changes"]) == {"facility_id", "active"}
    # The deactivated user can no longer log in.
    assert login(client.application.test_client(), "nhanvien.bennghe").status_code == 401


def test_admin_cannot_deactivate_themselves(
    client: FlaskClient, session: Session, org: Seed
) -> None:
    login(client, "admin")
    response = post(
        client,
        f"/users/{org.admin.id}/edit",
        {"full_name": "Quản trị viên", "role": "administrator", "language": "vi"},
    )
    assert response.status_code == 400
    assert "Hãy nhờ một quản trị viên khác" in text(response)
    assert fresh(session, org.admin.id).active


def test_reset_password(client: FlaskClient, session: Session, org: Seed) -> None:
    login(client, "admin")
    page = text(client.get(f"/users/{org.staff.id}"))
    assert f'action="/users/{org.staff.id}/password"' in page
    response = post(client, f"/users/{org.staff.id}/password", {})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    password = re.search(r'<code class="secret">([^<]+)</code>', text(response))
    assert password
    assert login(client.application.test_client(), "nhanvien.bennghe").status_code == 401
    other = client.application.test_client()
    assert login(other, "nhanvien.bennghe", password.group(1)).status_code == 302
    assert client.post(f"/users/{org.staff.id}/password").status_code == 400  # no CSRF token


def test_change_own_password(client: FlaskClient, org: Seed) -> None:
    login(client, "nhanvien.bennghe")
    response = post(
        client,
        "/users/me/password",
        {
            "current_password": "wrong-password",
            "new_password": "x" * 12,
            "confirm_password": "x" * 12,
        },
    )
    assert response.status_code == 302
    assert "Mật khẩu hiện tại không đúng" in text(client.get("/users/me"))
    response = post(
        client,
        "/users/me/password",
        {
            "current_password": PASSWORD,
            "new_password": "mat-khau-moi-2024",
            "confirm_password": "mat-khau-moi-2024",
        },
    )
    assert "Đã đổi mật khẩu" in text(client.get("/users/me"))
    assert login(client.application.test_client(), "nhanvien.bennghe").status_code == 401
    other = client.application.test_client()
    assert login(other, "nhanvien.bennghe", "mat-khau-moi-2024").status_code == 302


def test_english_pages(client: FlaskClient, org: Seed) -> None:
    login(client, "admin")
    client.get("/lang/en")
    page = text(client.get("/users/"))
    assert "User list" in page
    assert "Signing officer" in page
    assert "Danh sách người dùng" not in page


# --- the audit trail --------------------------------------------------------------------------


def test_audit_page(client: FlaskClient, session: Session, org: Seed, hanoi: ProvinceSeed) -> None:
    login(client.application.test_client(), "kyduyet.bennghe", "wrong-password-1")
    login(client.application.test_client(), "kyduyet.hn", "wrong-password-1")
    login(client, "admin")
    page = text(client.get("/users/audit"))
    assert "Nhật ký hệ thống" in page
    assert "Đăng nhập thất bại" in page
    assert "kyduyet.bennghe" in page
    assert "kyduyet.hn" in page
    assert_no_inline_code(page)
    filtered = text(client.get("/users/audit?action=auth.login_failed&user=bennghe"))
    assert "kyduyet.bennghe" in filtered
    assert "kyduyet.hn" not in filtered
    assert "1 sự kiện" in filtered
    response = client.get("/users/audit?since=2024-13-01")
    assert response.status_code == 400
    assert "không hợp lệ" in text(response)
    response = client.get("/users/audit?since=2024-02-01&until=2024-01-01")
    assert response.status_code == 400
    assert "Ngày bắt đầu sau ngày kết thúc" in text(response)

    provincial = client.application.test_client()
    login(provincial, "admin.hn")
    page = text(provincial.get("/users/audit?action=auth.login_failed"))
    assert "kyduyet.hn" in page
    assert "kyduyet.bennghe" not in page


def test_audit_records_user_management(client: FlaskClient, session: Session, org: Seed) -> None:
    login(client, "admin")
    post(client, "/users/new", new_user_form(role="central_issuer"))
    post(client, f"/users/{org.staff.id}/password", {})
    page = text(client.get("/users/audit?action=user."))
    assert "Tạo tài khoản" in page
    assert "Đặt lại mật khẩu" in page
    assert "kyduyet.moi" in page
    # IP addresses are recorded.
    events = session.scalars(select(AuditEvent).where(AuditEvent.action.like("user.%"))).all()
    assert {e.ip for e in events} == {"127.0.0.1"}
    assert {e.user_id for e in events} == {org.admin.id}
    assert session.scalar(select(User.role).where(User.username == "kyduyet.moi")) is (
        Role.CENTRAL_ISSUER
    )
