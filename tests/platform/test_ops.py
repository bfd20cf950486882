"""Operations endpoints (/healthz, /readyz, /metrics, request ids) and `kyso-platform serve`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from support.platform_db import Databases

from kyso.platform.registry.reference_server import ReferenceServer, make_app, write_dataset

KYSO_PLATFORM = str(Path(sys.executable).with_name("kyso-platform"))


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ReferenceServer]:
    dataset = tmp_path / "registry.db"
    write_dataset(dataset, [])
    with ReferenceServer(make_app(dataset)) as running:
        yield running


def test_healthz_answers_while_the_process_runs(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_ready_with_the_database_and_the_registry_up(
    app: Flask, client: FlaskClient, registry: ReferenceServer
) -> None:
    app.config["REGISTRY_URL"] = registry.url
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    checks = response.json["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["registry"]["status"] == "ok"
    # No passport HSM on this instance: reported, not a failure.
    assert checks["passport_hsm"]["status"] == "skipped"


def test_readyz_is_not_ready_when_the_registry_is_down_and_says_which_check(
    client: FlaskClient,
) -> None:
    response = client.get("/readyz")  # the fixture's registry URL has nothing listening
    assert response.status_code == 503
    assert response.json["status"] == "fail"
    assert response.json["checks"]["registry"]["status"] == "fail"
    assert response.json["checks"]["database"]["status"] == "ok"


def test_metrics_only_for_the_configured_addresses(app: Flask, client: FlaskClient) -> None:
    client.get("/healthz")
    local = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert local.status_code == 200
    assert 'kyso_http_request_duration_seconds_count{endpoint="ops.healthz"' in local.text
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert outside.status_code == 404
    assert "kyso_" not in outside.text
    app.config["METRICS_ALLOW"] = "203.0.113.0/24"
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404


def test_every_response_carries_a_request_id(client: FlaskClient) -> None:
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/healthz").headers["X-Request-ID"] != generated
    forwarded = client.get("/healthz", headers={"X-Request-ID": "proxy-abc.123"})
    assert forwarded.headers["X-Request-ID"] == "proxy-abc.123"
    # A header that is not an id (too long, or with other characters) is replaced.
    hostile = client.get("/healthz", headers={"X-Request-ID": 'a b"<script>' + "x" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(database_url: str, instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KYSO_", "PROMETHEUS_"))}
    env.update(
        DATABASE_URL=database_url,
        KYSO_INSTANCE_PATH=str(instance),
        KYSO_SECRET_KEY="serve-test",
        KYSO_REGISTRY_URL="http://127.0.0.1:9",
    )
    return env


def test_serve_refuses_sqlite_unless_allowed(tmp_path: Path) -> None:
    env = _environment(f"sqlite:///{tmp_path / 'kyso.db'}", tmp_path / "instance")
    done = subprocess.run(
        [KYSO_PLATFORM, "serve", "--bind", "127.0.0.1:9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "SQLite" in done.stderr
    assert "--allow-sqlite" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_runs_workers_whose_metrics_add_up_and_reloads_gracefully(
    platform_databases: Databases, tmp_path: Path
) -> None:
    database_url = platform_databases.postgresql()
    port = _free_port()
    env = _environment(database_url, tmp_path / "instance")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    server = subprocess.Popen(
        [KYSO_PLATFORM, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "3",
         "--threads", "2"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        count = 60
        with httpx.Client(base_url=base) as http:  # new connections spread over the workers
            for _ in range(count):
                assert http.get("/healthz", headers={"Connection": "close"}).status_code == 200
        exposition = httpx.get(f"{base}/metrics", timeout=10).text
        line = next(
            line
            for line in exposition.splitlines()
            if line.startswith("kyso_http_request_duration_seconds_count")
            and 'endpoint="ops.healthz"' in line
        )
        # Every worker's requests add up: the probing ones before, and the 60.
        assert float(line.rsplit(" ", 1)[1]) >= count
        workers = {
            path.name.split("_")[-1] for path in (tmp_path / "metrics").glob("histogram_*.db")
        }
        assert len(workers) >= 2, workers  # more than one process answered

        # A graceful reload keeps serving.
        server.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    # JSON lines, every one: gunicorn's own, and the access log (the path without its query,
    # the request id).
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    access = [line for line in lines if line["logger"] == "access"]
    assert access, stderr[-2000:]
    assert access[0]["path"] == "/healthz"
    assert re.fullmatch(r"[0-9a-f]{32}", access[0]["request_id"])
    assert "Traceback" not in stderr


def test_serve_subsets_the_pdf_fonts_once_in_the_master_before_the_workers_fork(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kyso.platform.ops import serve as serving
    from kyso.platform.passport import pdfpage

    monkeypatch.setattr(serving.PlatformServer, "run", lambda self: None)
    monkeypatch.setattr(serving.logs, "configure", lambda: None)  # keep pytest's handlers
    monkeypatch.delenv("KYSO_PASSPORT_FONT_DIR", raising=False)
    pdfpage.page_font.cache_clear()
    serving.serve(lambda: None, bind="127.0.0.1:9", workers=1, threads=1)  # type: ignore[arg-type,return-value]
    assert pdfpage.page_font.cache_info().currsize == 2  # inherited by every forked worker
