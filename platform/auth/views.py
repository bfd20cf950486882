"""Login and logout."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for

from kyso.platform.auth import service, sessions
from kyso.platform.errors import DomainError
from kyso.platform.models import Role
from kyso.platform.web import begin_session, current_user, db, end_current_session, language

blueprint = Blueprint("auth", __name__)


HOME_PAGES = {
    Role.SIGNING_OFFICER: "signing.search",  # the work: find doses and sign them
    Role.FACILITY_STAFF: "stats.invalid_list",  # the records that need fixing
    Role.CENTRAL_ISSUER: "passport.issuer_page",  # issuing vaccine passports
    Role.ADMINISTRATOR: "users.index",  # managing the accounts
}


def _home_for(role: Role) -> str:
    """Each role lands on its work page after login (issue 17)."""
    return url_for(HOME_PAGES.get(role, "users.index"))


@blueprint.get("/")
def home() -> Any:
    user = current_user()
    if user is None:
        return redirect(url_for("auth.login"))
    return redirect(_home_for(user.role))


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        try:
            user = service.authenticate(
                db(),
                request.form.get("username", ""),
                request.form.get("password", ""),
                request.remote_addr or "?",
            )
        except DomainError as exc:
            db().commit()  # keep the failed attempt: it counts for throttling
            error = exc.text(language())
        else:
            lang = session.get("lang")
            session.clear()  # a new CSRF token after login
            session["lang"] = lang or user.language
            begin_session(user)  # a new session token (no fixation)
            db().commit()
            target = request.args.get("next", "")
            if not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
                target = _home_for(user.role)
            return redirect(target)
    # after a wrong password the form keeps the typed username (never the password)
    username = request.form.get("username", "") if error else ""
    return render_template("auth/login.html", error=error, username=username), (
        401 if error else 200
    )


@blueprint.post("/logout")
def logout() -> Any:
    user = current_user()
    if user is not None:
        service.audit(db(), "auth.logout", user, ip=request.remote_addr)
    end_current_session(sessions.LOGOUT)
    db().commit()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    return redirect(url_for("auth.login"))
