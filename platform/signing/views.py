"""The signing page "Ký duyệt chứng nhận tiêm": search, tick, review; the batch itself is
signed through ``batch_views``.

Everything works without JavaScript: the search is a GET form, selection changes are POST forms
(CSRF-protected) that redirect back to the page they came from. ``static/signing.js`` only
saves each tick at once and keeps the counts live, using the same endpoints with
``Accept: application/json``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.datastructures import MultiDict

from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.inputs import is_number, parse_number
from kyso.platform.models import Facility, Role, SigningUnit, User, VerificationStatus
from kyso.platform.signing import selection
from kyso.platform.signing.preview import Preview
from kyso.platform.signing.preview import preview as preview_selection
from kyso.platform.signing.search import (
    COUNT_CAP,
    Cursor,
    SearchFilters,
    SearchPage,
    StateFilter,
    parse_filters,
)
from kyso.platform.signing.search import search as find_people
from kyso.platform.signing.texts import count_text, status_fix, status_label, status_reason
from kyso.platform.web import current_user, db, language, roles_required

blueprint = Blueprint("signing", __name__, url_prefix="/signing")

# An endpoint that shows one person's record to facility staff, when the records pages have one.
RECORD_ENDPOINT = "records.person"


def _officer() -> User:
    user = current_user()
    assert user is not None  # roles_required ran first
    return user


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def _safe_next(default: str) -> str:
    """Back to a signing page only: the target comes from the form."""
    target = request.form.get("next", "")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/signing/"):
        return default
    return target


def _ints(values: list[str]) -> list[int]:
    return [int(v) for v in values if is_number(v)]


def _summary_payload(summary: selection.SelectionSummary, lang: str) -> dict[str, Any]:
    return {
        "people": summary.people,
        "doses": summary.doses,
        "text": translate(
            "signing.selected",
            lang,
            people=count_text(summary.people, lang),
            doses=count_text(summary.doses, lang),
        ),
    }


def _change_message(change: selection.SelectionChange, lang: str) -> str:
    parts = []
    if change.added:
        parts.append(translate("signing.added", lang, count=count_text(change.added, lang)))
    if change.removed:
        parts.append(translate("signing.removed", lang, count=count_text(change.removed, lang)))
    if not parts:
        parts.append(translate("signing.unchanged", lang))
    if change.more_left:
        parts.append(translate("signing.first_more_left", lang))
    if change.skipped_unverified:
        count = count_text(change.skipped_unverified, lang, at_least=change.skipped_capped)
        parts.append(translate("signing.skipped_unverified", lang, count=count))
    return " ".join(parts)


def _respond(
    change: selection.SelectionChange | None, error: DomainError | None, default: str
) -> Any:
    """Commit (refusals keep their audit trail), then answer the form or the script."""
    session = db()
    session.commit()
    lang = language()
    summary = change.summary if change else selection.summary(session, _officer())
    message = error.text(lang) if error else _change_message(change, lang) if change else ""
    if _wants_json():
        payload = {"ok": error is None, "message": message, **_summary_payload(summary, lang)}
        return jsonify(payload), 200 if error is None else 409
    if message:
        flash(message, "error" if error else "success")
    return redirect(_safe_next(default))


def _filters_from(args: MultiDict[str, str]) -> SearchFilters:
    """The search a form carries; refused if unreadable (ignoring a filter would widen it)."""
    filters, problems = parse_filters(args)
    if problems:
        raise DomainError("signing.unreadable_search")
    return filters


@blueprint.get("/")
@roles_required(Role.SIGNING_OFFICER)
def search() -> Any:
    officer = _officer()
    session = db()
    lang = language()
    filters, problems = parse_filters(request.args)
    errors = [p.text(lang) for p in problems]
    page_size = int(current_app.config["PAGE_SIZE"])
    page_number = request.args.get("p", "1")
    page_number_value = parse_number(page_number) or 1
    result: SearchPage | None = None
    try:
        result = find_people(
            session,
            officer,
            filters,
            page_size=page_size,
            after=Cursor.decode(request.args.get("after")),
            before=Cursor.decode(request.args.get("before")),
        )
    except DomainError as exc:
        errors.append(exc.text(lang))
    count: int | None = None
    count_capped = False
    if result is not None and result.count is not None:
        count, count_capped = result.count, result.count_capped
    else:
        carried = request.args.get("n", "")
        if is_number(carried):
            count = min(int(carried), COUNT_CAP)
            count_capped = int(carried) > COUNT_CAP
    summary = selection.summary(session, officer)
    return render_template(
        "signing/search.html",
        officer=officer,
        unit=session.get(SigningUnit, officer.signing_unit_id) if officer.signing_unit_id else None,
        own_facility=session.get(Facility, officer.facility_id) if officer.facility_id else None,
        filters=filters,
        filter_args=filters.as_args(),
        result=result,
        errors=errors,
        count=count,
        count_capped=count_capped,
        page_number=page_number_value,
        summary=summary,
        statuses=list(VerificationStatus),
        states=list(StateFilter),
        max_people=selection.MAX_PEOPLE,
        max_doses=selection.MAX_DOSES,
        count_text=count_text,
        status_label=status_label,
        status_reason=status_reason,
        status_fix=status_fix,
        record_url=_record_url,
        here=request.full_path.rstrip("?"),
    )


def _record_url(person_id: int) -> str | None:
    """A link to the person's record for whoever corrects it, once such a page exists."""
    if RECORD_ENDPOINT not in current_app.view_functions:
        return None
    return url_for(RECORD_ENDPOINT, person_id=person_id)


@blueprint.post("/selection")
@roles_required(Role.SIGNING_OFFICER)
def update_selection() -> Any:
    """One page's ticks (or one tick, from the script).

    ``shown`` lists "dose:person:version" for every selectable dose the page drew; ``dose`` the
    ticked ones. A person's box (``person``, drawn ticked when listed in ``person_was``) that the
    officer changed overrides that person's dose boxes, so the form also works without script.
    """
    form = request.form
    shown: dict[int, tuple[int, int]] = {}
    for value in form.getlist("shown"):
        parts = value.split(":")
        if len(parts) == 3 and all(is_number(p) for p in parts):
            shown[int(parts[0])] = (int(parts[1]), int(parts[2]))
    ticked = set(_ints(form.getlist("dose")))
    person_ticked = set(_ints(form.getlist("person")))
    person_was = set(_ints(form.getlist("person_was")))
    turned_on = person_ticked - person_was
    turned_off = person_was - person_ticked
    everything = form.get("action") == "page_all"
    add: set[int] = set()
    remove: set[int] = set()
    for dose_id, (person_id, _version) in shown.items():
        if everything or person_id in turned_on:
            wanted = True
        elif person_id in turned_off:
            wanted = False
        else:
            wanted = dose_id in ticked
        (add if wanted else remove).add(dose_id)
    # A ticked dose the page did not list as shown is still asked for (and checked).
    add |= ticked - set(shown)
    seen = {dose_id: version for dose_id, (_person, version) in shown.items()}
    try:
        change = selection.update_page(db(), _officer(), add=add, remove=remove, seen=seen)
    except DomainError as exc:
        return _respond(None, exc, url_for("signing.search"))
    return _respond(change, None, url_for("signing.search"))


@blueprint.post("/selection/person")
@roles_required(Role.SIGNING_OFFICER)
def person_selection() -> Any:
    """Add or remove every dose of one person (``op`` = add | remove)."""
    person = request.form.get("person_id", "")
    if not is_number(person):
        return _respond(None, DomainError("signing.bad_filter"), url_for("signing.search"))
    try:
        if request.form.get("op") == "remove":
            change = selection.remove_person(db(), _officer(), int(person))
        else:
            filters = _filters_from(request.form)
            change = selection.add_person(db(), _officer(), int(person), filters)
    except DomainError as exc:
        return _respond(None, exc, url_for("signing.search"))
    return _respond(change, None, url_for("signing.search"))


@blueprint.post("/selection/remove")
@roles_required(Role.SIGNING_OFFICER)
def remove_from_selection() -> Any:
    """The preview's "Bỏ" buttons: remove doses (``dose``) or whole people (``person``)."""
    session = db()
    officer = _officer()
    change = selection.remove_doses(session, officer, _ints(request.form.getlist("dose")))
    removed = change.removed
    for person_id in _ints(request.form.getlist("person")):
        removed += selection.remove_person(session, officer, person_id).removed
    change = selection.SelectionChange(
        added=0, removed=removed, summary=selection.summary(session, officer)
    )
    return _respond(change, None, url_for("signing.preview"))


@blueprint.post("/selection/search")
@roles_required(Role.SIGNING_OFFICER)
def select_search() -> Any:
    """Tick all ("chọn tất cả") of the search whose filters the form carries."""
    try:
        change = selection.add_search(
            db(), _officer(), _filters_from(request.form), first=request.form.get("first") == "1"
        )
    except DomainError as exc:
        return _respond(None, exc, url_for("signing.search"))
    return _respond(change, None, url_for("signing.search"))


@blueprint.post("/selection/clear")
@roles_required(Role.SIGNING_OFFICER)
def clear_selection() -> Any:
    change = selection.clear(db(), _officer())
    lang = language()
    db().commit()
    message = translate("signing.cleared", lang, count=count_text(change.removed, lang))
    if _wants_json():
        return jsonify({"ok": True, "message": message, **_summary_payload(change.summary, lang)})
    flash(message, "success")
    return redirect(_safe_next(url_for("signing.search")))


@blueprint.get("/preview")
@roles_required(Role.SIGNING_OFFICER)
def preview() -> Any:
    """The "Xem danh sách" page: the selection re-validated; what no longer qualifies drops out.

    The figures are the whole selection's; the people are listed a page at a time (``page``).
    """
    session = db()
    lang = language()
    error = None
    result: Preview | None = None
    page = request.args.get("page", "1")
    try:
        result = preview_selection(session, _officer(), page=parse_number(page, 5) or 1)
    except DomainError as exc:
        error = exc.text(lang)
    session.commit()  # the dropped doses leave the selection
    return render_template(
        "signing/preview.html",
        preview=result,
        error=error,
        max_people=selection.MAX_PEOPLE,
        max_doses=selection.MAX_DOSES,
        count_text=count_text,
        here=request.full_path.rstrip("?"),
    )
