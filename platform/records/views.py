"""Facility staff's import page: upload a spreadsheet, read the report, download the template."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from kyso.platform.corrections import service as corrections
from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.models import CorrectionRequest, Facility, Role
from kyso.platform.records.importer import MAX_ROWS, import_records, template_csv, template_for
from kyso.platform.records.service import importable_facilities
from kyso.platform.web import current_user, db, language, roles_required

blueprint = Blueprint("records", __name__, url_prefix="/records")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@blueprint.route("/import", methods=["GET", "POST"])
@roles_required(Role.FACILITY_STAFF, Role.ADMINISTRATOR)
def import_page() -> Any:
    user = current_user()
    assert user is not None
    lang = language()
    facilities = importable_facilities(db(), user)
    context: dict[str, Any] = {
        "facilities": facilities,
        "chosen": facilities[0].id if facilities else None,
        "limit": f"{MAX_ROWS:,}".replace(",", "." if lang == "vi" else ","),
        "report": None,
        "error": None if facilities else translate("records.import_no_facility", lang),
    }
    if request.method == "GET" or not facilities:
        return render_template("records/import.html", **context)

    wanted = request.form.get("facility_id")
    if wanted is None and len(facilities) == 1:
        chosen: Facility | None = facilities[0]
    else:
        chosen = next((f for f in facilities if str(f.id) == wanted), None)
    upload = request.files.get("file")
    if chosen is None or upload is None or not upload.filename:
        key = "records.import_unknown_facility" if chosen is None else "records.import_no_file"
        context["error"] = translate(key, lang)
        return render_template("records/import.html", **context), 400
    context["chosen"] = chosen.id
    report = import_records(
        db(),
        upload.stream,
        upload.filename or "",
        chosen,
        user,
        dry_run=bool(request.form.get("dry_run")),
        ip=request.remote_addr,
    )
    db().commit()  # the records, or only the audit event of a rejected file
    context["report"] = report
    return render_template("records/import.html", **context), 200 if report.ok else 422


@blueprint.get("/import/template.<kind>")
@roles_required(Role.FACILITY_STAFF, Role.ADMINISTRATOR)
def import_template(kind: str) -> Response:
    lang = language()
    name = "mau-nhap-ho-so-tiem" if lang == "vi" else "vaccination-import-template"
    if kind == "xlsx":
        body, mimetype = template_for(db(), lang), XLSX
    elif kind == "csv":
        body, mimetype = template_csv(lang), "text/csv; charset=utf-8"
    else:
        abort(404)
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{kind}"'
    return response


# --- correction requests addressed to this user's signing unit ---------------------------------


@blueprint.get("/requests")
@roles_required(Role.FACILITY_STAFF, Role.ADMINISTRATOR)
def requests_page() -> Any:
    user = current_user()
    assert user is not None
    return render_template(
        "records/requests.html",
        requests=corrections.requests_for(db(), user),
        field_name=lambda name: _field_name(name, language()),
    )


@blueprint.post("/requests/<int:request_id>/accept")
@roles_required(Role.FACILITY_STAFF, Role.ADMINISTRATOR)
def accept_request(request_id: int) -> Any:
    lang = language()
    try:
        result = corrections.accept_request(
            db(), request_id, current_user(), ip=request.remote_addr
        )
    except DomainError as exc:
        db().rollback()
        return _refused(exc)
    db().commit()
    key = (
        "corrections.request_forwarded"
        if isinstance(result, CorrectionRequest)
        else "corrections.request_accepted"
    )
    flash(translate(key, lang), "success")
    return redirect(url_for("records.requests_page"))


@blueprint.post("/requests/<int:request_id>/reject")
@roles_required(Role.FACILITY_STAFF, Role.ADMINISTRATOR)
def reject_request(request_id: int) -> Any:
    lang = language()
    try:
        corrections.reject_request(
            db(),
            request_id,
            current_user(),
            reason=request.form.get("reason", ""),
            ip=request.remote_addr,
        )
    except DomainError as exc:
        db().rollback()
        return _refused(exc)
    db().commit()
    flash(translate("corrections.request_rejected", lang), "success")
    return redirect(url_for("records.requests_page"))


def _refused(exc: DomainError) -> Any:
    lang = language()
    status = 403 if exc.key == "corrections.request_not_allowed" else 409
    if exc.key == "corrections.reason_required":
        status = 400
    page = render_template(
        "error.html", title=translate("common.error_title", lang), message=exc.text(lang)
    )
    return Response(page, status)


def _field_name(name: str, lang: str) -> str:
    key = {"area_id": "records.column_area"}.get(name, f"records.column_{name}")
    return translate(key, lang)
