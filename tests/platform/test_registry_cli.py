"""The registry commands: verify-population, registry serve and registry import-dataset."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_seed import Seed, add_person

from kyso.platform.cli import main
from kyso.platform.models import Gender, Person, VerificationStatus
from kyso.platform.registry.protocol import RegistryCitizen
from kyso.platform.registry.reference_server import (
    Citizen,
    ReferenceServer,
    dataset_size,
    make_app,
    write_dataset,
)

KEY = "cli-test-key"
AN = Citizen("079090000001", "Nguyễn Văn An", date(1990, 5, 17), Gender.MALE)
BINH = Citizen("001185000002", "Trần Thị Bình", date(1985, 2, 3), Gender.FEMALE)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ReferenceServer]:
    path = tmp_path / "registry.db"
    write_dataset(path, [AN, BINH])
    with ReferenceServer(make_app(path, api_key=KEY)) as running:
        yield running


@pytest.fixture
def people(session: Session, org: Seed) -> list[Person]:
    found = [
        add_person(
            session,
            org,
            c.full_name,
            doses=1,
            status=VerificationStatus.PENDING,
            identity_number=c.identity_number,
            birth_date=c.birth_date,
            gender=c.gender,
        )
        for c in (AN, BINH)
    ]
    found.append(
        add_person(
            session,
            org,
            "Lý Văn Cũ",
            doses=1,
            status=VerificationStatus.PENDING,
            identity_number="025123456",
        )
    )
    session.commit()
    return found


def run(database_url: str, tmp_path: Path, url: str, *args: str, key: str | None = KEY) -> Result:
    env = {
        "DATABASE_URL": database_url,
        "KYSO_REGISTRY_URL": url,
        "KYSO_INSTANCE_PATH": str(tmp_path / "instance"),
        "KYSO_SECRET_KEY": "cli-test-secret",
        "KYSO_REGISTRY_API_KEY": key or "",
    }
    return CliRunner().invoke(main, ["verify-population", *args], env=env)


def statuses(session: Session) -> list[VerificationStatus]:
    session.expire_all()
    return list(session.scalars(select(Person.verification_status).order_by(Person.id)))


def test_verify_population(
    database_url: str,
    tmp_path: Path,
    server: ReferenceServer,
    session: Session,
    people: list[Person],
) -> None:
    result = run(database_url, tmp_path, server.url, "--batch-size", "2", "--verbose")
    assert result.exit_code == 0, result.output
    assert "verified 3 people in 2 batches (verified 2, old_id_only 1); 2 numbers looked up" in (
        result.stdout
    )
    assert "batch 1: 2 people" in result.stderr
    assert statuses(session) == [
        VerificationStatus.VERIFIED,
        VerificationStatus.VERIFIED,
        VerificationStatus.OLD_ID_ONLY,
    ]
    again = run(database_url, tmp_path, server.url)
    assert again.exit_code == 0
    assert "nobody to verify" in again.stdout


def test_verify_population_with_a_limit(
    database_url: str,
    tmp_path: Path,
    server: ReferenceServer,
    session: Session,
    people: list[Person],
) -> None:
    result = run(database_url, tmp_path, server.url, "--limit", "1")
    assert result.exit_code == 0, result.output
    assert statuses(session).count(VerificationStatus.PENDING) == 2
    assert run(database_url, tmp_path, server.url, "--batch-size", "0").exit_code == 2


def test_a_wrong_api_key_fails_clearly(
    database_url: str,
    tmp_path: Path,
    server: ReferenceServer,
    session: Session,
    people: list[Person],
) -> None:
    result = run(database_url, tmp_path, server.url, key="not-the-key")
    assert result.exit_code == 1
    assert "CSDL dân cư từ chối khóa truy cập (HTTP 401)" in result.stderr
    assert "refused the API key" in result.stderr
    assert statuses(session) == [VerificationStatus.PENDING] * 3
    missing = run(database_url, tmp_path, server.url, key=None)
    assert missing.exit_code == 1


def test_an_unreachable_registry_asks_to_run_again(
    database_url: str, tmp_path: Path, session: Session, people: list[Person]
) -> None:
    result = run(database_url, tmp_path, "http://127.0.0.1:9")
    assert result.exit_code == 75
    assert "the registry was unavailable (connection)" in result.stderr
    assert statuses(session) == [
        VerificationStatus.UNAVAILABLE,
        VerificationStatus.UNAVAILABLE,
        VerificationStatus.OLD_ID_ONLY,
    ]


def test_import_dataset(tmp_path: Path) -> None:
    csv_file = tmp_path / "citizens.csv"
    csv_file.write_text(
        "identity_number,full_name,birth_date,gender\n"
        "079090000001,Nguyễn Văn An,17/05/1990,Nam\n"
        "001185000002,Trần Thị Bình,1985-02-03,female\n",
        encoding="utf-8",
    )
    dataset = tmp_path / "out" / "registry.db"
    env = {"KYSO_INSTANCE_PATH": str(tmp_path / "instance"), "KYSO_SECRET_KEY": "x"}
    runner = CliRunner()
    result = runner.invoke(
        main, ["registry", "import-dataset", str(csv_file), "--dataset", str(dataset)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "2 citizens written" in result.stdout
    assert dataset_size(dataset) == 2
    csv_file.write_text(
        "identity_number,full_name,birth_date,gender\n079090000001,An,1990-05-17,?\n",
        encoding="utf-8",
    )
    bad = runner.invoke(
        main, ["registry", "import-dataset", str(csv_file), "--dataset", str(dataset)], env=env
    )
    assert bad.exit_code == 1
    assert "line 2" in bad.output
    assert dataset_size(dataset) == 2


def test_registry_serve_runs_the_reference_service(tmp_path: Path) -> None:
    dataset = tmp_path / "registry.db"
    write_dataset(dataset, [AN])
    env = {
        **os.environ,
        "KYSO_INSTANCE_PATH": str(tmp_path / "instance"),
        "KYSO_SECRET_KEY": "x",
        "KYSO_REGISTRY_API_KEY": KEY,
    }
    command = [sys.executable, "-m", "kyso.platform.cli", "registry", "serve"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--dataset", str(dataset)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("reference registry on http://127.0.0.1:"), first
        assert "API key required" in first
        url = first.split()[3]
        assert httpx.get(f"{url}/v1/health").json()["status"] == "ok"
        body = {"identity_numbers": [AN.identity_number]}
        answer = httpx.post(
            f"{url}/v1/citizens:lookup", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert answer.json() == {"citizens": [AN.to_json()], "not_found": []}
        refused = httpx.post(f"{url}/v1/citizens:lookup", json=body)
        assert refused.status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)

    missing = subprocess.run(
        [*command, "--dataset", str(tmp_path / "absent.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "no such dataset" in missing.stderr


def test_a_production_adapter_plugs_in_from_the_environment(
    database_url: str,
    tmp_path: Path,
    session: Session,
    people: list[Person],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    class Upstream:
        def lookup(self, identity_numbers: Sequence[str]) -> dict[str, RegistryCitizen | None]:
            asked.extend(identity_numbers)
            return dict.fromkeys(identity_numbers)

    module = types.ModuleType("kyso_test_cli_adapter")
    module.make = lambda config, api_key: Upstream()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setenv("KYSO_REGISTRY_ADAPTER", f"{module.__name__}:make")
    result = run(database_url, tmp_path, "http://127.0.0.1:9")
    assert result.exit_code == 0, result.output
    assert sorted(asked) == sorted([AN.identity_number, BINH.identity_number])
    assert statuses(session) == [
        VerificationStatus.MISMATCH,
        VerificationStatus.MISMATCH,
        VerificationStatus.OLD_ID_ONLY,
    ]
