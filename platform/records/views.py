"""Facility staff's import page: upload a spreadsheet, read the report, download the template."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, render_template, request

from kyso.platform.i18n import translate
from kyso.platform.models import Facility, Role
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
