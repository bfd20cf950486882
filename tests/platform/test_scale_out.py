"""More than one machine, on one machine: two `kyso-platform serve` instances (gunicorn, real
processes) on one PostgreSQL database, and three `issue-passports` workers sharing the queue.

An officer logs in through one instance, prepares a batch there, posts the signatures to the
other and completes it there (sessions, CSRF and the manifest are shared through the database
and the configuration, nothing lives in one process); then three workers issue the passports of
the signed doses, each exactly once.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.passport_fixtures import *  # noqa: F403
from support.passport_hsm import PassportKeys
from support.platform_db import Databases
from support.platform_seed import PASSWORD, Seed
from support.signing_data import bulk_people
from support.signing_keys import Pki, make_pki

from kyso.platform.models import (
    AuditEvent,
    Dose,
    IssuanceRun,
    Passport,
    PassportQueueEntry,
    PassportState,
)
from kyso.platform.signing.selection import add_doses
from kyso.platform.users.service import register_certificate

KYSO_PLATFORM = str(Path(sys.executable).with_name("kyso-platform"))
ORIGIN = "https://tiemchung.example.vn"
WORKERS = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def database_url(platform_databases: Databases) -> str:
    """PostgreSQL only: several processes write at once (SQLite has one writer)."""
    return platform_databases.postgresql()


@pytest.fixture
def environment(
    database_url: str, tmp_path: Path, passport_keys: PassportKeys
) -> tuple[dict[str, str], Pki]:
    pki = make_pki(tmp_path)
    manifest_key = tmp_path / "manifest-key.pem"
    manifest_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KYSO_", "PROMETHEUS_"))}
    env.update(passport_keys.environment("ES256"))
    env.update(
        DATABASE_URL=database_url,
        KYSO_INSTANCE_PATH=str(tmp_path / "instance"),
        KYSO_SECRET_KEY="one-secret-for-every-server",
        KYSO_SECURE_COOKIES="0",
        KYSO_TRUST_ANCHORS=str(pki.anchors),
        KYSO_MANIFEST_KEY=str(manifest_key),
        KYSO_PUBLIC_ORIGIN=ORIGIN,
        KYSO_REGISTRY_URL="http://127.0.0.1:9",
    )
    return env, pki


def _serve(env: dict[str, str], tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    server = subprocess.Popen(
        [KYSO_PLATFORM, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--threads", "2"],
        env={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{name}")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
def two_servers(
    environment: tuple[dict[str, str], Pki], tmp_path: Path
) -> Iterator[tuple[str, str]]:
    env, _ = environment
    servers = [_serve(env, tmp_path, "a"), _serve(env, tmp_path, "b")]
    try:
        for process, base in servers:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, f"{base} did not come up"
                time.sleep(0.2)
        yield servers[0][1], servers[1][1]
    finally:
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            _, stderr = process.communicate(timeout=60)
            assert "Traceback" not in stderr, stderr[-3000:]


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    assert found, "no CSRF token"
    return found.group(1)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_a_batch_prepared_on_one_server_completes_on_the_other_and_workers_issue_once(
    app: Flask,
    session: Session,
    org: Seed,
    environment: tuple[dict[str, str], Pki],
    two_servers: tuple[str, str],
) -> None:
    env, pki = environment
    first, second = two_servers
    register_certificate(session, org.admin, org.officer, pki.p256.serial)
    people = bulk_people(session, org, 40, doses=2)
    doses = list(session.scalars(select(Dose.id).where(Dose.person_id.in_(people))))
    add_doses(session, org.officer, doses)
    session.commit()

    browser = httpx.Client(timeout=30, follow_redirects=False)
    token = _csrf(browser.get(f"{first}/login").text)
    logged_in = browser.post(
        f"{first}/login",
        data={"username": "kyduyet.bennghe", "password": PASSWORD, "csrf_token": token},
    )
    assert logged_in.status_code == 302, logged_in.text[:500]
    # The other server knows the session: it lives in the database, not in a process.
    token = _csrf(browser.get(f"{second}/signing/batches").text)
    headers = {"X-CSRFToken": token, "Origin": ORIGIN}

    prepared = browser.post(
        f"{first}/signing/api/batches", json={"der": _b64(pki.p256.der)}, headers=headers
    )
    assert prepared.status_code == 200, prepared.text
    batch = prepared.json()
    attempt = batch["attempt"]
    assert batch["total"] == len(doses) == len(attempt["digests"])
    signatures = [_b64(pki.p256.sign(base64.b64decode(d))) for d in attempt["digests"]]
    url = f"{second}/signing/api/batches/{batch['batch']}"
    for offset in range(0, len(signatures), 25):
        posted = browser.post(
            f"{url}/signatures",
            json={
                "attempt": attempt["id"],
                "offset": offset,
                "signatures": signatures[offset : offset + 25],
            },
            headers=headers,
        )
        assert posted.status_code == 200, posted.text
    done = browser.post(f"{url}/complete", json={}, headers=headers).json()
    assert (done["status"], done["signed"], done["rejected"]) == ("completed", len(doses), 0)
    session.expire_all()
    completions = session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "signing.batch_completed")
    )
    assert completions == 1

    # Three issuance workers share the queue the batch filled.
    workers = [
        subprocess.Popen(
            [KYSO_PLATFORM, "issue-passports", "--chunk", "5"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        assert "Traceback" not in err
    session.expire_all()
    states = dict(
        session.execute(
            select(PassportQueueEntry.state, func.count()).group_by(PassportQueueEntry.state)
        )
        .tuples()
        .all()
    )
    assert states == {PassportState.ISSUED: len(doses)}
    per_person = dict(
        session.execute(select(Passport.person_id, func.count()).group_by(Passport.person_id))
        .tuples()
        .all()
    )
    assert set(per_person) == set(people)
    assert set(per_person.values()) == {1}  # each passport issued exactly once
    runs = session.scalars(select(IssuanceRun)).all()
    assert len(runs) == WORKERS
    assert sum(r.issued for r in runs) == len(people)
    assert sum(r.claimed for r in runs) == len(doses)
