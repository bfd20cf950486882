"""The statistics' summary (``stats_people``) equals a recompute after every writer of doses and
of people's status and area; a writer that forgets it is found; the summary's answers equal the
doses' answers; two transactions refreshing one person do not collide (PostgreSQL)."""

from __future__ import annotations

import ast
import importlib.util
import io
import random
import threading
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session
from support.platform_db import postgresql_only, recorded_statements
from support.platform_seed import ProvinceSeed, Seed, add_person, add_province
from support.records_data import csv_bytes, import_row

from kyso.platform.corrections.service import correct
from kyso.platform.db import make_engine, make_session_factory
from kyso.platform.models import (
    Area,
    AreaLevel,
    Dose,
    Facility,
    FacilityType,
    Gender,
    Person,
    StatsPerson,
    User,
    VerificationStatus,
)
from kyso.platform.records import seed as build
from kyso.platform.records.importer import import_records
from kyso.platform.records.reference_data import load_reference_data
from kyso.platform.records.service import DoseData, PersonData, add_dose, update_dose
from kyso.platform.records.service import update_person as edit_person
from kyso.platform.registry.service import verify_population
from kyso.platform.stats import service, summary
from kyso.platform.stats.service import Group, Scope, StatsFilters, scope_for

ROOT = Path(__file__).resolve().parents[2]
S = VerificationStatus


def assert_no_drift(session: Session, after: str) -> None:
    session.flush()
    found = summary.drift(session)
    assert found.none, f"the summary drifted after {after}: {found}"


class NobodyKnown:
    """A registry that knows nobody: every well-formed number becomes a mismatch."""

    def lookup(self, numbers: Sequence[str]) -> dict[str, Any]:
        return dict.fromkeys(numbers)


def test_every_writer_keeps_the_summary(session: Session, org: Seed) -> None:
    load_reference_data(session)
    hanoi = add_province(session)
    session.commit()
    assert_no_drift(session, "the seed of the organisation")

    # seed.person (ORM) and seed.people (bulk, Core)
    one = add_person(session, org, "Trần Văn Một", status=S.MISMATCH)
    assert_no_drift(session, "seed.person")
    inserted = build.people(
        session,
        [
            build.NewPerson(
                full_name=f"Lê Thị Số {i}",
                birth_date=date(1980, 1, 1 + i),
                gender=Gender.FEMALE,
                identity_number=None,
                phone=None,
                area_id=org.ben_thanh.id,
                status=S.NO_IDENTITY,
                doses=build.doses_every(
                    date(2021, 7, 1),
                    2,
                    product_id=org.pfizer.id,
                    facility_id=(hanoi.station if i % 2 else org.station_ben_thanh).id,
                ),
            )
            for i in range(5)
        ],
    )
    assert len(inserted.ids) == 5
    assert_no_drift(session, "seed.people")
    session.commit()

    # the importer (Core inserts): a new person and a dose for a recorded one
    rows = [
        import_row(identity_number=""),
        import_row(identity_number="", dose_number="2", vaccinated_on="15/10/2021"),
    ]
    report = import_records(
        session,
        io.BytesIO(csv_bytes(rows)),
        "tiem.csv",
        org.station_ben_nghe,
        org.staff,
        today=date(2022, 6, 1),
    )
    assert report.doses_created == 2
    assert_no_drift(session, "an import")
    session.commit()

    # records service: a dose recorded, then moved to another province's facility and date
    dose = add_dose(
        session,
        one,
        DoseData(3, date(2022, 9, 1), org.pfizer.id, "LOT3", org.station_ben_thanh.id),
        org.admin,
    )
    assert_no_drift(session, "recording a dose")
    update_dose(
        session,
        dose,
        DoseData(3, date(2022, 10, 3), org.pfizer.id, "LOT3", hanoi.station.id),
        org.admin,
    )
    assert_no_drift(session, "editing a dose")
    # a person's area edited (the records service)
    data = PersonData(
        one.full_name,
        one.birth_date,
        one.gender,
        one.identity_number,
        one.phone,
        one.address,
        hanoi.commune.id,
    )
    edit_person(session, one, data, org.admin)
    assert_no_drift(session, "editing a person's area")
    # a dose deleted (ORM)
    session.delete(dose)
    assert_no_drift(session, "deleting a dose")
    session.commit()

    # a correction: identity number changed -> pending (corrections service)
    two = add_person(session, org, "Phạm Văn Hai", status=S.WRONG_FORMAT)
    session.commit()
    correct(
        session,
        two,
        PersonData(
            two.full_name,
            two.birth_date,
            two.gender,
            "079090123457",
            two.phone,
            two.address,
            two.area_id,
        ),
        org.admin,
        reason="Sửa số định danh",
    )
    assert_no_drift(session, "a correction")
    session.commit()
    assert session.get(Person, two.id).verification_status is S.PENDING  # type: ignore[union-attr]

    # the verification job changes statuses (it commits per batch)
    verify_population(session, NobodyKnown(), now=None)  # type: ignore[arg-type]
    session.expire_all()
    assert session.get(Person, two.id).verification_status is S.MISMATCH  # type: ignore[union-attr]
    assert_no_drift(session, "the verification job")

    # and the whole summary recomputed equals itself
    summary.rebuild(session)
    assert_no_drift(session, "a rebuild")


def test_drift_is_found_and_the_check_names_no_person(session: Session, org: Seed) -> None:
    add_person(session, org, "Trần Văn Một", status=S.MISMATCH)
    session.commit()
    session.execute(delete(StatsPerson))
    found = summary.drift(session)
    assert (found.missing, found.extra, found.people) == (1, 0, 1)
    session.execute(text("UPDATE people SET verification_status = 'verified'"))  # behind its back
    summary.rebuild(session)
    assert summary.drift(session).none


# -- writers are found -------------------------------------------------------------------------

WRITTEN = {"verification_status", "area_id"}
CORE_WRITERS = {"insert_doses", "insert_with_ids", "insert_rows", "insert_people"}


def _writes_the_truth(tree: ast.AST) -> list[str]:
    """What in a module writes doses or people's status/area: ORM assignments to
    ``x.verification_status``/``x.area_id`` (on anything but a plain data class), new ``Dose(``
    objects, Core insert/update/delete of Dose or Person, or the bulk helpers."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in WRITTEN:
                    found.append(f"assigns .{target.attr}")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else None
            name = name or (node.func.id if isinstance(node.func, ast.Name) else None)
            if name == "Dose" or name == "Person":
                found.append(f"creates {name}")
            if name in {"insert", "update", "delete"} and any(
                isinstance(a, ast.Name) and a.id in {"Dose", "Person"} for a in node.args
            ):
                found.append(f"{name}({ast.unparse(node.args[0])})")
            # The bulk helpers, called as ``bulk.x`` or imported by name (``demo.insert_people``
            # and ``seed.people`` refresh themselves).
            bulk_call = (
                isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "bulk"
            ) or isinstance(node.func, ast.Name)
            if name in CORE_WRITERS and bulk_call:
                found.append(f"calls {name}")
    return found


def _keeps_the_summary(tree: ast.AST) -> bool:
    """The module imports the summary (its flush listener) and, when it writes with Core,
    calls ``summary.refresh`` or ``summary.rebuild``."""
    return any(
        isinstance(n, ast.ImportFrom)
        and n.module == "kyso.platform.stats"
        and any(a.name == "summary" for a in n.names)
        for n in ast.walk(tree)
    )


def _calls_refresh(tree: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in {"refresh", "rebuild"}
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "summary"
        for n in ast.walk(tree)
    )


# Modules that hold such code but write nothing the summary reads: the bulk helpers themselves
# (their callers refresh), the people's form data class, the importer's parsed rows, the test-
# and demo-free read models, and the statistics' own summary.
NOT_WRITERS = {
    "platform/records/bulk.py",  # the helpers; their callers refresh
    "platform/records/importer/rows.py",  # row.area_id: a parsed file row, not a person
    "platform/corrections/views.py",  # PersonData(area_id=…): a form, the service writes
    "platform/stats/summary.py",
}


def writers(root: Path = ROOT) -> dict[str, list[str]]:
    result = {}
    for path in sorted((root / "platform").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if "/migrations/" in relative or relative.startswith("platform/models/"):
            continue
        if relative in NOT_WRITERS:
            continue
        found = _writes_the_truth(ast.parse(path.read_text(encoding="utf-8")))
        if found:
            result[relative] = found
    return result


def test_every_writer_of_doses_and_people_keeps_the_summary() -> None:
    found = writers()
    assert "platform/records/service.py" in found  # the finder finds the known writers
    assert "platform/records/importer/writing.py" in found
    assert "platform/registry/service.py" in found
    assert "platform/corrections/service.py" in found
    forgetful = {}
    for relative, what in found.items():
        tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
        core = any(w.startswith(("calls ", "insert(", "update(", "delete(")) for w in what)
        if not _keeps_the_summary(tree) or (core and not _calls_refresh(tree)):
            forgetful[relative] = what
    assert forgetful == {}, "these modules write doses or people without the summary"


def test_the_finder_finds_a_forgetful_writer(tmp_path: Path) -> None:
    (tmp_path / "platform" / "records").mkdir(parents=True)
    (tmp_path / "platform" / "records" / "new.py").write_text(
        "from kyso.platform.records import bulk\n"
        "def load(session, rows):\n"
        "    bulk.insert_doses(session, rows)\n"
        "def flag(person):\n"
        "    person.verification_status = 'mismatch'\n",
        encoding="utf-8",
    )
    found = writers(tmp_path)
    assert sorted(found["platform/records/new.py"]) == [
        "assigns .verification_status",
        "calls insert_doses",
    ]
    tree = ast.parse((tmp_path / "platform/records/new.py").read_text(encoding="utf-8"))
    assert not _keeps_the_summary(tree)


# -- the summary's answers are the doses' answers ----------------------------------------------


def _answers(session: Session, user: Any, filters: StatsFilters) -> tuple[Any, ...]:
    scope = scope_for(session, user)
    pages = []
    after = None
    while True:
        one = service.page(session, scope, filters, after=after, size=3)
        pages.append([(p.id, p.phone, p.address, p.area, p.status, p.doses) for p in one.people])
        if one.next_after is None:
            break
        after = one.next_after
    return (
        service.counts(session, scope, filters),
        service.by_area(session, scope, filters),
        service.by_latest_dose_month(session, scope, filters),
        pages,
        list(service.export_rows(session, scope, filters)),
    )


def _other_scopes(
    session: Session, org: Seed, hanoi: ProvinceSeed
) -> Iterator[tuple[User, StatsFilters, Scope, tuple[VerificationStatus, ...], int | None]]:
    """The scopes the charts are checked in besides a province's administrator: (user, filters,
    scope, the statuses wanted, the facility the doses must be at or None)."""
    for user, facility_id in (
        (org.admin, None),
        (org.admin, org.mobile_team.id),
        (org.staff, None),
        (hanoi.staff, None),
    ):
        for group in (None, Group.MISMATCH):
            filters = StatsFilters(group=group, facility_id=facility_id)
            scope = scope_for(session, user)
            wanted = service.GROUP_STATUSES[group] if group else service.INVALID_STATUSES
            at = facility_id or (user.facility_id if not scope.national else None)
            yield user, filters, scope, wanted, at


def test_the_summary_answers_as_the_doses_do(
    session: Session, org: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(16)
    hanoi = add_province(session)
    facilities: list[Facility] = [
        org.station_ben_nghe,
        org.station_ben_thanh,
        org.mobile_team,
        hanoi.station,
    ]
    areas = [org.ben_nghe.id, org.ben_thanh.id, org.district.id, hanoi.commune.id, None]
    statuses = list(S)
    for i in range(60):
        person = build.person(
            session,
            build.NewPerson(
                full_name=f"Người Thứ {i}",
                birth_date=date(1970, 1, 1) + timedelta(days=rng.randrange(15000)),
                gender=rng.choice(list(Gender)),
                identity_number=None,
                phone=f"09{i:08d}",
                area_id=rng.choice(areas),
                status=rng.choice(statuses),
                doses=(),
            ),
        )
        day = date(2021, 3, 1) + timedelta(days=rng.randrange(300))
        for number in range(1, rng.randrange(0, 4) + 1):
            session.add(
                Dose(
                    person_id=person.id,
                    product_id=org.pfizer.id,
                    lot=f"L{number}",
                    vaccinated_on=day,
                    dose_number=number,
                    facility_id=rng.choice(facilities).id,
                    created_by_facility_id=org.station_ben_nghe.id,
                )
            )
            day += timedelta(days=rng.randrange(20, 200))
    session.commit()
    assert_no_drift(session, "generated people")
    for user in (hanoi.admin, org.admin):
        if user.province_id is None:
            user.province_id = org.province.id  # the HCMC administrator of the same data
            session.commit()
        for filters in (
            StatsFilters(),
            StatsFilters(group=Group.MISMATCH),
            StatsFilters(area_id=org.district.id),
            StatsFilters(area_id=hanoi.commune.id, group=Group.NO_IDENTITY),
        ):
            new = _answers(session, user, filters)
            with monkeypatch.context() as patched:
                patched.setattr(service, "_province", lambda scope, filters: None)
                old = _answers(session, user, filters)
            assert new == old, (user.province_id, filters)
            assert sum(new[0].values()) > 0 or filters.area_id is not None
    # The per-month chart of the other scopes (read from the summary's "first" rows) against
    # a count made here from the doses themselves.
    org.admin.province_id = None
    session.commit()
    people = session.scalars(select(Person)).all()
    for _user, filters, scope, wanted_statuses, at in _other_scopes(session, org, hanoi):
        expected: dict[tuple[int, int], int] = {}
        for person in people:
            if person.verification_status not in wanted_statuses or not person.doses:
                continue
            if at is not None and all(d.facility_id != at for d in person.doses):
                continue
            last = max(d.vaccinated_on for d in person.doses)
            expected[(last.year, last.month)] = expected.get((last.year, last.month), 0) + 1
        charted = service.by_latest_dose_month(session, scope, filters)
        assert {(m.year, m.month): m.people for m in charted} == expected
        assert [(m.year, m.month) for m in charted] == sorted(expected)
    # The chart per area of the other scopes (read from the people) against a count made here:
    # everyone of the groups, with or without a dose (as the counts), the area blank when another
    # unit keeps the person (the first dose is outside the staff's signing unit).
    names = {area.id: area.name for area in session.scalars(select(Area))}
    for user, filters, scope, wanted_statuses, at in _other_scopes(session, org, hanoi):
        unit = (
            session.get_one(Facility, user.facility_id).signing_unit_id
            if user.facility_id
            else None
        )
        per_area: dict[int, int] = {}
        unknown = 0
        for person in people:
            if person.verification_status not in wanted_statuses:
                continue
            if at is not None and all(d.facility_id != at for d in person.doses):
                continue
            first = min(person.doses, key=lambda d: d.id) if person.doses else None
            hidden = unit is not None and (
                first is None
                or session.get_one(Facility, first.facility_id).signing_unit_id != unit
            )
            if person.area_id is None or hidden:
                unknown += 1
            else:
                per_area[person.area_id] = per_area.get(person.area_id, 0) + 1
        ranked = sorted(per_area.items(), key=lambda item: (-item[1], names[item[0]]))
        wanted = [(names[area_id], n) for area_id, n in ranked[: service.AREAS_CHARTED]]
        wanted += [(None, unknown)] if unknown else []
        charted_areas = service.by_area(session, scope, filters)
        assert [(a.name, a.people) for a in charted_areas] == wanted, (user.id, filters)
        assert sum(n for _, n in wanted) > 0


@postgresql_only  # PostgreSQL's plan
def test_the_national_chart_per_area_reads_the_people_index_only(
    session: Session, org: Seed
) -> None:
    """A national administrator's chart per area groups every invalid person by area: from
    ``ix_people_status_area`` alone, without visiting the people's rows (1.3 s at 10 million
    people when it did)."""
    assert org.admin.province_id is None
    with recorded_statements(session.get_bind()) as seen:
        service.by_area(session, scope_for(session, org.admin), StatsFilters())
    statement, parameters = next((s, p) for s, p, _ in seen if "GROUP BY" in s)
    connection = session.connection()
    # A few test rows: the planner would read the table whatever the indexes; without scans of
    # the table it must name the index that answers alone, if there is one.
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    plan = "\n".join(
        row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
    )
    assert "Index Only Scan using ix_people_status_area on people" in plan, plan


# -- concurrency (PostgreSQL) -------------------------------------------------------------------


@postgresql_only  # SQLite serialises writers with its database lock
def test_two_transactions_refreshing_one_person_do_not_collide(
    session: Session, org: Seed, database_url: str
) -> None:
    person = add_person(session, org, "Đồng Thời", doses=0, status=S.MISMATCH)
    session.commit()
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    first_refreshed = threading.Event()
    errors: list[BaseException] = []

    def write(number: int, facility_id: int, wait: threading.Event | None) -> None:
        try:
            with factory() as other:
                other.execute(
                    Dose.__table__.insert().values(
                        person_id=person.id,
                        product_id=org.pfizer.id,
                        lot="L",
                        vaccinated_on=date(2022, 1, number),
                        dose_number=number,
                        facility_id=facility_id,
                        created_by_facility_id=facility_id,
                        version=1,
                        created_at=date(2022, 1, 1),
                        updated_at=date(2022, 1, 1),
                    )
                )
                summary.refresh(other, [person.id])
                if wait is None:
                    first_refreshed.set()
                    threading.Event().wait(0.5)  # the second is blocked meanwhile
                other.commit()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    first = threading.Thread(target=write, args=(1, org.station_ben_nghe.id, None))
    first.start()
    assert first_refreshed.wait(10)
    second = threading.Thread(target=write, args=(2, org.station_ben_nghe.id, first_refreshed))
    second.start()
    first.join(20)
    second.join(20)
    engine.dispose()
    assert errors == []
    session.expire_all()
    assert summary.drift(session).none
    rows = session.scalars(select(StatsPerson).where(StatsPerson.person_id == person.id)).all()
    assert [(r.province_id, r.latest_dose_on) for r in rows] == [
        (org.province.id, date(2022, 1, 2))
    ]


# -- the commands ------------------------------------------------------------------------------


def test_the_check_and_rebuild_commands(
    database_url: str, tmp_path: Path, session: Session, org: Seed
) -> None:
    from click.testing import CliRunner

    from kyso.platform.cli import main

    env = {"DATABASE_URL": database_url, "KYSO_INSTANCE_PATH": str(tmp_path / "instance")}
    person = add_person(session, org, "Trần Văn Một", status=S.MISMATCH, phone="0909123456")
    session.commit()
    result = CliRunner().invoke(main, ["stats", "check"], env=env)
    assert result.exit_code == 0, result.output
    assert "no drift" in result.output

    session.execute(delete(StatsPerson))  # a restore that bypassed the platform, say
    session.commit()
    result = CliRunner().invoke(main, ["stats", "check"], env=env)
    assert result.exit_code == 1
    assert "1 people" in result.output
    assert f"province {org.province.code}: 1 rows" in result.output
    assert person.full_name not in result.output
    assert "0909123456" not in result.output

    result = CliRunner().invoke(main, ["stats", "rebuild"], env=env)
    assert result.exit_code == 0, result.output
    assert "stats summary rebuilt: 1 rows" in result.output
    session.expire_all()
    assert summary.drift(session).none

    session.execute(delete(StatsPerson))
    session.commit()
    result = CliRunner().invoke(main, ["stats", "check", "--repair"], env=env)
    assert result.exit_code == 1
    assert "repaired" in result.output
    assert CliRunner().invoke(main, ["stats", "check"], env=env).exit_code == 0


@postgresql_only  # SQLite serialises writers with its database lock
def test_a_person_edited_while_another_transaction_adds_a_dose(
    session: Session, org: Seed, database_url: str
) -> None:
    """One transaction changes a person's area (a row lock on the person) while another adds a
    dose for them (the foreign key's share lock on the person): both refresh the person, and
    neither may deadlock the other — refresh locks with FOR NO KEY UPDATE, which the foreign
    key's KEY SHARE does not conflict with."""
    person = add_person(session, org, "Hai Phía", doses=1, status=S.MISMATCH)
    session.commit()
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    edited = threading.Event()
    dose_added = threading.Event()
    errors: list[BaseException] = []

    def edit() -> None:
        try:
            with factory() as other:
                other.execute(
                    Person.__table__.update()
                    .where(Person.__table__.c.id == person.id)
                    .values(area_id=org.ben_thanh.id)
                )
                edited.set()
                dose_added.wait(10)
                summary.refresh(other, [person.id])
                threading.Event().wait(0.3)
                other.commit()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    def add() -> None:
        try:
            with factory() as other:
                edited.wait(10)
                other.execute(
                    Dose.__table__.insert().values(
                        person_id=person.id,
                        product_id=org.pfizer.id,
                        lot="L",
                        vaccinated_on=date(2022, 12, 1),
                        dose_number=5,
                        facility_id=org.station_ben_thanh.id,
                        created_by_facility_id=org.station_ben_thanh.id,
                        version=1,
                        created_at=date(2022, 1, 1),
                        updated_at=date(2022, 1, 1),
                    )
                )
                dose_added.set()
                threading.Event().wait(0.3)  # the editor refreshes meanwhile
                summary.refresh(other, [person.id])
                other.commit()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=edit), threading.Thread(target=add)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    engine.dispose()
    assert errors == []
    session.expire_all()
    assert summary.drift(session).none


def test_the_migrations_backfill_is_the_rebuild(session: Session, org: Seed) -> None:
    """The migration's written-out statement fills the same rows as ``rebuild``: people in two
    provinces, and doses at a facility whose area lies in no province (province 0)."""
    hanoi = add_province(session)
    nowhere = build.area(session, "99999", "Nơi không thuộc tỉnh nào", AreaLevel.DISTRICT)
    outside = build.facility(
        session,
        "99999-X",
        "Đội tiêm ngoài tỉnh",
        FacilityType.MOBILE_TEAM,
        nowhere,
        org.unit_district,
    )
    for name, facilities in (
        ("Ngoài Trước", (outside, org.station_ben_nghe)),
        ("Hai Tỉnh", (hanoi.station, org.station_ben_thanh)),
        ("Chỉ Ngoài", (outside,)),
    ):
        person = add_person(session, org, name, doses=0, status=S.MISMATCH)
        for number, facility in enumerate(facilities, start=1):
            session.add(
                Dose(
                    person_id=person.id,
                    product_id=org.pfizer.id,
                    lot="L",
                    vaccinated_on=date(2022, number, 1),
                    dose_number=number,
                    facility_id=facility.id,
                    created_by_facility_id=facility.id,
                )
            )
    session.commit()
    assert summary.drift(session).none
    rows = lambda: set(session.execute(select(*StatsPerson.__table__.c)).tuples())  # noqa: E731
    built = rows()
    assert {r[0] for r in built} == {0, org.province.id, hanoi.province.id}
    path = ROOT / "platform/migrations/versions/0013_stats_people.py"
    spec = importlib.util.spec_from_file_location("migration_0013", path)
    assert spec is not None
    assert spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    session.execute(delete(StatsPerson))
    session.execute(text(migration.BACKFILL))
    assert rows() == built
