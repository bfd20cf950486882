"""Demo data: realistic people, the documented shares of identity problems, determinism, speed."""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kyso.platform.auth.service import authenticate
from kyso.platform.models import (
    Area,
    Dose,
    Facility,
    Gender,
    Person,
    Role,
    SigningUnit,
    SigningUnitKind,
    User,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.records import demo, rules
from kyso.platform.records.demo import IdentityProblem
from kyso.platform.records.names import name_key
from kyso.platform.records.reference_data import load_reference_data, read_toml
from kyso.platform.registry.identity import PROVINCES, check_identity

SAMPLE = 6000


@pytest.fixture
def world(session: Session) -> demo.DemoWorld:
    load_reference_data(session)
    demo.ensure_demo_organisation(session)
    session.commit()
    return demo.DemoWorld.load(session)


@pytest.fixture
def people(world: demo.DemoWorld) -> list[demo.DemoPerson]:
    return list(demo.generate_people(world, SAMPLE, seed=2022))


def _share(people: list[demo.DemoPerson], problem: IdentityProblem) -> float:
    return sum(1 for p in people if p.problem is problem) / len(people)


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        (IdentityProblem.MISSING, 0.05),
        (IdentityProblem.OLD_ID, 0.03),
        (IdentityProblem.MALFORMED, 0.04),
        (IdentityProblem.REGISTRY_MISMATCH, 0.03),
        (IdentityProblem.NONE, 0.85),
    ],
)
def test_shares_of_identity_problems(
    people: list[demo.DemoPerson], problem: IdentityProblem, expected: float
) -> None:
    # Binomial standard deviation at 6,000 people is under 0.5 point for these shares.
    assert abs(_share(people, problem) - expected) < 0.012


def test_numbers_are_what_verification_will_find(people: list[demo.DemoPerson]) -> None:
    """An independent check (the registry's format rules) agrees with every label."""
    expected = {
        IdentityProblem.NONE: None,
        IdentityProblem.REGISTRY_MISMATCH: None,
        IdentityProblem.MISSING: VerificationStatus.NO_IDENTITY,
        IdentityProblem.OLD_ID: VerificationStatus.OLD_ID_ONLY,
        IdentityProblem.MALFORMED: VerificationStatus.WRONG_FORMAT,
    }
    rules_broken: Counter[str] = Counter()
    for person in people:
        check = check_identity(person.identity_number, person.birth_date, person.gender)
        assert check.status is expected[person.problem], person
        if check.rule is not None:
            rules_broken[check.rule.value] += 1
        if person.identity_number:
            assert len(person.identity_number) <= 12
    # Malformed numbers are malformed in each of the ways real data is.
    assert set(rules_broken) >= {"length", "province", "century_gender", "birth_year"}


def test_good_numbers_follow_the_person(people: list[demo.DemoPerson]) -> None:
    good = [p for p in people if p.problem is IdentityProblem.NONE]
    numbers = [p.identity_number for p in good]
    assert len(set(numbers)) == len(numbers), "unique within a run"
    born_where_they_live = 0
    for person in good:
        number = person.identity_number or ""
        assert number[:3] in PROVINCES
        century = 2 * ((person.birth_date.year - 1900) // 100)
        assert int(number[3]) == century + (person.gender is Gender.FEMALE)
        assert number[4:6] == f"{person.birth_date.year % 100:02d}"
        area_province = {"2": "79", "0": "01"}.get(person.area_code[0])
        born_where_they_live += number[1:3] in (area_province, "02", "01", "79")
    assert born_where_they_live / len(good) > 0.6


def test_the_registry_agrees_or_contradicts_as_labelled(people: list[demo.DemoPerson]) -> None:
    kinds: Counter[str] = Counter()
    for person in people:
        entry = person.registry
        if person.problem is IdentityProblem.NONE:
            assert entry == demo.RegistryEntry(
                person.identity_number or "", person.full_name, person.birth_date, person.gender
            )
        elif person.problem is IdentityProblem.REGISTRY_MISMATCH:
            if entry is None:
                kinds["unknown"] += 1
                continue
            assert entry.identity_number == person.identity_number
            differs = [
                field
                for field, mine, theirs in (
                    ("name", name_key(person.full_name), name_key(entry.full_name)),
                    ("birth_date", person.birth_date, entry.birth_date),
                    ("gender", person.gender, entry.gender),
                )
                if mine != theirs
            ]
            assert len(differs) == 1, (person, entry)
            kinds[differs[0]] += 1
        else:
            assert entry is None
    assert set(kinds) == {"unknown", "name", "birth_date", "gender"}


def test_people_look_vietnamese(people: list[demo.DemoPerson]) -> None:
    family = Counter(p.full_name.split()[0] for p in people)
    assert 0.33 < family["Nguyễn"] / len(people) < 0.44
    for name in ("Trần", "Lê", "Phạm", "Phan", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương"):
        assert family[name] > 0, name
    assert family["Huỳnh"] > 0
    assert family["Hoàng"] > 0
    # Southern forms in Hồ Chí Minh City, northern ones in Hà Nội.
    south = [p for p in people if p.area_code.startswith("26")]
    north = [p for p in people if p.area_code.startswith("000")]
    assert not any(p.full_name.startswith(("Hoàng ", "Vũ ")) for p in south)
    assert not any(p.full_name.startswith(("Huỳnh ", "Võ ")) for p in north)
    women = [p for p in people if p.gender is Gender.FEMALE]
    assert 0.45 < len(women) / len(people) < 0.56
    assert sum(" Thị " in p.full_name for p in women) / len(women) > 0.25
    assert not any(" Thị " in p.full_name for p in people if p.gender is Gender.MALE)
    for person in people:
        words = person.full_name.split()
        assert 3 <= len(words) <= 4
        assert len(set(words)) == len(words)
        assert not rules.check_person(
            person.full_name,
            person.birth_date,
            person.gender,
            None,
            person.phone,
            person.address,
            date(2023, 1, 1),
        )


def test_phone_numbers_are_real_mobile_numbers(people: list[demo.DemoPerson]) -> None:
    prefixes = set(read_toml("demo-people.toml")["phone"]["prefixes"])
    phones = [p.phone for p in people if p.phone]
    assert 0.90 < len(phones) / len(people) < 0.97
    for phone in phones:
        assert re.fullmatch(r"0[35789]\d{8}", phone)
        assert phone[:3] in prefixes
    assert len({p[:3] for p in phones}) > 20


def test_doses_are_plausible(world: demo.DemoWorld, people: list[demo.DemoPerson]) -> None:
    counts = Counter(len(p.doses) for p in people)
    assert set(counts) == {1, 2, 3}
    mean = sum(len(p.doses) for p in people) / len(people)
    assert 2.3 < mean < 2.6
    products: Counter[str] = Counter()
    for person in people:
        numbers = [d.dose_number for d in person.doses]
        assert numbers == list(range(1, len(numbers) + 1))
        dates = [d.vaccinated_on for d in person.doses]
        assert dates == sorted(dates)
        assert len(set(dates)) == len(dates)
        for dose in person.doses:
            assert not rules.check_dose(
                dose.dose_number, dose.vaccinated_on, dose.lot, person.birth_date, date(2023, 1, 1)
            ), (person, dose)
            assert dose.product_code in world.product_ids
            assert dose.facility_code in world.facility_ids
            products[dose.product_code] += 1
        first = person.doses[0]
        age = (first.vaccinated_on - person.birth_date).days / 365.25
        if age < 12:
            assert first.vaccinated_on >= date(2022, 4, 14), person
        elif age < 18:
            assert first.vaccinated_on >= date(2021, 10, 27), person
        if len(person.doses) > 1:
            assert person.doses[1].product_code == first.product_code
    # The big three of Vietnam's campaign lead.
    top = {code for code, _ in products.most_common(3)}
    assert top == {"EU/1/20/1528", "EU/1/21/1529", "BBIBP-CorV"}


def test_the_same_seed_gives_the_same_people(world: demo.DemoWorld) -> None:
    first = list(demo.generate_people(world, 300, seed=7))
    again = list(demo.generate_people(world, 300, seed=7))
    other = list(demo.generate_people(world, 300, seed=8))
    assert first == again
    assert first != other
    assert list(demo.generate_people(world, 100, seed=7)) == first[:100]


def test_insert_people_writes_what_was_generated(session: Session, world: demo.DemoWorld) -> None:
    generated = list(demo.generate_people(world, 57, seed=3))
    stats = demo.insert_people(session, world, iter(generated), batch_size=10)
    session.commit()
    assert stats.people == 57
    assert stats.doses == sum(len(p.doses) for p in generated)
    assert sum(stats.problems.values()) == 57
    stored = list(session.scalars(select(Person).order_by(Person.id)))
    assert len(stored) == 57
    codes = {a.id: a.code for a in session.scalars(select(Area))}
    facilities = {f.id: f.code for f in session.scalars(select(Facility))}
    products = {p.id: p.code for p in session.scalars(select(VaccineProduct))}
    for person, expected in zip(stored, generated, strict=True):
        assert person.full_name == expected.full_name
        assert person.name_key == name_key(expected.full_name)
        assert person.birth_date == expected.birth_date
        assert person.gender is expected.gender
        assert person.identity_number == expected.identity_number
        assert person.phone == expected.phone
        assert codes[person.area_id or 0] == expected.area_code
        assert person.verification_status is VerificationStatus.PENDING
        assert person.version == 1
        assert [
            (
                d.dose_number,
                d.vaccinated_on,
                products[d.product_id],
                d.lot,
                facilities[d.facility_id],
            )
            for d in person.doses
        ] == [
            (d.dose_number, d.vaccinated_on, d.product_code, d.lot, d.facility_code)
            for d in expected.doses
        ]
        assert all(d.version == 1 for d in person.doses)


def test_the_demo_organisation_is_created_once(session: Session, world: demo.DemoWorld) -> None:
    units = session.scalar(select(func.count()).select_from(SigningUnit))
    facilities = session.scalar(select(func.count()).select_from(Facility))
    again = demo.ensure_demo_organisation(session)
    session.commit()
    assert not any(account.created for account in again)
    assert session.scalar(select(func.count()).select_from(SigningUnit)) == units
    assert session.scalar(select(func.count()).select_from(Facility)) == facilities
    kinds = set(session.scalars(select(SigningUnit.kind)))
    assert {SigningUnitKind.FACILITY, SigningUnitKind.DISTRICT_HEALTH_CENTRE} <= kinds
    roles = {a.role for a in again}
    assert roles == set(Role)
    ben_nghe = session.scalar(select(Facility).where(Facility.code == "79760-BN"))
    assert ben_nghe is not None
    assert ben_nghe.signing_unit.kind is SigningUnitKind.FACILITY
    station = session.scalar(select(Facility).where(Facility.code == "TYT-26734"))
    assert station is not None
    assert station.name == "Trạm Y tế Phường Tân Định"


@pytest.mark.parametrize("username", ["admin", "nhanvien.bennghe", "kyduyet.quan1"])
def test_demo_accounts_log_in_with_the_documented_password(
    session: Session, world: demo.DemoWorld, username: str
) -> None:
    user = authenticate(session, username, demo.DEMO_PASSWORD, "127.0.0.1")
    assert user.username == username
    officer = session.scalar(select(User).where(User.username == "kyduyet.bennghe"))
    assert officer is not None
    assert officer.signing_unit is not None
    assert officer.signing_unit.code == "SU-79-26740"


def test_registry_dataset(tmp_path: Path, world: demo.DemoWorld) -> None:
    from kyso.platform.registry.reference_server import write_dataset

    generated = list(demo.generate_people(world, 800, seed=5))
    path = tmp_path / "registry.db"
    write_dataset(path, demo.registry_citizens(generated))
    with sqlite3.connect(path) as conn:
        stored = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT identity_number, full_name, birth_date, gender FROM citizens"
            )
        }
    expected = [p for p in generated if p.registry is not None]
    assert len(stored) == len(expected)
    for person in expected:
        entry = person.registry
        assert entry is not None
        assert stored[entry.identity_number] == (
            entry.full_name,
            entry.birth_date.isoformat(),
            entry.gender.value,
        )


def test_the_command(database_url: str, tmp_path: Path, session: Session) -> None:
    from kyso.platform.cli import main

    dataset = tmp_path / "registry.db"
    env = {"DATABASE_URL": database_url, "KYSO_INSTANCE_PATH": str(tmp_path / "instance")}
    result = CliRunner().invoke(
        main,
        ["demo-data", "--people", "300", "--seed", "11", "--registry-dataset", str(dataset)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "300 people" in result.output
    assert demo.DEMO_PASSWORD in result.output
    assert re.search(r"admin\s+administrator\s+created", result.output)
    assert dataset.exists()
    assert session.scalar(select(func.count()).select_from(Person)) == 300
    again = CliRunner().invoke(main, ["demo-data", "--people", "0"], env=env)
    assert again.exit_code == 0, again.output
    assert "already there, unchanged" in again.output
    assert session.scalar(select(func.count()).select_from(Person)) == 300


@pytest.mark.slow
def test_fast_enough_for_a_million(session: Session, world: demo.DemoWorld) -> None:
    """20,000 people with their doses; 100,000 must stay well under a minute (5x this)."""
    started = time.perf_counter()
    stats = demo.insert_people(session, world, demo.generate_people(world, 20_000, seed=9))
    session.commit()
    elapsed = time.perf_counter() - started
    assert stats.people == 20_000
    assert session.scalar(select(func.count()).select_from(Dose)) == stats.doses
    assert elapsed < 10, f"{elapsed:.1f} s for 20,000 people"
