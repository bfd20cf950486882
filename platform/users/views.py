"""User management ("Quản lý người dùng"): the user list, accounts, certificate registration,
profiles and the audit trail. Views parse the form, call the service, and render.

Users outside an administrator's scope answer 404, not 403: a provincial administrator learns
nothing about other provinces' accounts, not even that an id exists.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from kyso.platform import formatting
from kyso.platform.auth.access import may_manage
from kyso.platform.errors import DomainError
from kyso.platform.i18n import catalogue, translate
from kyso.platform.inputs import is_number, parse_date
from kyso.platform.models import Role, SigningUnit, User
from kyso.platform.signing import revocation
from kyso.platform.signing.certificates import CheckedCertificate
from kyso.platform.signing.wiring import registration_check
from kyso.platform.users import service
from kyso.platform.web import (
    begin_session,
    current_user,
    db,
    language,
    login_required,
    roles_required,
)

blueprint = Blueprint("users", __name__, url_prefix="/users")


def _(key: str, **values: Any) -> str:
    return translate(key, language(), **values)


def _me() -> User:
    user = current_user()
    assert user is not None  # guarded by login_required / roles_required
    return user


def _ip() -> str | None:
    return request.remote_addr


def _page() -> int:
    return max(1, request.args.get("page", default=1, type=int) or 1)


def _page_size() -> int:
    return int(current_app.config.get("PAGE_SIZE", 50))


def _managed(user_id: int) -> User:
    """The user, if the logged-in administrator manages them; 404 otherwise."""
    user = db().get(User, user_id)
    if user is None or not may_manage(_me(), user, db()):
        abort(404)
    return user


def _no_store(response: Response) -> Response:
    # Pages that show a one-time password must not stay in any cache or history.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@blueprint.context_processor
def _helpers() -> dict[str, Any]:
    lang = language()

    def local_time(moment: datetime | None) -> str:
        return formatting.moment(moment, seconds=True)

    def role_label(role: Role) -> str:
        return translate(f"users.role_{role.value}", lang)

    def reason_text(reason: str | None) -> str:
        if not reason:
            return ""
        code, _sep, note = reason.partition(": ")
        if code in service.KNOWN_REASONS:
            label = translate(f"users.reason_{code}", lang)
            return f"{label}: {note}" if note else label
        return reason

    def action_label(action: str) -> str:
        key = "users.action_" + action.replace(".", "_")
        return translate(key, lang) if key in catalogue() else action

    return {
        "local_time": local_time,
        "role_label": role_label,
        "reason_text": reason_text,
        "action_label": action_label,
        "audit_summary": lambda event: service.audit_summary(event, lang),
        "format_serial": service.format_serial,
        "roles": list(Role),
        "deactivation_reasons": service.DEACTIVATION_REASONS,
    }


# ---------------------------------------------------------------------------------------------
# The list and the profile


@blueprint.get("/")
@login_required
def index() -> Any:
    """Danh sách người dùng: administrators see the users they manage, others their profile."""
    me = _me()
    if me.role is not Role.ADMINISTRATOR:
        return redirect(url_for("users.profile"))
    text = request.args.get("q", "")
    role_value = request.args.get("role", "")
    status = request.args.get("status", "all")
    role = Role(role_value) if role_value in {r.value for r in Role} else None
    active = {"active": True, "inactive": False}.get(status)
    page = service.list_users(
        db(), me, service.UserQuery(text, role, active), _page(), _page_size()
    )
    filters = {"q": text, "role": role.value if role else "", "status": status}
    return render_template("users/index.html", page=page, filters=filters)


@blueprint.get("/me")
@login_required
def profile() -> Any:
    me = _me()
    history = service.certificate_history(db(), me) if me.role is Role.SIGNING_OFFICER else []
    return render_template(
        "users/profile.html",
        user=me,
        history=history,
        province_name=service.province_name(db(), me),
    )


@blueprint.post("/me/password")
@login_required
def change_password() -> Any:
    me = _me()
    try:
        service.change_own_password(
            db(),
            me,
            request.form.get("current_password", ""),
            request.form.get("new_password", ""),
            request.form.get("confirm_password", ""),
            ip=_ip(),
        )
    except DomainError as exc:
        db().rollback()
        flash(exc.text(language()), "error")
        return redirect(url_for("users.profile"))
    begin_session(me)  # every session ended with the old password; this browser goes on
    db().commit()
    flash(_("users.password_changed"), "success")
    return redirect(url_for("users.profile"))


@blueprint.get("/<int:user_id>")
@login_required
def detail(user_id: int) -> Any:
    me = _me()
    if user_id == me.id:
        return redirect(url_for("users.profile"))
    if me.role is not Role.ADMINISTRATOR:
        abort(403)
    user = _managed(user_id)
    history = service.certificate_history(db(), user) if user.role is Role.SIGNING_OFFICER else []
    return render_template(
        "users/detail.html",
        user=user,
        history=history,
        province_name=service.province_name(db(), user),
    )


# ---------------------------------------------------------------------------------------------
# Creating and editing


def _optional_id(name: str) -> int | None:
    raw = request.form.get(name, "").strip()
    if not raw:
        return None
    if not is_number(raw):
        raise DomainError("users.choice_invalid")
    return int(raw)


def _form(username: str = "") -> service.UserForm:
    try:
        role = Role(request.form.get("role", ""))
    except ValueError:
        raise DomainError("users.role_unknown") from None
    return service.UserForm(
        username=username,
        full_name=request.form.get("full_name", ""),
        role=role,
        facility_id=_optional_id("facility_id"),
        signing_unit_id=_optional_id("signing_unit_id"),
        province_id=_optional_id("province_id"),
        language=request.form.get("language", "vi"),
        active=request.form.get("active") == "1",
    )


def _render_form(user: User | None, values: dict[str, Any], error: str | None = None) -> Any:
    me = _me()
    page = render_template(
        "users/form.html",
        user=user,
        values=values,
        error=error,
        facilities=service.facility_choices(db(), me),
        signing_units=service.signing_unit_choices(db(), me),
        provinces=service.province_choices(db(), me),
        national=me.province_id is None,
    )
    return page, 400 if error else 200


def _values_of(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "full_name": user.full_name,
        "role": user.role.value,
        "facility_id": str(user.facility_id or ""),
        "signing_unit_id": str(user.signing_unit_id or ""),
        "province_id": str(user.province_id or ""),
        "language": user.language,
        "active": user.active,
    }


def _submitted() -> dict[str, Any]:
    values: dict[str, Any] = {k: request.form.get(k, "") for k in _FIELDS}
    values["active"] = request.form.get("active") == "1"
    return values


_FIELDS = (
    "username",
    "full_name",
    "role",
    "facility_id",
    "signing_unit_id",
    "province_id",
    "language",
)


@blueprint.route("/new", methods=["GET", "POST"])
@roles_required(Role.ADMINISTRATOR)
def create() -> Any:
    me = _me()
    if request.method == "GET":
        values = {"role": Role.FACILITY_STAFF.value, "language": "vi", "active": True}
        if me.province_id is not None:
            values["province_id"] = str(me.province_id)
        return _render_form(None, values)
    try:
        user, password = service.create_user(
            db(), me, _form(request.form.get("username", "")), ip=_ip()
        )
    except DomainError as exc:
        db().rollback()
        return _render_form(None, _submitted(), exc.text(language()))
    db().commit()
    page = render_template("users/password.html", user=user, password=password, created=True)
    return _no_store(make_response(page))


@blueprint.route("/<int:user_id>/edit", methods=["GET", "POST"])
@roles_required(Role.ADMINISTRATOR)
def edit(user_id: int) -> Any:
    user = _managed(user_id)
    if request.method == "GET":
        return _render_form(user, _values_of(user))
    try:
        changes = service.update_user(db(), _me(), user, _form(), ip=_ip())
    except DomainError as exc:
        db().rollback()
        values = _submitted()
        values["username"] = user.username
        return _render_form(user, values, exc.text(language()))
    db().commit()
    if not changes:
        flash(_("users.nothing_changed"), "info")
    elif "certificate" in changes:
        flash(_("users.updated_certificate_off", name=user.full_name), "success")
    else:
        flash(_("users.updated", name=user.full_name), "success")
    return redirect(url_for("users.detail", user_id=user.id))


@blueprint.post("/<int:user_id>/password")
@roles_required(Role.ADMINISTRATOR)
def reset_password(user_id: int) -> Any:
    user = _managed(user_id)
    try:
        password = service.reset_password(db(), _me(), user, ip=_ip())
    except DomainError as exc:
        db().rollback()
        flash(exc.text(language()), "error")
        return redirect(url_for("users.detail", user_id=user.id))
    db().commit()
    page = render_template("users/password.html", user=user, password=password, created=False)
    return _no_store(make_response(page))


# ---------------------------------------------------------------------------------------------
# Certificates


def _certificate_upload() -> bytes | None:
    """The certificate itself, when the form carries it: its .cer file, or the DER the page
    read from the token (base64)."""
    upload = request.files.get("certificate_file")
    if upload is not None and upload.filename:
        return service.read_certificate_file(upload.read(64 * 1024))
    encoded = request.form.get("certificate", "").strip()
    if encoded:
        try:
            return service.read_certificate_file(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise DomainError("users.certificate_file_invalid") from None
    return None


@blueprint.route("/units", methods=["GET", "POST"])
@roles_required(Role.ADMINISTRATOR)
def units() -> Any:
    """Đơn vị ký: the signing units in the administrator's scope with their tax code (MST), which
    their officers' certificates must carry; the administrator sets or corrects it here."""
    me = _me()
    choices = service.signing_unit_choices(db(), me)
    error = None
    typed: dict[int, str] = {}
    if request.method == "POST":
        unit_id = request.form.get("unit", "")
        tax_code = request.form.get("tax_code", "")
        unit = next((u for u in choices if str(u.id) == unit_id), None)
        try:
            if unit is None:
                raise DomainError("revocation.unknown_unit", unit=unit_id)
            revocation.set_unit_tax_code(db(), unit.code, tax_code, actor=me, ip=_ip())
        except DomainError as exc:
            db().rollback()
            error = exc.text(language())
            if unit is not None:
                typed[unit.id] = tax_code
        else:
            db().commit()
            flash(_("users.tax_code_saved", unit=unit.name, tax_code=unit.tax_code), "success")
            return redirect(url_for("users.units"))
    page = render_template("users/units.html", units=choices, error=error, typed=typed)
    return page, 400 if error else 200


def _registration_check(der: bytes, serial: str, unit: SigningUnit | None) -> CheckedCertificate:
    """The platform's registration check, opened only when a certificate is to be checked (a
    serial typed alone and never seen needs no trust anchors)."""
    return registration_check()(der, serial, unit)


@blueprint.route("/<int:user_id>/certificate", methods=["GET", "POST"])
@roles_required(Role.ADMINISTRATOR)
def certificate(user_id: int) -> Any:
    """Đăng ký chứng thư số: the officer's serial, entered by an administrator who manages them."""
    officer = _managed(user_id)
    if officer.role is not Role.SIGNING_OFFICER:
        flash(_("users.certificate_officers_only"), "error")
        return redirect(url_for("users.detail", user_id=officer.id))
    error = None
    serial_text = ""
    if request.method == "POST":
        serial_text = request.form.get("serial", "")
        before = service.active_certificate(db(), officer)
        try:
            der = _certificate_upload()
            registered = service.register_certificate(
                db(),
                _me(),
                officer,
                serial_text,
                ip=_ip(),
                certificate=der,
                verify=_registration_check,
            )
        except DomainError as exc:
            # Only the audit record of a refused attempt is pending: keep it.
            db().commit()
            error = exc.text(language())
        else:
            db().commit()
            shown = service.format_serial(registered.serial_hex)
            if before is not None and before.id == registered.id:
                flash(_("users.certificate_unchanged", serial=shown), "info")
            elif before is not None:
                flash(
                    _(
                        "users.certificate_replaced",
                        serial=shown,
                        old=service.format_serial(before.serial_hex),
                        name=officer.full_name,
                    ),
                    "success",
                )
            else:
                flash(
                    _("users.certificate_registered", serial=shown, name=officer.full_name),
                    "success",
                )
            if registered.der is None:
                flash(_("users.certificate_unchecked", serial=shown), "warning")
            return redirect(url_for("users.certificate", user_id=officer.id))
    page = render_template(
        "users/certificate.html",
        user=officer,
        active=service.active_certificate(db(), officer),
        history=service.certificate_history(db(), officer),
        serial=serial_text,
        error=error,
    )
    return page, 400 if error else 200


@blueprint.post("/<int:user_id>/certificates/<int:certificate_id>/compromised")
@roles_required(Role.ADMINISTRATOR)
def compromise_certificate(user_id: int, certificate_id: int) -> Any:
    """Báo chứng thư số bị lộ: the token is compromised from a date (signatures made since are
    superseded, their batches flagged, their doses to be signed again)."""
    officer = _managed(user_id)
    back = url_for("users.certificate", user_id=officer.id)
    try:
        found = service.find_certificate(db(), officer, certificate_id)
        since = revocation.parse_since(request.form.get("since", ""))
        result = revocation.mark_compromised(
            db(), found, since, source=revocation.SOURCE_ADMINISTRATOR, actor=_me(), ip=_ip()
        )
    except DomainError as exc:
        db().rollback()
        flash(exc.text(language()), "error")
        return redirect(back)
    db().commit()
    flash(
        _(
            "revocation.marked",
            serial=service.format_serial(found.serial_hex),
            signatures=result.signatures,
            people=result.people,
        ),
        "success",
    )
    return redirect(back)


@blueprint.post("/<int:user_id>/certificates/<int:certificate_id>/deactivate")
@login_required
def deactivate_certificate(user_id: int, certificate_id: int) -> Any:
    me = _me()
    if me.id == user_id:
        officer = me
        back = url_for("users.profile")
    else:
        if me.role is not Role.ADMINISTRATOR:
            abort(403)
        officer = _managed(user_id)
        back = url_for("users.certificate", user_id=officer.id)
    code = request.form.get("reason", "")
    note = " ".join(request.form.get("note", "").split())
    if code in service.DEACTIVATION_REASONS:
        reason = f"{code}: {note}" if note else code
    elif code == "other":
        reason = note
    else:
        reason = ""
    try:
        found = service.find_certificate(db(), officer, certificate_id)
        service.deactivate_certificate(db(), me, found, reason, ip=_ip())
    except DomainError as exc:
        db().rollback()
        flash(exc.text(language()), "error")
        return redirect(back)
    db().commit()
    shown = service.format_serial(found.serial_hex)
    flash(_("users.certificate_deactivated", serial=shown, name=officer.full_name), "success")
    return redirect(back)


# ---------------------------------------------------------------------------------------------
# The audit trail


def _date_arg(name: str) -> date | None:
    # dd/mm/yyyy typed in a text field: the browser's locale never decides the order.
    return parse_date(request.args.get(name, ""), f"users.audit_{name}")


@blueprint.get("/audit")
@roles_required(Role.ADMINISTRATOR)
def audit() -> Any:
    me = _me()
    filters = {
        "action": request.args.get("action", "")[:64],
        "user": request.args.get("user", "")[:64],
        "since": request.args.get("since", "")[:20],
        "until": request.args.get("until", "")[:20],
    }
    error = None
    try:
        query = service.AuditQuery(
            filters["action"], filters["user"], _date_arg("since"), _date_arg("until")
        )
        page = service.audit_events(db(), me, query, _page(), _page_size())
    except DomainError as exc:
        error = exc.text(language())
        page = service.Page([], 0, 1, _page_size())
    return (
        render_template(
            "users/audit.html",
            page=page,
            filters=filters,
            actions=service.audit_actions(db()),
            error=error,
        ),
        400 if error else 200,
    )
