"""The web layer's request helpers, in one place: the views' toolbox.

Views (``*/views.py``, ``signing/batch_views.py``, ``downloads.py``) import from here: the
request's database session (:func:`db`; :func:`read_db` for heavy reads, which may go to a
replica), its language (:func:`language`), who is logged in
(:func:`current_user`), the role decorators, and the error pages. ``app.py`` wires it in
(:func:`install`); nothing here imports ``app.py`` or any views module, and services never import
this module (``tests/test_layout.py`` checks both).

Errors: a page gets the site's own error page (in the layout, Vietnamese first, saying what
happened and what to do); the JSON API (:func:`wants_json`) gets ``{"error", "message",
"retryable"}`` with the same status, never Flask's English HTML.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import IntegerConverter, Map

from kyso.platform import i18n
from kyso.platform.auth import sessions
from kyso.platform.db import is_transient
from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.models import AuthSession, Role, User
from kyso.platform.ops import metrics

P = ParamSpec("P")
R = TypeVar("R")

# The session token's cookie: its own, apart from Flask's signed cookie (which keeps only the
# CSRF token, the language and the citizen pages' short-lived state).
AUTH_COOKIE = "kyso_auth"

# The signing page's script calls these paths; their answers are always JSON.
API_PREFIX = "/signing/api/"


# --- the request's database session and language ---------------------------------------------


def db() -> Session:
    """The request's database session (views only; services receive it as an argument)."""
    if "db" not in g:
        g.db = current_app.extensions["kyso.sessions"]()
    session_: Session = g.db
    return session_


# After the replica failed to answer, this process reads the primary for this many seconds
# before trying the replica again: pages do not each wait for a replica that is down.
REPLICA_RETRY_SECONDS = 30.0


def read_session() -> Session:
    """A new session for heavy read-only work (statistics, exports): on the replica
    (``DATABASE_REPLICA_URL``) when one is configured and answers, else on the primary.

    The replica may lag the primary by a few seconds (streaming replication): only reads whose
    readers accept that come here, never a read that decides a write. A replica that does not
    answer is logged once per retry period and counted (``kyso_replica_fallbacks_total``), and
    the reads go to the primary; the caller closes the session.
    """
    extensions = current_app.extensions
    factory: sessionmaker[Session] | None = extensions.get("kyso.replica_sessions")
    if factory is not None and time.monotonic() >= extensions.get("kyso.replica_retry_at", 0.0):
        replica = factory()
        try:
            replica.connection()  # connects now: a replica that is down is found here
        except DBAPIError as exc:
            replica.close()
            extensions["kyso.replica_retry_at"] = time.monotonic() + REPLICA_RETRY_SECONDS
            metrics.REPLICA_FALLBACKS.inc()
            current_app.logger.warning(
                "database replica unavailable, reading the primary for %.0f s: %s",
                REPLICA_RETRY_SECONDS,
                type(exc.orig or exc).__name__,
            )
        else:
            return replica
    primary: Session = extensions["kyso.sessions"]()
    return primary


def read_db() -> Session:
    """The request's session for heavy reads (:func:`read_session`); :func:`db` for the rest."""
    if "read_db" not in g:
        g.read_db = read_session()
    session_: Session = g.read_db
    return session_


def language() -> str:
    chosen = session.get("lang")
    if chosen in i18n.LANGUAGES:
        return str(chosen)
    return i18n.DEFAULT_LANGUAGE


# --- who is logged in -----------------------------------------------------------------------


def session_policy() -> sessions.SessionPolicy:
    config = current_app.config
    return sessions.SessionPolicy(
        idle=timedelta(minutes=float(config["SESSION_IDLE_MINUTES"])),
        lifetime=timedelta(hours=float(config["SESSION_LIFETIME_HOURS"])),
    )


def now() -> datetime:
    """The time the session rules use: ``CLOCK`` in the configuration (a callable returning an
    aware datetime, for tests), else the system's."""
    clock: Callable[[], datetime] | None = current_app.config.get("CLOCK")
    return clock() if clock is not None else datetime.now(UTC)


def current_user() -> User | None:
    """The user of the request's session, if it is valid and the account active."""
    if "user" not in g:
        g.user = None
        g.auth_session = None
        token = request.cookies.get(AUTH_COOKIE)
        if token:
            found = sessions.resume_session(db(), token, session_policy(), now())
            user = db().get(User, found.user_id) if found is not None else None
            if found is not None and user is not None and user.active:
                g.user = user
                g.auth_session = found
            else:
                g.auth_cookie = ""  # ended or expired: the response removes the cookie
                g.auth_ended = True
    result: User | None = g.user
    return result


def load_session() -> None:
    """Before each request: whose session it is, and its last-seen time (at most once a minute,
    committed at once: the view has not written anything yet)."""
    current_user()
    found: AuthSession | None = g.auth_session
    if found is not None and sessions.touch(db(), found, session_policy(), now()):
        db().commit()


def begin_session(user: User) -> None:
    """A new session for ``user`` (login, or after their password change): a new token, so a
    token known before (fixation, a copied cookie) is worth nothing. The caller commits."""
    end_current_session(sessions.LOGOUT)
    g.auth_cookie = sessions.start_session(db(), user, session_policy(), now(), request.remote_addr)
    g.user = user


def end_current_session(reason: str) -> None:
    """Ends the request's session (logout) and removes its cookie. The caller commits."""
    current_user()
    found: AuthSession | None = g.auth_session
    if found is not None:
        sessions.end_session(db(), found, reason, now())
    g.auth_session = None
    g.user = None
    g.auth_cookie = ""


def write_session_cookie(response: Response) -> Response:
    """After each request: sets the new session's cookie, or removes an ended one."""
    token: str | None = g.get("auth_cookie")
    if token is None:
        return response
    secure = bool(current_app.config.get("SESSION_COOKIE_SECURE"))
    if token:
        response.set_cookie(
            AUTH_COOKIE, token, path="/", secure=secure, httponly=True, samesite="Lax"
        )
    else:
        response.delete_cookie(AUTH_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax")
    return response


def to_login() -> Any:
    """To the login page, and back here after it; says so when a session has just ended.

    The JSON API gets a JSON 401 instead (a script cannot follow a redirect to a form): the
    page shows its message and the officer logs in again.
    """
    ended = bool(g.get("auth_ended"))
    config = current_app.config
    idle, hours = config["SESSION_IDLE_MINUTES"], config["SESSION_LIFETIME_HOURS"]
    if wants_json():
        key = "auth.session_ended" if ended else "common.login_needed"
        message = translate(key, language(), idle=f"{idle:g}", hours=f"{hours:g}")
        return json_error(key, message, 401, retryable=False)
    if ended:
        flash(
            translate("auth.session_ended", language(), idle=f"{idle:g}", hours=f"{hours:g}"),
            "info",
        )
    return redirect(url_for("auth.login", next=request.full_path))


def login_required(view: Callable[P, R]) -> Callable[P, R | Any]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Any:
        if current_user() is None:
            return to_login()
        return view(*args, **kwargs)

    return wrapped


def roles_required(*roles: Role) -> Callable[[Callable[P, R]], Callable[P, R | Any]]:
    def decorate(view: Callable[P, R]) -> Callable[P, R | Any]:
        @wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Any:
            user = current_user()
            if user is None:
                return to_login()
            if user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


# --- error pages and the API's errors --------------------------------------------------------


def wants_json() -> bool:
    """The signing page's JSON API, or a script that asked for JSON rather than a page."""
    if request.path.startswith(API_PREFIX):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > (request.accept_mimetypes["text/html"])
    )


def json_error(key: str, message: str, status: int, *, retryable: bool) -> Response:
    response = jsonify(error=key, message=message, retryable=retryable)
    response.status_code = status
    return response


def error_page(message: str, status: int, title: str | None = None) -> Response:
    """The site's error page (inside the layout, with its menu) saying what happened and what
    to do."""
    lang = language()
    page = render_template(
        "error.html",
        title=title or translate("common.error_title", lang),
        message=message,
        status=status,
    )
    return Response(page, status)


def error_answer(key: str, status: int, *, retryable: bool = False, **values: Any) -> Response:
    """The answer to an error: the API's JSON or the site's page, in the person's language."""
    message = translate(key, language(), **values)
    if wants_json():
        return json_error(key, message, status, retryable=retryable)
    return error_page(message, status)


def forbidden(exc: DomainError) -> Response:
    """A 403 that says why (the service's reason) and what to do."""
    message = exc.text(language())
    if wants_json():
        return json_error(exc.key, message, 403, retryable=False)
    return error_page(message, 403)


# HTTP refusals without a handler of their own: the catalogue key that says what to do.
HTTP_ERRORS = {
    400: "common.bad_request",
    403: "common.forbidden",
    405: "common.method_not_allowed",
    429: "common.too_many_requests",
}


class IdConverter(IntegerConverter):
    """The URL map's ``<int:...>``: only ids the schema's integer columns can hold.

    Werkzeug's converter takes any number of digits; an id beyond them reached the database
    (SQLite: OverflowError, PostgreSQL: "integer out of range") as a 500. Out of range, the URL
    matches no route: the site's 404 page.
    """

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def install(app: Flask) -> None:
    """The request hooks, error handlers, template globals and filters, the language switch."""
    from kyso.platform import formatting

    # The one formatter of every page: |number, |day, |moment ("1.860", dd/mm/yyyy, Vietnam time).
    app.jinja_env.filters.update(
        number=lambda value: formatting.number(value, language()),
        day=formatting.day,
        day_input=formatting.day_input,
        serial=formatting.serial,
        # a registered certificate (SigningCertificate) as people read it
        certificate=lambda c: formatting.certificate_facts(c.der, c.serial_hex),
        moment=formatting.moment,
        moment_seconds=lambda value: formatting.moment(value, seconds=True),
    )
    from flask_wtf.csrf import CSRFError
    from sqlalchemy.exc import DBAPIError, OperationalError
    from werkzeug.exceptions import Forbidden, HTTPException, NotFound, RequestEntityTooLarge

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        for name in ("db", "read_db"):
            session_ = g.pop(name, None)
            if session_ is not None:
                session_.close()

    # Flask's default error pages are English and say nothing of what to do.
    @app.errorhandler(CSRFError)
    def _csrf_failed(_exc: CSRFError) -> Response:
        return error_answer("common.csrf_failed", 400)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc: RequestEntityTooLarge) -> Response:
        limit = int(app.config["MAX_CONTENT_LENGTH"]) // (1024 * 1024)
        return error_answer("common.too_large", 413, megabytes=limit)

    @app.errorhandler(NotFound)
    def _not_found(_exc: NotFound) -> Response:
        return error_answer("common.not_found", 404)

    @app.errorhandler(Forbidden)
    def _forbidden(_exc: Forbidden) -> Response:
        return error_answer("common.forbidden", 403)

    # Every other refusal (405, 400, 429...) in the site's words too, keeping its headers
    # (Allow, Retry-After); Werkzeug's English page is neither the site's nor says what to do.
    @app.errorhandler(HTTPException)
    def _refused(exc: HTTPException) -> Any:
        if exc.response is not None or exc.code is None or exc.code >= 500:
            return exc
        answer = error_answer(HTTP_ERRORS.get(exc.code, "common.request_refused"), exc.code)
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                answer.headers[name] = value
        return answer

    def _database_unavailable(exc: Exception) -> Response:
        # The database is down or the connection was lost: worth trying again in a moment.
        # One log line, no traceback: the operator's monitoring already says why.
        app.logger.error("database unavailable: %s", type(exc).__name__)
        g.database_down = True  # the error page asks nothing more of it
        return error_answer("common.database_lost", 503, retryable=True)

    @app.errorhandler(OperationalError)
    def _operational(exc: OperationalError) -> Response:
        return _database_unavailable(exc)

    @app.errorhandler(DBAPIError)
    def _dbapi(exc: DBAPIError) -> Response:
        if is_transient(exc):  # lost, refused, terminated, deadlocked: worth a retry
            return _database_unavailable(exc)
        app.logger.exception("database error")
        return error_answer("common.server_error", 500)

    @app.errorhandler(500)
    def _server_error(_exc: Exception) -> Response:
        # Flask has logged the traceback already (an unhandled exception).
        return error_answer("common.server_error", 500)

    @app.before_request
    def _session() -> None:
        if request.endpoint != "static":
            load_session()

    app.after_request(write_session_cookie)

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        lang = language()

        def _(key: str, **values: Any) -> str:
            return i18n.translate(key, lang, **values)

        user = None if g.get("database_down") else current_user()
        return {"_": _, "lang": lang, "current_user": user}

    @app.get("/lang/<code>")
    def _switch_language(code: str) -> Any:
        if code in i18n.LANGUAGES:
            session["lang"] = code
        target = request.referrer or "/"
        # Only back to our own pages.
        if not target.startswith(request.host_url):
            target = "/"
        return redirect(target)
