"""The fault suite's parts: PostgreSQL, the platform as a real process (``kyso-platform serve``),
a page-like HTTP client, and the invariants checked after every fault.

The platform is gunicorn in its own process group, so that SIGKILL takes the master and its
workers at once, as a crash or an OOM kill would. Its database is one PostgreSQL database for
the module (fresh per test: truncated), migrated by the platform's own migrations.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from support.openssl_cms import verify_export
from support.platform_db import PG_ADMIN, PG_URL, postgres_available
from support.platform_seed import PASSWORD, Seed, seed
from support.signing_data import bulk_people
from support.signing_keys import Pki, make_pki

from kyso.platform import testpki
from kyso.platform.db import Base, make_engine, make_session_factory
from kyso.platform.migrations import upgrade
from kyso.platform.models import (
    AuditEvent,
    BatchStatus,
    Dose,
    DoseSignature,
    ItemState,
    Passport,
    SigningBatch,
    SigningBatchItem,
)
from kyso.platform.signing.certificates import load_trust_store
from kyso.platform.signing.export import export_signed
from kyso.platform.signing.selection import add_doses
from kyso.platform.users.service import register_certificate

OFFICER = "kyduyet.bennghe"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture(scope="session")
def fault_database() -> Iterator[str]:
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL must be reachable on 127.0.0.1:5432 in CI")
        pytest.skip("the fault suite runs on PostgreSQL")
    name = f"kyso_faults_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.format(name=name)
    upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("fault-pki"))


@dataclass
class World:
    url: str  # the database
    engine: Engine
    sessions: sessionmaker[Session]
    pki: Pki
    directory: Path
    doses: int
    org: Seed  # loaded in a closed session (its attributes stay loaded)
    anchors: Path  # the test PKI's CA and the SoftHSM token's
    platform: Platform = field(init=False)

    def session(self) -> Session:
        return self.sessions()


class Platform:
    """``kyso-platform serve`` in its own process group, killed and restarted at will."""

    def __init__(self, world: World, manifest_key: Path) -> None:
        command = shutil.which("kyso-platform", path=str(Path(sys.executable).parent))
        assert command is not None
        self.command = command
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = {
            **os.environ,
            "DATABASE_URL": world.url,
            "KYSO_SECRET_KEY": "fault-suite",
            "KYSO_SECURE_COOKIES": "0",
            "KYSO_TRUST_ANCHORS": str(world.anchors),
            "KYSO_MANIFEST_KEY": str(manifest_key),
            "KYSO_INSTANCE_PATH": str(world.directory / "instance"),
            "KYSO_PUBLIC_ORIGIN": self.url,
        }
        self.log = world.directory / "platform.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.command, "serve", "--bind", f"127.0.0.1:{self.port}", "--workers", "2"],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the platform did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture
def world(
    fault_database: str, pki: Pki, test_pki: testpki.TestPki, tmp_path: Path
) -> Iterator[World]:
    engine = make_engine(fault_database)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    sessions = make_session_factory(engine)
    with sessions() as session:
        org = seed(session)
        register_certificate(session, org.admin, org.officer, pki.rsa.serial)
        people = bulk_people(session, org, 30, doses=2)
        doses = list(session.scalars(select(Dose.id).where(Dose.person_id.in_(people))))
        add_doses(session, org.officer, doses)
        session.commit()
    key = ec.generate_private_key(ec.SECP256R1())
    manifest_key = tmp_path / "manifest-key.pem"
    manifest_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    anchors = tmp_path / "anchors.pem"
    # The software officer's CA and the test PKI's root and issuing CA (the token's certificates).
    anchors.write_bytes(pki.anchors.read_bytes() + test_pki.anchors_pem())
    found = World(fault_database, engine, sessions, pki, tmp_path, len(doses), org, anchors)
    found.platform = Platform(found, manifest_key)
    found.platform.start()
    try:
        yield found
    finally:
        found.platform.stop()
        engine.dispose()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Officer:
    """What the signing page does over HTTP (one browser tab: its cookies and CSRF token)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.http = httpx.Client(base_url=world.platform.url, timeout=60)
        page = self.http.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        answer = self.http.post(
            "/login",
            data={"username": OFFICER, "password": PASSWORD, "csrf_token": token.group(1)},
        )
        assert answer.status_code in (200, 302, 303), answer.text[:500]
        self.csrf = self._csrf()

    def _csrf(self) -> str:
        page = self.http.get("/signing/batches").text
        found = re.search(r'name="csrf-token" content="([^"]+)"', page) or re.search(
            r'name="csrf_token" value="([^"]+)"', page
        )
        assert found, page[:500]
        return found.group(1)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(f"/signing/api{path}", json=body, headers={"X-CSRFToken": self.csrf})

    def prepare(self) -> dict[str, Any]:
        answer = self.post("/batches", {"der": b64(self.world.pki.rsa.der)})
        assert answer.status_code == 200, answer.text
        prepared: dict[str, Any] = answer.json()
        return prepared

    def sign(self, attempt: dict[str, Any]) -> list[str]:
        """The agent's signatures over the attempt's digests (the officer's key)."""
        return [b64(self.world.pki.rsa.sign(base64.b64decode(d))) for d in attempt["digests"]]

    def chunk(self, batch: str, attempt: str, offset: int, signatures: list[str]) -> httpx.Response:
        return self.post(
            f"/batches/{batch}/signatures",
            {"attempt": attempt, "offset": offset, "signatures": signatures},
        )

    def complete(self, batch: str) -> httpx.Response:
        return self.post(f"/batches/{batch}/complete", {})

    def close(self) -> None:
        self.http.close()


def invariants(world: World) -> dict[str, int]:
    """What must hold after any fault; returns a few counts for the test to compare."""
    with world.session() as session:
        doubled = session.execute(
            select(DoseSignature.dose_id, DoseSignature.dose_version)
            .group_by(DoseSignature.dose_id, DoseSignature.dose_version)
            .having(func.count() > 1)
        ).all()
        assert doubled == [], f"dose versions signed twice: {doubled}"
        orphans = session.scalars(
            select(DoseSignature.id).where(
                ~select(SigningBatchItem.position)
                .where(SigningBatchItem.signature_id == DoseSignature.id)
                .exists()
            )
        ).all()
        assert orphans == [], f"signatures without an item: {orphans}"
        completed = 0
        for batch in session.scalars(select(SigningBatch)):
            states = dict(
                session.execute(
                    select(SigningBatchItem.state, func.count())
                    .where(SigningBatchItem.batch_id == batch.id)
                    .group_by(SigningBatchItem.state)
                )
                .tuples()
                .all()
            )
            assert batch.signed == states.get(ItemState.SIGNED, 0), batch.id
            assert batch.rejected == states.get(ItemState.REJECTED, 0), batch.id
            assert batch.total == sum(states.values()), batch.id
            audits = session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.action == "signing.batch_completed", AuditEvent.target == batch.id
                )
            )
            if batch.status is BatchStatus.COMPLETED:
                completed += 1
                assert audits == 1, f"{batch.id}: {audits} completion audits"
                assert batch.completed_at is not None
                assert states.get(ItemState.PENDING, 0) == 0
            else:
                assert audits == 0, f"{batch.id}: open, {audits} completion audits"
        current = session.execute(
            select(Passport.person_id)
            .where(Passport.superseded_at.is_(None))
            .group_by(Passport.person_id)
            .having(func.count() > 1)
        ).all()
        assert current == [], f"people with two current passports: {current}"
        exported = 0
        trust = load_trust_store(world.anchors)
        for batch_id in session.scalars(
            select(SigningBatch.id).where(SigningBatch.signed > 0).order_by(SigningBatch.id)
        ):
            directory = world.directory / "export" / batch_id
            export_signed(session, batch_id, directory, trust)
            exported += verify_export(directory)
        signatures = session.scalar(select(func.count()).select_from(DoseSignature)) or 0
        assert exported == signatures  # every stored signature is exported and verifies
    return {"signatures": int(signatures), "completed": completed, "exported": exported}
