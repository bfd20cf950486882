"""``issue-passports`` killed (SIGKILL) inside a chunk, and its database connection terminated
there: the next run issues each passport once, and each run's counts are its passports
(issue 19). The exact point: the chunk's passports insert waits on a lock the test holds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.passport_fixtures import passport_keys  # noqa: F401 (a fixture)
from support.passport_hsm import PassportKeys
from support.pg_faults import HeldLock, LockTrap

from kyso.platform.models import IssuanceRun, Passport, PassportQueueEntry, PassportState

from .conftest import Officer, World, invariants

pytestmark = pytest.mark.timeout(180)


def _issue(world: World, keys: PassportKeys) -> subprocess.Popen[str]:
    command = shutil.which("kyso-platform", path=str(Path(sys.executable).parent))
    assert command is not None
    return subprocess.Popen(
        [command, "issue-passports", "--chunk", "10"],
        env={**world.platform.environment, **keys.environment("ES256")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _signed(world: World) -> None:
    officer = Officer(world)
    prepared = officer.prepare()
    signatures = officer.sign(prepared["attempt"])
    for offset in range(0, len(signatures), 20):
        answer = officer.chunk(
            prepared["batch"], prepared["attempt"]["id"], offset, signatures[offset : offset + 20]
        )
        assert answer.status_code == 200, answer.text


def _issued_once(world: World) -> None:
    invariants(world)
    with world.session() as session:
        people = session.scalar(select(func.count(func.distinct(PassportQueueEntry.person_id))))
        current = session.scalar(
            select(func.count()).select_from(Passport).where(Passport.superseded_at.is_(None))
        )
        assert current == people
        states = set(session.scalars(select(PassportQueueEntry.state)))
        assert states == {PassportState.ISSUED}
        for run in session.scalars(select(IssuanceRun)):
            made = session.scalar(
                select(func.count()).select_from(Passport).where(Passport.run_id == run.id)
            )
            assert run.issued == made, f"run {run.id}: {run.issued} counted, {made} issued"


def test_issue_passports_killed_inside_a_chunk(
    world: World,
    passport_keys: PassportKeys,  # noqa: F811
) -> None:
    _signed(world)
    held = HeldLock(world.url, "LOCK TABLE passports IN EXCLUSIVE MODE")
    job = _issue(world, passport_keys)
    try:
        held.wait_for("INSERT INTO passports%", timeout=60)
        job.kill()
        job.wait(10)
    finally:
        held.release()
    again = _issue(world, passport_keys)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out + err
    _issued_once(world)


def test_issue_passports_connection_terminated_inside_a_chunk(
    world: World,
    passport_keys: PassportKeys,  # noqa: F811
) -> None:
    _signed(world)
    with LockTrap(
        world.url, "LOCK TABLE passports IN EXCLUSIVE MODE", "INSERT INTO passports%", times=2
    ) as trap:
        job = _issue(world, passport_keys)
        out, err = job.communicate(timeout=120)
    assert len(trap.killed) == 2
    assert job.returncode == 0, out + err  # the chunk was tried again
    _issued_once(world)
