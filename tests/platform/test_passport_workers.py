"""Several issuance workers at once on PostgreSQL: nothing is issued twice.

Four ``kyso-platform issue-passports`` processes (the real command, each with its own
PKCS#11 session on the SoftHSM token) drain one queue; then four threads of one process do the
same, released together by a barrier. Afterwards every queue entry is issued exactly once:
one passport per person, none superseded, the runs' counts add up to the queue.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.cms_pki import Officer, Pki
from support.passport_data import queue_signed
from support.passport_fixtures import *  # noqa: F403
from support.passport_hsm import PassportKeys
from support.platform_db import postgresql_only
from support.platform_seed import Seed

from kyso.platform.models import IssuanceRun, Passport, PassportQueueEntry, PassportState
from kyso.platform.passport import render
from kyso.platform.passport.issuance import IssuanceContext, RunSummary, issue_passports

WORKERS = 4


def _assert_issued_once(session: Session, people: Sequence[int], runs: Sequence[int]) -> None:
    session.expire_all()
    states = dict(
        session.execute(
            select(PassportQueueEntry.state, func.count()).group_by(PassportQueueEntry.state)
        )
        .tuples()
        .all()
    )
    assert states == {PassportState.ISSUED: 2 * len(people)}
    per_person = dict(
        session.execute(select(Passport.person_id, func.count()).group_by(Passport.person_id))
        .tuples()
        .all()
    )
    assert set(per_person) == set(people)
    assert set(per_person.values()) == {1}  # one passport each: nothing issued twice
    assert (
        session.scalar(
            select(func.count()).select_from(Passport).where(Passport.superseded_at.is_not(None))
        )
        == 0
    )
    assert session.scalar(select(func.count(func.distinct(Passport.uvci)))) == len(people)
    rows = session.scalars(select(IssuanceRun).where(IssuanceRun.id.in_(runs))).all()
    assert sum(r.issued for r in rows) == len(people)
    assert sum(r.claimed for r in rows) == 2 * len(people)  # every entry handled once
    assert sum(r.failed for r in rows) == 0
    # The work was shared: more than one worker issued passports.
    assert sum(1 for r in rows if r.issued > 0) >= 2


@postgresql_only  # concurrent workers need PostgreSQL (SQLite has one writer)
def test_four_processes_issue_each_certificate_once(
    app: Flask,
    database_url: str,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    passport_keys: PassportKeys,
    tmp_path: Path,
) -> None:
    people = queue_signed(session, org, facility_pki, facility_officer, 600)
    anchors = facility_pki.write_anchors(tmp_path / "anchors.pem", with_intermediate=True)
    command = shutil.which("kyso-platform", path=str(Path(sys.executable).parent))
    assert command is not None
    environment = {
        **os.environ,
        **passport_keys.environment("ES256"),
        "DATABASE_URL": database_url,
        "KYSO_TRUST_ANCHORS": str(anchors),
        "KYSO_INSTANCE_PATH": str(tmp_path / "instance"),
        "KYSO_SECRET_KEY": "test",
    }
    processes = [
        subprocess.Popen(
            [command, "issue-passports", "--chunk", "20"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    outputs = [p.communicate(timeout=240) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert "passports issued" in out
    runs = list(session.scalars(select(IssuanceRun.id)))
    assert len(runs) == WORKERS
    _assert_issued_once(session, people, runs)

    # The command-line verifier accepts what the workers issued, as text and as a QR picture.
    payload = session.scalars(select(Passport.payload).limit(1)).one()
    done = subprocess.run(
        [command, "dcc", "verify", payload], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("VALID")
    picture = tmp_path / "qr.png"
    picture.write_bytes(render.qr_png(payload))
    done = subprocess.run(
        [command, "dcc", "verify", "--image", str(picture)],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    broken = payload[:-8] + ("A" if payload[-8] != "A" else "B") + payload[-7:]
    done = subprocess.run(
        [command, "dcc", "verify", broken], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "NOT VALID" in done.stdout


@postgresql_only  # concurrent workers need PostgreSQL (SQLite has one writer)
def test_four_threads_issue_each_certificate_once(
    app: Flask,
    database_url: str,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issuance: IssuanceContext,
) -> None:
    people = queue_signed(session, org, facility_pki, facility_officer, 400)
    factory = app.extensions["kyso.sessions"]
    context = IssuanceContext(
        trust=issuance.trust,
        sign=issuance.sign,
        algorithm=issuance.algorithm,
        certificate_der=issuance.certificate_der,
        chunk=10,
    )
    barrier = threading.Barrier(WORKERS)
    results: list[RunSummary] = []
    failures: list[BaseException] = []

    def work(number: int) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(issue_passports(factory, context, worker=f"thread-{number}"))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert failures == []
    assert len(results) == WORKERS
    _assert_issued_once(session, people, [r.run_id for r in results])
    summary: dict[str, Any] = {r.run_id: (r.issued, r.covered) for r in results}
    print("\nthreads (issued, covered):", summary)
