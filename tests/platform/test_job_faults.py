"""The command-line jobs on a lost database connection (issue 19, items 2 and 4).

The connection is lost at an exact point: a lock the test holds makes the job's statement wait,
and the waiting backend is terminated (``pg_terminate_backend``), as PostgreSQL restarting or a
network cut looks to the job. PostgreSQL only (the fault is PostgreSQL's).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from support.cms_pki import Officer, Pki
from support.passport_data import queue_signed
from support.passport_fixtures import *  # noqa: F403
from support.passport_hsm import PassportKeys
from support.pg_faults import LockTrap
from support.platform_db import postgresql_only
from support.platform_seed import Seed, add_person

from kyso.platform.cli import main
from kyso.platform.models import (
    Gender,
    IssuanceRun,
    Passport,
    PassportQueueEntry,
    PassportState,
    RunStatus,
    VerificationStatus,
)
from kyso.platform.models import Person as PersonRow
from kyso.platform.passport.issuance import IssuanceContext, issue_passports
from kyso.platform.registry.reference_server import (
    Citizen,
    ReferenceServer,
    make_app,
    write_dataset,
)

RUN_UPDATE = "UPDATE passport_runs%"


# pg_terminate_backend is PostgreSQL's: no SQLite case is collected.
pytestmark = postgresql_only


def _trap_first_chunk(
    database_url: str, traps: list[LockTrap], times: int
) -> Callable[[], datetime]:
    """A clock for ``issue_passports``: its second reading (the first chunk's) locks the run's
    row, so that the chunk's last write (its counts) waits and its connection is terminated."""
    readings: list[int] = []

    def clock() -> datetime:
        readings.append(1)
        if len(readings) == 2:
            trap = LockTrap(
                database_url,
                "SELECT id FROM passport_runs WHERE id = (SELECT max(id) FROM passport_runs)"
                " FOR NO KEY UPDATE",  # passports may still reference it (FOR KEY SHARE)
                RUN_UPDATE,
                times=times,
            )
            traps.append(trap.start())
        return datetime.now(UTC)

    return clock


def _committed(session: Session, run_id: int) -> tuple[IssuanceRun, int]:
    session.expire_all()
    run = session.get(IssuanceRun, run_id)
    assert run is not None
    passports = session.scalar(
        select(func.count()).select_from(Passport).where(Passport.run_id == run_id)
    )
    return run, int(passports or 0)


def test_a_run_stopped_by_a_lost_connection_counts_only_what_committed(
    app: Flask,
    database_url: str,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issuance: IssuanceContext,
) -> None:
    """Issue 19, 2: the chunk's counts were added to the run before the chunk committed and the
    error handler saved them (issued = 3 with no passport of the run). Fails on the old code."""
    queue_signed(session, org, facility_pki, facility_officer, 3)
    traps: list[LockTrap] = []
    with pytest.raises(DBAPIError):
        issue_passports(
            app.extensions["kyso.sessions"],
            dataclasses.replace(issuance, retries=0),
            now=_trap_first_chunk(database_url, traps, times=1),
        )
    traps[0].wait()
    assert len(traps[0].killed) == 1
    run_id = session.scalar(select(func.max(IssuanceRun.id)))
    assert run_id is not None
    run, passports = _committed(session, run_id)
    assert passports == 0
    assert (run.issued, run.covered, run.failed, run.claimed) == (0, 0, 0, 0)
    assert run.status is RunStatus.STOPPED
    assert "terminat" in (run.message or "")
    states = session.scalars(select(PassportQueueEntry.state)).all()
    assert states == [PassportState.PENDING] * 6  # rolled back: the next run takes them


def test_a_chunk_is_tried_again_after_a_lost_connection(
    app: Flask,
    database_url: str,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issuance: IssuanceContext,
) -> None:
    """Issue 19, 4: the job retries a chunk itself (a bounded number of times). Fails on the old
    code (the run stopped with the raw error)."""
    people = queue_signed(session, org, facility_pki, facility_officer, 3)
    traps: list[LockTrap] = []
    summary = issue_passports(
        app.extensions["kyso.sessions"],
        dataclasses.replace(issuance, retries=2, retry_pause=0.01),
        now=_trap_first_chunk(database_url, traps, times=2),
    )
    traps[0].wait()
    assert len(traps[0].killed) == 2  # the first try and the second; the third went through
    assert summary.status is RunStatus.FINISHED
    run, passports = _committed(session, summary.run_id)
    assert (run.issued, run.claimed, run.status) == (3, 6, RunStatus.FINISHED)
    assert passports == 3
    current = session.execute(
        select(Passport.person_id, func.count())
        .where(Passport.superseded_at.is_(None))
        .group_by(Passport.person_id)
    ).all()
    assert sorted(current) == sorted((p, 1) for p in people)


@pytest.fixture
def worker_environment(
    database_url: str, passport_keys: PassportKeys, facility_pki: Pki, tmp_path: Path
) -> dict[str, str]:
    anchors = facility_pki.write_anchors(tmp_path / "anchors.pem", with_intermediate=True)
    return {
        **os.environ,
        **passport_keys.environment("ES256"),
        "DATABASE_URL": database_url,
        "KYSO_TRUST_ANCHORS": str(anchors),
        "KYSO_INSTANCE_PATH": str(tmp_path / "instance"),
        "KYSO_SECRET_KEY": "test",
    }


def test_issue_passports_says_try_again_later_on_a_lost_database(
    database_url: str,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    worker_environment: dict[str, str],
) -> None:
    """Issue 19, 4: the real command, its database connection terminated whenever it writes a
    run: a clear message and exit code 75, no traceback. Fails on the old code (a raw
    SQLAlchemy traceback, exit code 1)."""
    queue_signed(session, org, facility_pki, facility_officer, 2)
    session.rollback()
    command = shutil.which("kyso-platform", path=str(Path(sys.executable).parent))
    assert command is not None
    with LockTrap(
        database_url, "LOCK TABLE passport_runs IN EXCLUSIVE MODE", "%passport_runs%", times=100
    ) as trap:
        done = subprocess.run(
            [command, "issue-passports"],
            env=worker_environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert trap.killed
    assert done.returncode == 75, done.stderr
    assert "Traceback" not in done.stderr
    assert "sqlalchemy" not in done.stderr.lower()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2  # Vietnamese, then English
    assert lines[0].startswith("issue-passports: mất kết nối tới cơ sở dữ liệu")
    assert "run the command again in a few minutes (exit code 75)" in lines[1]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Passport)) == 0
    states = set(session.scalars(select(PassportQueueEntry.state)))
    assert states == {PassportState.PENDING}


AN = Citizen("079090000001", "Nguyễn Văn An", date(1990, 5, 17), Gender.MALE)
BINH = Citizen("001185000002", "Trần Thị Bình", date(1985, 2, 3), Gender.FEMALE)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ReferenceServer]:
    path = tmp_path / "registry.db"
    write_dataset(path, [AN, BINH])
    with ReferenceServer(make_app(path, api_key="k")) as running:
        yield running


def _verify(database_url: str, tmp_path: Path, url: str) -> tuple[int, str, str]:
    env = {
        "DATABASE_URL": database_url,
        "KYSO_REGISTRY_URL": url,
        "KYSO_INSTANCE_PATH": str(tmp_path / "instance"),
        "KYSO_SECRET_KEY": "cli-test-secret",
        "KYSO_REGISTRY_API_KEY": "k",
    }
    result = CliRunner().invoke(main, ["verify-population", "--batch-size", "1"], env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("kills", [2, 100])
def test_verify_population_retries_a_batch_then_says_try_again_later(
    database_url: str,
    tmp_path: Path,
    registry: ReferenceServer,
    session: Session,
    org: Seed,
    kills: int,
) -> None:
    """Issue 19, 4: a batch whose claim loses its connection is tried again (3 times); an outage
    longer than that ends the job with a one-line message per language and exit code 75. Fails
    on the old code (a raw traceback, exit code 1)."""
    for citizen in (AN, BINH):
        add_person(
            session,
            org,
            citizen.full_name,
            doses=1,
            status=VerificationStatus.PENDING,
            identity_number=citizen.identity_number,
            birth_date=citizen.birth_date,
            gender=citizen.gender,
        )
    session.commit()
    with LockTrap(
        database_url, "LOCK TABLE people IN EXCLUSIVE MODE", "%FROM people%", times=kills
    ) as trap:
        code, out, err = _verify(database_url, tmp_path, registry.url)
    session.expire_all()
    statuses = list(session.scalars(select(PersonRow.verification_status)))
    if kills == 2:
        assert len(trap.killed) == 2
        assert code == 0, err
        assert statuses == [VerificationStatus.VERIFIED] * 2
        assert "verified 2 people in 2 batches (verified 2)" in out
    else:
        assert len(trap.killed) == 4  # the first try and 3 more
        assert code == 75, err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 2
        assert lines[1].startswith("verify-population: the database connection was lost")
        assert statuses == [VerificationStatus.PENDING] * 2
