"""Feedback pages: the public form and status page (no login), the facility's inbox.

Thin: parse, call ``feedback.service``, render. CSRF applies to every form (the public ones
too: Flask-WTF ties the token to the visitor's session cookie).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from kyso.platform import formatting
from kyso.platform.corrections import service as corrections
from kyso.platform.errors import DomainError
from kyso.platform.feedback import service
from kyso.platform.i18n import translate
from kyso.platform.models import Feedback, FeedbackStatus, Role, User
from kyso.platform.throttle import Throttled
from kyso.platform.web import current_user, db, forbidden, language, roles_required

blueprint = Blueprint("feedback", __name__, url_prefix="/feedback")

ROLES = (Role.FACILITY_STAFF, Role.ADMINISTRATOR)
_FORM_FIELDS = (
    "full_name",
    "birth_date",
    "phone",
    "identity_number",
    "field",
    "dose_number",
    "correct_value",
    "message",
)


def settings() -> service.Settings:
    return service.Settings.from_config(current_app.config)


def _secret() -> bytes:
    return str(current_app.config["SECRET_KEY"]).encode()


def local_time(value: datetime | None) -> str:
    return "" if value is None else formatting.moment(value)


def _form_page(values: dict[str, str], errors: dict[str, str], error: str | None, code: int) -> Any:
    return (
        render_template(
            "feedback/form.html",
            values=values,
            errors=errors,
            error=error,
            token=service.issue_form_token(_secret()),
            fields=service.FIELDS,
            max_doses=3,
        ),
        code,
    )


@blueprint.route("/", methods=["GET", "POST"])
def form_page() -> Any:
    if request.method == "GET":
        return _form_page({}, {}, None, 200)
    lang = language()
    values = {name: request.form.get(name, "")[:4000] for name in _FORM_FIELDS}
    form = service.FeedbackForm(
        **values,
        honeypot=request.form.get("website", ""),
        token=request.form.get("form_token", ""),
    )
    try:
        feedback = service.submit(
            db(),
            form,
            ip=request.remote_addr or "?",
            secret=_secret(),
            settings=settings(),
        )
    except service.InvalidFeedback as exc:
        db().rollback()
        errors = {name: problem.text(lang) for name, problem in exc.problems.items()}
        return _form_page(values, errors, None, 422)
    except DomainError as exc:
        db().commit()  # the attempt counts for the rate limits
        throttled = isinstance(exc, Throttled)
        return _form_page(values, {}, exc.text(lang), 429 if throttled else 422)
    db().commit()
    return render_template(
        "feedback/sent.html",
        feedback=feedback,
        due=local_time(feedback.due_at),
    )


@blueprint.route("/status", methods=["GET", "POST"])
def status_page() -> Any:
    lang = language()
    if request.method == "GET":
        return render_template(
            "feedback/status.html", feedback=None, error=None, code=request.args.get("code", "")
        )
    code = request.form.get("code", "")[:40]
    try:
        feedback = service.find_for_citizen(
            db(),
            code,
            request.form.get("phone", ""),
            ip=request.remote_addr or "?",
            settings=settings(),
        )
    except DomainError as exc:
        db().commit()
        throttled = isinstance(exc, Throttled)
        return (
            render_template("feedback/status.html", feedback=None, error=exc.text(lang), code=code),
            429 if throttled else 404,
        )
    db().commit()
    return render_template(
        "feedback/status.html",
        feedback=feedback,
        error=None,
        code=feedback.tracking_code,
        local_time=local_time,
    )


# --- the facility's inbox ----------------------------------------------------------------------


def _user() -> User:
    user = current_user()
    assert user is not None
    return user


@blueprint.get("/inbox")
@roles_required(*ROLES)
def inbox() -> Any:
    raw = request.args.get("status", "")
    status = FeedbackStatus(raw) if raw in {s.value for s in FeedbackStatus} else None
    overdue_only = request.args.get("overdue") == "1"
    try:
        result = service.inbox(
            db(),
            _user(),
            status=status,
            overdue_only=overdue_only,
            after=service.InboxCursor.decode(request.args.get("after")),
            size=int(current_app.config.get("PAGE_SIZE", 50)),
        )
    except DomainError as exc:
        return forbidden(exc)
    return render_template(
        "feedback/inbox.html",
        inbox=result,
        status=status,
        overdue_only=overdue_only,
        statuses=list(FeedbackStatus),
        is_overdue=lambda f: service.is_overdue(f, result.now),
        local_time=local_time,
    )


def _feedback_or_404(user: User, feedback_id: int) -> Feedback:
    try:
        return service.get_for_user(db(), user, feedback_id)
    except DomainError as exc:
        if exc.key == "feedback.not_found":
            abort(404)  # not visible to this user: no hint whether it exists
        abort(forbidden(exc))


def _render_detail(feedback: Feedback, reply: str = "", status: int = 200) -> Any:
    """The report's page; ``reply`` refills the answer the officer just sent when it was
    refused, so the text they typed is not lost."""
    return render_template(
        "feedback/detail.html",
        feedback=feedback,
        overdue=service.is_overdue(feedback),
        corrections=corrections.made_for(db(), feedback),
        next_statuses=service.next_statuses(feedback),
        reply=reply,
        local_time=local_time,
    ), status


@blueprint.get("/inbox/<int:feedback_id>")
@roles_required(*ROLES)
def detail(feedback_id: int) -> Any:
    return _render_detail(_feedback_or_404(_user(), feedback_id))


@blueprint.post("/inbox/<int:feedback_id>/answer")
@roles_required(*ROLES)
def answer(feedback_id: int) -> Any:
    lang = language()
    user = _user()
    feedback = _feedback_or_404(user, feedback_id)
    body = request.form.get("body", "")[: service.REPLY_MAX * 2]
    try:
        raw = request.form.get("status", "")
        status = FeedbackStatus(raw) if raw in {s.value for s in FeedbackStatus} else None
        if status is None:
            raise DomainError("feedback.bad_status")
        service.answer(db(), feedback, user, body=body, status=status, ip=request.remote_addr)
    except DomainError as exc:
        db().rollback()
        flash(exc.text(lang), "error")
        return _render_detail(_feedback_or_404(user, feedback_id), reply=body, status=422)
    db().commit()
    label = translate(f"feedback.status_{status.value}", lang)
    flash(translate("feedback.answered", lang, status=label), "success")
    return redirect(url_for("feedback.detail", feedback_id=feedback_id))
