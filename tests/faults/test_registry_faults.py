"""The population registry killed (SIGKILL) or frozen (SIGSTOP) while ``verify-population`` runs:
the job says "try again later" (exit code 75), leaves nobody half-verified, and the next run
after the registry is back verifies everyone once (issue 19)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.platform_seed import add_person

from kyso.platform.models import Gender, Person, VerificationStatus
from kyso.platform.registry.reference_server import Citizen, write_dataset

from .conftest import World, invariants

pytestmark = pytest.mark.timeout(120)

KEY = "fault-suite-key"
CITIZENS = [
    Citizen(f"0790900000{i:02d}", f"Nguyễn Văn Số {i}", date(1990, 5, 1 + i), Gender.MALE)
    for i in range(1, 7)
]


def _command() -> str:
    command = shutil.which("kyso-platform", path=str(Path(sys.executable).parent))
    assert command is not None
    return command


class Registry:
    def __init__(self, dataset: Path, environment: dict[str, str]) -> None:
        self.dataset = dataset
        self.environment = environment
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self.process = subprocess.Popen(
            [_command(), "registry", "serve", "--port", "0", "--dataset", str(self.dataset)],
            env={**self.environment, "KYSO_REGISTRY_API_KEY": KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line
        self.url = f"http://127.0.0.1:{found.group(1)}"

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)


def _statuses(world: World) -> dict[VerificationStatus, int]:
    with world.session() as session:
        return dict(
            session.execute(
                select(Person.verification_status, func.count())
                .where(Person.identity_number.in_([c.identity_number for c in CITIZENS]))
                .group_by(Person.verification_status)
            )
            .tuples()
            .all()
        )


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_registry_lost_during_verify_population(world: World, fault: str) -> None:
    with world.session() as session:
        for citizen in CITIZENS:
            add_person(
                session,
                world.org,
                citizen.full_name,
                doses=1,
                status=VerificationStatus.PENDING,
                identity_number=citizen.identity_number,
                birth_date=citizen.birth_date,
                gender=citizen.gender,
            )
        session.commit()
    dataset = world.directory / "registry.db"
    write_dataset(dataset, CITIZENS)
    environment = {**world.platform.environment, "KYSO_REGISTRY_TIMEOUT": "1"}
    registry = Registry(dataset, environment)
    registry.start()
    try:
        job = subprocess.Popen(
            [_command(), "verify-population", "--batch-size", "1", "--verbose"],
            env={**environment, "KYSO_REGISTRY_URL": registry.url, "KYSO_REGISTRY_API_KEY": KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert job.stderr is not None
        first = job.stderr.readline()  # "batch 1: ..." — one person verified
        assert first.startswith("batch 1:"), first
        registry.signal(signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
        out, err = job.communicate(timeout=60)
        assert job.returncode == 75, first + out + err
        assert "Traceback" not in err
        assert "run again later" in err
        counts = _statuses(world)
        assert counts.get(VerificationStatus.VERIFIED, 0) >= 1
        assert sum(counts.values()) == len(CITIZENS)
        # The registry is back: the next run verifies the rest, each person once.
        if fault == "frozen":
            registry.signal(signal.SIGCONT)
        else:
            registry.start()
        again = subprocess.run(
            [_command(), "verify-population"],
            env={**environment, "KYSO_REGISTRY_URL": registry.url, "KYSO_REGISTRY_API_KEY": KEY},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert _statuses(world) == {VerificationStatus.VERIFIED: len(CITIZENS)}
    finally:
        registry.stop()
    invariants(world)
