"""Readiness checks: can this instance do its work now? Flask-free; no personal data in results.

Each check answers ``ok``, ``fail`` (the instance should not get traffic: the load balancer takes
it out), ``skipped`` (not configured on this instance, e.g. the passport HSM on a server that
only serves pages) or ``degraded`` (an optional part failed and the instance works without it:
a database replica that does not answer, whose reads go to the primary), with a short technical
detail and the time it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from kyso.platform.db import backend


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | skipped
    detail: str
    milliseconds: float

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "ms": round(self.milliseconds, 1)}


class Skipped(Exception):
    """The checked part is not configured on this instance."""


def run_check(name: str, probe: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail, status = probe(), "ok"
    except Skipped as exc:
        detail, status = str(exc), "skipped"
    except Exception as exc:  # a readiness probe reports every failure, whatever it is
        detail, status = f"{type(exc).__name__}: {exc}"[:300], "fail"
    return Check(name, status, detail, (time.perf_counter() - started) * 1000)


def database(engine: Engine) -> str:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return backend(engine).value


def replica(engine: Engine | None) -> str:
    """The read replica (``DATABASE_REPLICA_URL``): reachable, and how far behind it is."""
    if engine is None:
        raise Skipped("no DATABASE_REPLICA_URL: the heavy reads go to the primary")
    with engine.connect() as connection:
        in_recovery, lag = connection.execute(
            text(
                "SELECT pg_is_in_recovery(), "
                "extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
            )
        ).one()
    if not in_recovery:
        return "reachable; not a standby (a copy or a promoted server)"
    if lag is None:
        return "streaming standby, nothing replayed yet"
    return f"streaming standby, last replayed transaction {float(lag):.1f} s ago"


def registry(config: Mapping[str, Any], api_key: str | None) -> str:
    from kyso.platform.registry.client import load_registry

    client = load_registry(config, api_key)
    try:
        health = getattr(client, "health", None)
        if health is None:
            raise Skipped("the configured registry adapter has no health check")
        document = health()
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()
    status = str(document.get("status", ""))
    if status != "ok":
        raise RuntimeError(f"the registry says status={status!r}")
    return "ok"


def passport_signer(open_signer: Callable[[], Any] | None) -> str:
    if open_signer is None:
        raise Skipped("no passport HSM is configured on this instance")
    signer = open_signer()
    return f"{signer.algorithm} key on the token"


def readiness(
    checks: Mapping[str, Callable[[], str]], optional: frozenset[str] = frozenset()
) -> tuple[bool, list[Check]]:
    """Runs the checks; a failure of an ``optional`` one is ``degraded`` and leaves the
    instance ready (taking every instance out because a replica is down would stop the site)."""
    results = []
    for name, probe in checks.items():
        result = run_check(name, probe)
        if result.status == "fail" and name in optional:
            result = Check(name, "degraded", result.detail, result.milliseconds)
        results.append(result)
    return all(r.status != "fail" for r in results), results
