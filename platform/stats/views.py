"""Verification statistics pages: counts, the invalid-people list and its export.

Thin: parse, call ``stats.service``, render; correcting one record is ``corrections.views``.
The counts, charts, list and export read through ``read_db``/``read_session``: the replica
(``DATABASE_REPLICA_URL``) when one is configured and answers, else the primary; who the user
is and what they may see come from the primary, and the audit trail is written there.
The export is written to a temporary file with constant memory (``stats.export``) and
streamed from it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from kyso.platform.auth.service import audit
from kyso.platform.errors import DomainError
from kyso.platform.formatting import vietnam_time
from kyso.platform.i18n import translate
from kyso.platform.inputs import parse_number
from kyso.platform.models import (
    Role,
    User,
)
from kyso.platform.registry.status import detail_text, status_hint, status_label
from kyso.platform.stats import charts, service
from kyso.platform.stats.export import write_invalid_xlsx
from kyso.platform.web import (
    current_user,
    db,
    forbidden,
    language,
    read_db,
    read_session,
    roles_required,
)

blueprint = Blueprint("stats", __name__, url_prefix="/stats")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ROLES = (Role.FACILITY_STAFF, Role.ADMINISTRATOR)


def _user() -> User:
    user = current_user()
    assert user is not None
    return user


def _scope() -> service.Scope:
    try:
        return service.scope_for(db(), _user())
    except DomainError as exc:
        abort(forbidden(exc))


@blueprint.get("/invalid")
@roles_required(*ROLES)
def invalid_list() -> Any:
    lang = language()
    scope = _scope()
    reads = read_db()  # the replica when there is one: these counts are the heavy part
    filters, problems = service.parse_filters(reads, scope, request.args)
    for problem in problems:
        flash(problem.text(lang), "error")
    after = request.args.get("after", "")
    counts = service.counts(reads, scope, filters)

    def number(n: int) -> str:
        return f"{n:,}".replace(",", "." if lang == "vi" else ",")

    group_chart = charts.bar_chart(
        "groups",
        translate("stats.chart_groups", lang),
        [(translate(f"stats.group_{group.value}", lang), counts[group]) for group in service.Group],
        number,
    )
    area_chart = charts.bar_chart(
        "areas",
        translate("stats.chart_areas", lang, top=service.AREAS_CHARTED),
        [
            (area.name or translate("stats.chart_area_unknown", lang), area.people)
            for area in service.by_area(reads, scope, filters)
        ],
        number,
    )
    month_chart = charts.bar_chart(
        "months",
        translate("stats.chart_months", lang),
        [
            (f"{month.month:02d}/{month.year}", month.people)
            for month in service.by_latest_dose_month(reads, scope, filters)
        ],
        number,
    )
    result = service.page(
        reads,
        scope,
        filters,
        after=parse_number(after),
        size=int(current_app.config.get("PAGE_SIZE", 50)),
    )
    return render_template(
        "stats/invalid.html",
        scope=scope,
        filters=filters,
        counts=counts,
        total=service.count_people(counts, filters),
        result=result,
        groups=list(service.Group),
        facility_code=request.args.get("facility_code", ""),
        area_code=request.args.get("area_code", ""),
        reason=lambda p: status_label(p.status, lang),
        explain=lambda p: detail_text(p.status, p.detail, lang) or status_hint(p.status, lang),
        number=number,
        charts=(group_chart, area_chart, month_chart),
    )


@blueprint.get("/invalid/export.xlsx")
@roles_required(*ROLES)
def invalid_export() -> Any:
    lang = language()
    user = _user()
    scope = _scope()
    filters, problems = service.parse_filters(read_db(), scope, request.args)
    if problems:
        for problem in problems:
            flash(problem.text(lang), "error")
        return redirect(url_for("stats.invalid_list", **_args(filters.as_args())))
    fd, name = tempfile.mkstemp(prefix="kyso-export-", suffix=".xlsx")
    os.close(fd)
    path = Path(name)
    try:
        # A session of its own: its server-side cursor stays open while the rows are written.
        # On the replica when there is one; the audit event below is written to the primary.
        with read_session() as reader:
            reader_scope = service.scope_for(reader, reader.get(User, user.id) or user)
            rows = write_invalid_xlsx(
                service.export_rows(reader, reader_scope, filters), path, lang
            )
        audit(
            db(),
            "stats.export_invalid",
            user,
            ip=request.remote_addr,
            rows=rows,
            **filters.as_args(),
        )
        db().commit()
        handle = path.open("rb")
    finally:
        path.unlink(missing_ok=True)  # the open handle keeps the data until it is closed
    size = os.fstat(handle.fileno()).st_size
    # the time on the officer's clock (Vietnam), not the server's UTC
    stamp = vietnam_time(datetime.now(UTC)).strftime("%Y%m%d-%H%M")
    filename = f"{translate('stats.export_filename', lang)}-{stamp}.xlsx"
    response = Response(_chunks(handle), mimetype=XLSX, direct_passthrough=True)
    response.headers["Content-Length"] = str(size)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.call_on_close(handle.close)
    return response


def _args(values: dict[str, str]) -> dict[str, Any]:
    return dict(values)


def _chunks(handle: Any, size: int = 64 * 1024) -> Iterator[bytes]:
    while True:
        chunk = handle.read(size)
        if not chunk:
            break
        yield chunk
