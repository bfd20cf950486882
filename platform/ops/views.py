"""Operations endpoints: liveness, readiness and Prometheus metrics; request ids and timings.

``/healthz`` answers while the process runs; ``/readyz`` runs the checks of ``health`` (200 when
none fails, 503 otherwise); ``/metrics`` is the Prometheus exposition, answered only to the
addresses of ``METRICS_ALLOW`` (``KYSO_METRICS_ALLOW``, comma-separated networks; default the
loopback) and a 404 to anyone else. Every response carries ``X-Request-ID``: the proxy's when it
sent a well-formed one, a new one otherwise; the JSON logs carry the same id.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from kyso.platform.ops import health, metrics
from kyso.platform.settings import DEFAULT_METRICS_ALLOW
from kyso.platform.signing import stamping
from kyso.platform.web import db

blueprint = Blueprint("ops", __name__)

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@blueprint.before_app_request
def _start() -> None:
    offered = request.headers.get("X-Request-ID", "")
    g.request_id = offered if REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


@blueprint.after_app_request
def _finish(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    started = g.get("request_started")
    if started is not None:
        metrics.REQUEST_SECONDS.labels(
            endpoint=request.endpoint or "unmatched",
            method=request.method,
            status=f"{response.status_code // 100}xx",
        ).observe(time.perf_counter() - started)
    return response


@blueprint.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> Any:
    config = current_app.config
    api_key = config.get("REGISTRY_API_KEY")
    engine = current_app.extensions["kyso.engine"]
    replica = current_app.extensions.get("kyso.replica_engine")

    open_signer = None
    if config.get("PASSPORT_PKCS11_MODULE"):
        from kyso.platform.passport.config import open_signer as open_passport_signer

        def open_signer() -> Any:
            return open_passport_signer(config, current_app.extensions)

    ready, results = health.readiness(
        {
            "database": lambda: health.database(engine),
            "registry": lambda: health.registry(config, str(api_key) if api_key else None),
            "passport_hsm": lambda: health.passport_signer(open_signer),
            "database_replica": lambda: health.replica(replica),
        },
        optional=frozenset({"database_replica"}),
    )
    status = "fail" if not ready else "ok"
    if ready and any(r.status == "degraded" for r in results):
        status = "degraded"  # still serving: HTTP 200, the body says what is missing
    body = {"status": status, "checks": {r.name: r.as_json() for r in results}}
    return jsonify(body), 200 if ready else 503


def _metrics_allowed(address: str | None) -> bool:
    if not address:
        return False
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    allowed = str(current_app.config.get("METRICS_ALLOW") or DEFAULT_METRICS_ALLOW)
    for network in allowed.split(","):
        if network.strip() and client in ipaddress.ip_network(network.strip(), strict=False):
            return True
    return False


@blueprint.get("/metrics")
def metrics_page() -> Any:
    if not _metrics_allowed(request.remote_addr):
        return Response("Not Found\n", status=404, mimetype="text/plain")
    body, content_type = metrics.exposition()
    return Response(body + _timestamp_queue(), content_type=content_type)


def _timestamp_queue() -> bytes:
    """The time-stamp queue read at scrape time (the worker is another process): how many stored
    signatures wait for their RFC 3161 time-stamp and for how long the oldest has. Left out when
    the database cannot answer (the scrape still shows the rest)."""
    try:
        count, oldest = stamping.waiting(db())
    except SQLAlchemyError:
        return b""
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return (
        "# HELP kyso_timestamp_queue_signatures Stored signatures waiting for their RFC 3161 "
        "time-stamp.\n"
        "# TYPE kyso_timestamp_queue_signatures gauge\n"
        f"kyso_timestamp_queue_signatures {count}\n"
        "# HELP kyso_timestamp_queue_oldest_seconds How long the oldest of them has waited.\n"
        "# TYPE kyso_timestamp_queue_oldest_seconds gauge\n"
        f"kyso_timestamp_queue_oldest_seconds {max(age, 0.0):.3f}\n"
    ).encode()
