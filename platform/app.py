"""The Flask application factory: the composition root (it imports the features; nothing
imports it but the command line and the tests).

Settings: every environment variable the platform reads, with its default and meaning, is listed
in ``kyso.platform.settings`` (platform/settings.py), the one module that reads them; they are
read and checked once here. The mapping passed to :func:`create_app` (tests) overrides them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from flask_wtf.csrf import CSRFProtect

from kyso.platform import settings, web
from kyso.platform.db import make_engine, make_replica_engine, make_session_factory
from kyso.platform.request_json import JSONProvider

csrf = CSRFProtect()

# The signing page is what an attacker would have to subvert: no inline script anywhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws://127.0.0.1:* ws://localhost:*; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)

HSTS = "max-age=31536000; includeSubDomains"


def _secret_key(instance: Path, configured: str | None) -> str:
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
    configured = settings.from_environ()  # the one read of the environment
    app = Flask(__name__, instance_path=configured.instance_path)
    app.url_map.converters["int"] = web.IdConverter  # before any route: ids the schema can hold
    instance = Path(app.instance_path)
    app.extensions["kyso.settings"] = configured
    app.config.update(
        DATABASE_URL=configured.database_url or f"sqlite:///{instance / 'kyso.db'}",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session instead
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,
        PAGE_SIZE=50,
        **configured.config(),
    )
    if config:
        app.config.update(config)
    settings.check_sessions(
        float(app.config["SESSION_IDLE_MINUTES"]), float(app.config["SESSION_LIFETIME_HOURS"])
    )
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(instance, configured.security.secret_key)
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
    if app.config.get("DATABASE_REPLICA_URL"):
        # Heavy reads (statistics, export) go there: web.read_db() and web.read_session().
        replica = make_replica_engine(app.config["DATABASE_REPLICA_URL"])
        app.extensions["kyso.replica_engine"] = replica
        app.extensions["kyso.replica_sessions"] = make_session_factory(replica)
    csrf.init_app(app)

    _register_blueprints(app)
    _register_hooks(app)
    from kyso.platform import authorization

    authorization.install(app)  # every route's role rule, from one table
    return app


def _register_blueprints(app: Flask) -> None:
    from kyso.platform import downloads
    from kyso.platform.auth.views import blueprint as auth
    from kyso.platform.corrections.views import blueprint as corrections
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
    app.register_blueprint(corrections)
    app.register_blueprint(feedback)
    app.register_blueprint(ops)
    app.register_blueprint(batch_views.blueprint)
    app.register_blueprint(downloads.blueprint)  # the agent's MSI (installer_url's default)
    app.context_processor(batch_views.signing_page_config)


def _register_hooks(app: Flask) -> None:
    web.install(app)  # sessions, error pages, template globals, the language switch

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
