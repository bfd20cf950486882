"""The agent (a process of its own, on a SoftHSM token) killed with SIGKILL during the officer's
consent and mid-batch: what the page received is stored once, the rest is signed by a new
attempt after a new agent starts, nothing is signed or stored twice (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import func, select
from support.signing_data import bulk_people
from websockets.sync.client import connect

from kyso.agent.token.softhsm import ProvisionedToken
from kyso.platform.models import Dose, SigningAttempt, User
from kyso.platform.signing.selection import add_doses
from kyso.platform.users.service import register_certificate

from .conftest import OFFICER, Officer, World, b64, invariants

pytestmark = pytest.mark.timeout(120)


class AgentProcess:
    def __init__(self, world: World, softhsm: ProvisionedToken, name: str, hold: bool) -> None:
        script = Path(__file__).with_name("agent_process.py")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(script),
                softhsm.module_path,
                str(world.directory / name),
                world.platform.url,
                str(world.platform.environment["KYSO_MANIFEST_KEY"]),
                *(["--hold"] if hold else []),
            ],
            env={**world.platform.environment, "SOFTHSM2_CONF": str(softhsm.conf_path)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def _use_the_token(world: World, softhsm: ProvisionedToken) -> bytes:
    """The officer's certificate is the token's; 200 more doses selected, so that the agent
    delivers the batch in three messages (one per 100 signatures)."""
    der = softhsm.certificates["rsa"].der
    serial = f"{x509.load_der_x509_certificate(der).serial_number:X}"
    with world.session() as session:
        admin = session.get(User, world.org.admin.id)
        officer = session.scalars(select(User).where(User.username == OFFICER)).one()
        assert admin is not None
        register_certificate(session, admin, officer, serial)
        people = bulk_people(session, world.org, 100, doses=2)
        add_doses(
            session,
            officer,
            list(session.scalars(select(Dose.id).where(Dose.person_id.in_(people)))),
        )
        session.commit()
    return der


def _sign(
    agent: AgentProcess, world: World, attempt: dict[str, Any], *, stop_after: int | None
) -> list[tuple[int, list[str]]]:
    """The page's side: hello, sign; the chunks received (up to ``stop_after`` of them)."""
    chunks: list[tuple[int, list[str]]] = []
    with connect(f"ws://127.0.0.1:{agent.port}/", origin=world.platform.url) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"type": "hello", "id": "h1", "versions": [1]}))
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        request = {"type": "sign", "id": "s1"}
        request.update({k: attempt[k] for k in ("manifest", "certificate", "algorithm")})
        request["digests"] = attempt["digests"]
        ws.send(json.dumps(request))
        while True:
            message = json.loads(ws.recv(timeout=60))
            if message["type"] == "signatures":
                chunks.append((message["offset"], message["signatures"]))
                if stop_after is not None and len(chunks) >= stop_after:
                    return chunks
            elif message["type"] in ("result", "error", "cancelled"):
                assert message["type"] == "result", message
                return chunks
            elif (
                message["type"] == "progress" and message["stage"] == "consent" and stop_after == 0
            ):
                return chunks


@pytest.mark.parametrize("when", ["during consent", "mid-batch"])
def test_agent_killed(world: World, softhsm: ProvisionedToken, when: str) -> None:
    der = _use_the_token(world, softhsm)
    officer = Officer(world)
    answer = officer.post("/batches", {"der": b64(der)})
    assert answer.status_code == 200, answer.text
    prepared = answer.json()
    batch, attempt, total = prepared["batch"], prepared["attempt"], prepared["total"]
    assert total == world.doses + 200
    first = AgentProcess(world, softhsm, "agent1", hold=when == "during consent")
    try:
        received = _sign(first, world, attempt, stop_after=0 if when == "during consent" else 1)
    finally:
        first.kill()
    for offset, signatures in received:
        assert officer.chunk(batch, attempt["id"], offset, signatures).status_code == 200
    stored = invariants(world)["signatures"]
    assert stored == sum(len(s) for _, s in received)
    assert stored == (0 if when == "during consent" else 100)

    second = AgentProcess(world, softhsm, "agent2", hold=False)
    try:
        if stored < total:
            resumed = officer.post(f"/batches/{batch}/attempts", {"der": b64(der)})
            assert resumed.status_code == 200, resumed.text
            rest = resumed.json()["attempt"]
            assert rest["count"] == total - stored  # only what is still pending
            for offset, signatures in _sign(second, world, rest, stop_after=None):
                assert officer.chunk(batch, rest["id"], offset, signatures).status_code == 200
    finally:
        second.kill()
    assert officer.complete(batch).json()["status"] == "completed"
    counts = invariants(world)
    assert (counts["signatures"], counts["completed"]) == (total, 1)
    with world.session() as session:
        attempts = session.scalar(select(func.count()).select_from(SigningAttempt))
    assert attempts == 2
