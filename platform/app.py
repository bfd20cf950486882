"""The Flask application factory.

Configuration comes from the mapping passed in (tests) over environment variables:
``DATABASE_URL`` (default: SQLite in the instance folder), ``KYSO_SECRET_KEY`` (default: a
random key kept in the instance folder), ``KYSO_REGISTRY_URL`` (the population registry),
``KYSO_SECURE_COOKIES`` (set to 0 only for plain-http development; otherwise the cookies are
Secure and responses carry HSTS).

Sessions (``kyso.platform.auth.sessions``): ``KYSO_SESSION_IDLE_MINUTES`` (30) and
``KYSO_SESSION_LIFETIME_HOURS`` (12), the idle and absolute limits of a logged-in session.

Signing: ``KYSO_TRUST_ANCHORS`` (PEM bundle of the CA certificates officers' certificates must
chain to; default ``trust-anchors.pem`` in the instance folder), ``KYSO_MANIFEST_KEY`` (the
batch-manifest EC P-256 private key, PEM; default ``manifest-key.pem`` in the instance folder,
created on first use), ``KYSO_PUBLIC_ORIGIN`` (the origin the browser sees, when a proxy stands in
front; default: the request's), ``KYSO_AGENT_PORT`` (47321) and ``KYSO_AGENT_INSTALLER_URL``
(where the page sends officers whose agent is not running), ``KYSO_TRUSTED_PROXIES`` (how many
reverse proxies stand in front and set X-Forwarded-For; default 0).

Operations: ``KYSO_METRICS_ALLOW`` (networks that may read ``/metrics``; default the loopback);
``kyso-platform serve`` reads ``KYSO_BIND``, ``KYSO_WORKERS``, ``KYSO_THREADS`` (ops/serve.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request, session
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

from kyso.platform import i18n
from kyso.platform.db import make_engine, make_session_factory
from kyso.platform.inputs import IdConverter
from kyso.platform.request_json import JSONProvider

csrf = CSRFProtect()

# The signing page is what an attacker would have to subvert: no inline script anywhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws://127.0.0.1:* ws://localhost:*; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)

HSTS = "max-age=31536000; includeSubDomains"
# HTTP refusals without a handler of their own: the catalogue key that says what to do.
_HTTP_ERRORS = {
    400: "common.bad_request",
    403: "common.forbidden",
    405: "common.method_not_allowed",
    429: "common.too_many_requests",
}


def _secret_key(instance: Path) -> str:
    configured = os.environ.get("KYSO_SECRET_KEY")
    if configured:
        return configured
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("KYSO_INSTANCE_PATH"))
    app.url_map.converters["int"] = IdConverter  # before any route: ids the schema can hold
    instance = Path(app.instance_path)
    app.config.update(
        DATABASE_URL=os.environ.get("DATABASE_URL", f"sqlite:///{instance / 'kyso.db'}"),
        REGISTRY_URL=os.environ.get("KYSO_REGISTRY_URL", "http://127.0.0.1:8090"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("KYSO_SECURE_COOKIES", "1") != "0",
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session instead
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,
        PAGE_SIZE=50,
        TRUST_ANCHORS=os.environ.get("KYSO_TRUST_ANCHORS"),
        # Officers' certificates: revocation policy (hard, soft, off), OCSP/CRL timeout and
        # cache (platform/signing/validation.py); the expiry warning's notice in days.
        REVOCATION_POLICY=os.environ.get("KYSO_REVOCATION_POLICY", "hard"),
        REVOCATION_TIMEOUT=float(os.environ.get("KYSO_REVOCATION_TIMEOUT", "5")),
        REVOCATION_CACHE_SECONDS=float(os.environ.get("KYSO_REVOCATION_CACHE_SECONDS", "300")),
        CERTIFICATE_EXPIRY_WARNING_DAYS=int(
            os.environ.get("KYSO_CERTIFICATE_EXPIRY_WARNING_DAYS", "30")
        ),
        MANIFEST_KEY=os.environ.get("KYSO_MANIFEST_KEY"),
        PUBLIC_ORIGIN=os.environ.get("KYSO_PUBLIC_ORIGIN"),
        AGENT_PORT=int(os.environ.get("KYSO_AGENT_PORT", "47321")),
        AGENT_INSTALLER_URL=os.environ.get("KYSO_AGENT_INSTALLER_URL"),
        TRUSTED_PROXIES=int(os.environ.get("KYSO_TRUSTED_PROXIES", "0")),
        METRICS_ALLOW=os.environ.get("KYSO_METRICS_ALLOW"),
        SESSION_IDLE_MINUTES=float(os.environ.get("KYSO_SESSION_IDLE_MINUTES", "30")),
        SESSION_LIFETIME_HOURS=float(os.environ.get("KYSO_SESSION_LIFETIME_HOURS", "12")),
    )
    if config:
        app.config.update(config)
    if not 0 < app.config["SESSION_IDLE_MINUTES"] <= 60 * app.config["SESSION_LIFETIME_HOURS"]:
        raise ValueError(
            "KYSO_SESSION_IDLE_MINUTES must be positive and at most KYSO_SESSION_LIFETIME_HOURS"
        )
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(instance)
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies:
        # Behind N reverse proxies the client's address (login throttling, the citizen pages'
        # limits, the audit trail) is in X-Forwarded-For; trusted only from that many hops.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )

    app.json = JSONProvider(app)  # a JSON body nested too deep is a 400, not a 500
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["kyso.engine"] = engine
    app.extensions["kyso.sessions"] = make_session_factory(engine)
    csrf.init_app(app)

    _register_blueprints(app)
    _register_hooks(app)
    from kyso.platform import formatting

    formatting.register(app)  # |number, |day, |moment: the one formatter of every page
    from kyso.platform import authorization

    authorization.install(app)  # every route's role rule, from one table
    return app


def db() -> Session:
    """The request's database session (views only; services receive it as an argument)."""
    from flask import current_app

    if "db" not in g:
        g.db = current_app.extensions["kyso.sessions"]()
    session_: Session = g.db
    return session_


def language() -> str:
    chosen = session.get("lang")
    if chosen in i18n.LANGUAGES:
        return str(chosen)
    return i18n.DEFAULT_LANGUAGE


def _register_blueprints(app: Flask) -> None:
    from kyso.platform.auth.views import blueprint as auth
    from kyso.platform.feedback.views import blueprint as feedback
    from kyso.platform.ops.views import blueprint as ops
    from kyso.platform.passport.views import blueprint as passport
    from kyso.platform.passport.views import lists as passport_lists
    from kyso.platform.records.views import blueprint as records
    from kyso.platform.signing import batch_views
    from kyso.platform.signing.views import blueprint as signing
    from kyso.platform.stats.views import blueprint as stats
    from kyso.platform.users.views import blueprint as users

    app.register_blueprint(auth)
    app.register_blueprint(users)
    app.register_blueprint(signing)
    app.register_blueprint(records)
    app.register_blueprint(passport)
    app.register_blueprint(passport_lists)
    app.register_blueprint(stats)
    app.register_blueprint(feedback)
    app.register_blueprint(ops)
    batch_views.register(app)


def _register_hooks(app: Flask) -> None:
    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session_ = g.pop("db", None)
        if session_ is not None:
            session_.close()

    from flask_wtf.csrf import CSRFError
    from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

    def _error_page(key: str, status: int, **values: Any) -> tuple[str, int]:
        from flask import render_template

        lang = language()
        return (
            render_template(
                "error.html",
                title=i18n.translate("common.error_title", lang),
                message=i18n.translate(key, lang, **values),
            ),
            status,
        )

    # Flask's default error pages are English and say nothing of what to do.
    @app.errorhandler(CSRFError)
    def _csrf_failed(_exc: CSRFError) -> Any:
        if request.path.startswith("/signing/api/"):
            from flask import jsonify

            message = i18n.translate("common.csrf_failed", language())
            return jsonify(error="common.csrf_failed", message=message), 400
        return _error_page("common.csrf_failed", 400)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc: RequestEntityTooLarge) -> tuple[str, int]:
        limit = int(app.config["MAX_CONTENT_LENGTH"]) // (1024 * 1024)
        return _error_page("common.too_large", 413, megabytes=limit)

    @app.errorhandler(NotFound)
    def _not_found(_exc: NotFound) -> tuple[str, int]:
        return _error_page("common.not_found", 404)

    # Every other refusal (403 from the authorization table, 405, 400, 429...) in the site's
    # words too; Werkzeug's English page is neither the site's nor says what to do.
    @app.errorhandler(HTTPException)
    def _refused(exc: HTTPException) -> Any:
        if exc.response is not None or exc.code is None or exc.code >= 500:
            return exc
        key = _HTTP_ERRORS.get(exc.code, "common.request_refused")
        headers = [
            (name, value)
            for name, value in exc.get_headers()
            if name.lower() not in ("content-type", "content-length")
        ]
        if request.path.startswith("/signing/api/"):
            from flask import jsonify

            message = i18n.translate(key, language())
            return jsonify(error=key, message=message), exc.code, headers
        page, status = _error_page(key, exc.code)
        return page, status, headers

    from kyso.platform.auth.access import load_session, write_session_cookie

    @app.before_request
    def _session() -> None:
        if request.endpoint != "static":
            load_session()

    app.after_request(write_session_cookie)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if app.config["SESSION_COOKIE_SECURE"]:
            # Served over https only: the browser never tries http first (and leaks the cookie).
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        # Pages, downloads and the JSON API carry personal data: no copy in any cache or the
        # browser's history. Static files, and responses that say they are public (the agent's
        # installer), keep their caching.
        if request.endpoint != "static" and not response.cache_control.public:
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        lang = language()

        def _(key: str, **values: Any) -> str:
            return i18n.translate(key, lang, **values)

        from kyso.platform.auth.access import current_user

        return {"_": _, "lang": lang, "current_user": current_user()}

    @app.get("/lang/<code>")
    def _switch_language(code: str) -> Any:
        from flask import redirect

        if code in i18n.LANGUAGES:
            session["lang"] = code
        target = request.referrer or "/"
        # Only back to our own pages.
        if not target.startswith(request.host_url):
            target = "/"
        return redirect(target)
