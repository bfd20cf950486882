"""Readiness checks: can this instance do its work now? Flask-free; no personal data in results.

Each check answers ``ok``, ``fail`` (the instance should not get traffic: the load balancer takes
it out) or ``skipped`` (not configured on this instance, e.g. the passport HSM on a server that
only serves pages), with a short technical detail and the time it took.
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


def readiness(checks: Mapping[str, Callable[[], str]]) -> tuple[bool, list[Check]]:
    results = [run_check(name, probe) for name, probe in checks.items()]
    return all(r.status != "fail" for r in results), results
