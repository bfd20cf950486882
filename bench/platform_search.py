"""The signing page at national scale: search and preview latencies on PostgreSQL and SQLite.

What an officer pays on the signing page, with a million people and ~2.5 million doses in the
database: the search of their signing unit's doses (a month with a family name alone, a common
name prefix such as "Nguyễn Văn", a rare one such as "Lý Thị", or a person's name and phone
prefix; half of them "to sign" only) and "Xem danh sách", the re-validated preview of a full
3,000-dose selection (its first page of people, and a later one), and, for information, the
batch preparation's re-validation that returns all 3,000 dose ids (``validated_selection``).
The calls are the page's own service calls (``parse_filters`` + ``search``, ``preview``),
timed with ``time.perf_counter`` around the call, ORM work included, each in a fresh session
whose officer is loaded first (as ``current_user`` does before the view), after untimed
warm-up calls. Units, months (busy months more often) and names vary from
call to call. The bar, p95 <= 50 ms on PostgreSQL, is for officers of facility-level signing
units; officers of central units (a district health centre signing for a district's ~14
facilities, a CDC, a Department of Health) are measured too, for information.

The data comes from the demo generator (``kyso.platform.records.demo``), written with its
``insert_people``, in a world made large enough for a realistic load per facility: the demo
organisation plus synthetic districts (12 wards each, a ward health station per ward, a
district hospital and a mobile team), one station per ~6,000 residents with some wards up to
four times larger than others, so that a station holds some thousands to ~20,000 doses.
Half the synthetic districts let every facility sign its own records (facility-level signing
units), the other half sign centrally through the district health centre. Then, in bulk:
- verification statuses: every person goes through the identity-number format rules
  (``check_identity``) and, when well-formed, is compared with what the generator says the
  population registry holds, as the verification job would; the statuses are written with one
  UPDATE (records are created pending and verified later, as in reality);
- signatures: each signing unit has signed its verified people's doses up to a date of its
  own (uniform from March 2021 to December 2022), so some units have signed most of their
  doses and others have a large backlog;
- PostgreSQL: VACUUM ANALYZE (what autovacuum does to a table after a bulk load: statistics
  and the visibility map that index-only scans need); SQLite: ANALYZE.

Run:
    .venv/bin/python bench/platform_search.py [--people 1000000] [--backend postgresql|sqlite|both]
        [--queries 200] [--reuse] [--explain]

Benchmarks report figures; they are not tests. PostgreSQL: database ``kyso_bench`` on
127.0.0.1:5432 (dropped and recreated); SQLite: a file in the system's temp directory.
``--reuse`` keeps a database generated earlier with the same parameters. For every kind whose
p95 on PostgreSQL is above the bar (every kind with ``--explain``), the slowest statement of
the slowest call is run again under EXPLAIN (ANALYZE, BUFFERS) and printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import math
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    inspect,
    literal,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kyso.platform.db import make_engine, make_session_factory
from kyso.platform.migrations import upgrade
from kyso.platform.models import (
    Area,
    AreaLevel,
    Dose,
    DoseSignature,
    Facility,
    FacilityType,
    Person,
    Role,
    SigningUnit,
    SigningUnitKind,
    User,
    VerificationStatus,
)
from kyso.platform.models.columns import utcnow
from kyso.platform.records import bulk, demo, seed
from kyso.platform.records.bulk import PEOPLE
from kyso.platform.records.names import name_key
from kyso.platform.records.reference_data import load_reference_data, read_toml
from kyso.platform.registry.identity import check_identity
from kyso.platform.registry.protocol import RegistryCitizen
from kyso.platform.registry.service import compare_with_registry
from kyso.platform.signing import preview, search, selection
from kyso.platform.signing.search import signed_current
from kyso.platform.stats import summary

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
# KYSO_BENCH_DATABASE: another database name, so that two people (or branches) can keep their own.
PG_DATABASE = os.environ.get("KYSO_BENCH_DATABASE", "kyso_bench")
SQLITE_FILE = Path(tempfile.gettempdir()) / "kyso-bench" / "platform_search.db"
# Change when the generated data changes shape: --reuse regenerates. 3: doses carry the search
# columns (migration 0016).
DATA_VERSION = "3"

BAR_MS = 50.0  # p95 on PostgreSQL, for officers of facility-level signing units
FACILITY_SCOPE = "facility unit"  # a signing unit of one facility (kind "facility")
CENTRAL_SCOPE = "central unit"  # district health centre, CDC, DoH: many facilities
PAGE_SIZE = 50  # create_app's default PAGE_SIZE
BATCH = 10_000  # people per insert_people call and per commit
PEOPLE_PER_COMMUNE = 6_000  # the average; ward weights below make some four times larger
COMMUNE_WEIGHTS = (1, 1, 2, 2, 3, 4)
COMMUNES_PER_DISTRICT = 12
PREVIEW_OFFICERS = 12  # officers with a full selection, previews rotate between them
SIGNED_FROM = date(2021, 3, 1)  # signing progress of a unit: uniform between these dates
SIGNED_TO = date(2022, 12, 31)

FAMILY_NAMES = ("Nguyễn", "Trần", "Lê", "Phạm")  # 38 %, 12 %, 9.5 %, 7 % of Vietnamese
COMMON_NAMES = ("Nguyễn Văn", "Nguyễn Thị", "Trần Thị", "Lê Văn", "Phạm Thị", "Nguyễn Thị Thu")
RARE_NAMES = ("Lý Thị", "Quách Văn", "Kiều Thị", "Thái Văn", "Lưu Thị", "Châu Thị", "Tạ Văn")

_META = MetaData()
BENCH_META = Table(
    "bench_meta",
    _META,
    Column("key", String(64), primary_key=True),
    Column("value", String(200)),
)
_PROGRESS = Table(
    "bench_signing_progress",
    _META,
    Column("facility_id", Integer, primary_key=True),
    Column("signed_until", Date),
)


# ------------------------------------------------------------------------------- reporting


def say(message: str) -> None:
    print(message, flush=True)


def progress(message: str, milestone: bool) -> None:
    """A line that rewrites itself on a terminal; only the milestones in a log file."""
    if sys.stdout.isatty():
        sys.stdout.write("\r" + message.ljust(100) + ("\n" if milestone else ""))
        sys.stdout.flush()
    elif milestone:
        say(message)


def thousands(value: float) -> str:
    return f"{value:,.0f}"


@dataclass
class Generation:
    """How the database was made, and how long each step took."""

    people: int = 0
    doses: int = 0
    facilities: int = 0
    signing_units: int = 0
    verified: int = 0
    signatures: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    reused: bool = False

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def as_meta(self) -> dict[str, str]:
        values = {
            "people": self.people,
            "doses": self.doses,
            "facilities": self.facilities,
            "signing_units": self.signing_units,
            "verified": self.verified,
            "signatures": self.signatures,
        }
        meta = {key: str(value) for key, value in values.items()}
        meta.update({f"seconds.{step}": f"{s:.1f}" for step, s in self.seconds.items()})
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> Generation:
        return cls(
            people=int(meta["people"]),
            doses=int(meta["doses"]),
            facilities=int(meta["facilities"]),
            signing_units=int(meta["signing_units"]),
            verified=int(meta["verified"]),
            signatures=int(meta["signatures"]),
            seconds={
                key.removeprefix("seconds."): float(value)
                for key, value in meta.items()
                if key.startswith("seconds.")
            },
            reused=True,
        )

    def describe(self) -> str:
        steps = ", ".join(f"{step} {s:.0f} s" for step, s in self.seconds.items())
        how = "reused a database generated" if self.reused else "generated"
        return (
            f"{how} in {self.total:.0f} s ({steps}): {thousands(self.people)} people "
            f"({self.verified / max(self.people, 1):.0%} verified), {thousands(self.doses)} "
            f"doses ({self.signatures / max(self.doses, 1):.0%} signed), "
            f"{self.facilities} facilities, {self.signing_units} signing units"
        )


# ----------------------------------------------------------------------------- databases


def database_url(backend: str) -> str:
    if backend == "postgresql":
        return f"{PG_SERVER}/{PG_DATABASE}"
    return f"sqlite:///{SQLITE_FILE}"


def recreate(backend: str) -> None:
    if backend == "postgresql":
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            connection.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
        admin.dispose()
        return
    SQLITE_FILE.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{SQLITE_FILE}{suffix}").unlink(missing_ok=True)


def wanted_meta(people: int, seed: int) -> dict[str, str]:
    return {"data_version": DATA_VERSION, "requested_people": str(people), "seed": str(seed)}


def read_meta(backend: str) -> dict[str, str] | None:
    """What an earlier run generated in this database, or None if there is nothing usable."""
    if backend == "sqlite" and not SQLITE_FILE.exists():
        return None
    engine = create_engine(database_url(backend))
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(BENCH_META.name):
                return None
            rows = connection.execute(select(BENCH_META.c.key, BENCH_META.c.value))
            return {key: value for key, value in rows}
    except OperationalError:
        return None  # no such database
    finally:
        engine.dispose()


def write_meta(engine: Engine, meta: dict[str, str]) -> None:
    with engine.begin() as connection:
        BENCH_META.create(connection, checkfirst=True)
        connection.execute(BENCH_META.delete())
        connection.execute(insert(BENCH_META), [{"key": k, "value": v} for k, v in meta.items()])


# ----------------------------------------------------------------------- the organisation


def province_shares() -> dict[str, float]:
    shares = {code: float(s) for code, s in read_toml("demo-people.toml")["province_share"].items()}
    total = sum(shares.values())
    return {code: s / total for code, s in shares.items()}


def synthetic_districts(people: int, real_wards: dict[str, int]) -> dict[str, int]:
    """Synthetic districts per province: enough wards for one per ~PEOPLE_PER_COMMUNE people.

    At least one per province, so that even a small run has facility-level signing units.
    """
    districts = {}
    for code, share in province_shares().items():
        missing = math.ceil(people * share / PEOPLE_PER_COMMUNE) - real_wards.get(code, 0)
        districts[code] = max(1, math.ceil(missing / COMMUNES_PER_DISTRICT))
    return districts


def extend_organisation(session: Session, people: int) -> None:
    """Synthetic districts in every demo province, and an officer for every signing unit.

    Odd districts let each facility sign its own records, even ones sign centrally (a district
    health centre). Officers have no password: nobody logs in as them.
    """
    areas = {a.code: a for a in session.scalars(select(Area))}
    codes = {a.id: a.code for a in areas.values()}
    real_wards: dict[str, int] = defaultdict(int)
    for area in areas.values():
        if area.level is AreaLevel.COMMUNE and area.province_id is not None:
            real_wards[codes[area.province_id]] += 1
    for province_code, count in synthetic_districts(people, real_wards).items():
        for number in range(1, count + 1):
            _synthetic_district(session, areas[province_code], number)
    session.flush()
    has_officer = set(
        session.scalars(select(User.signing_unit_id).where(User.role == Role.SIGNING_OFFICER))
    )
    stations = {
        f.signing_unit_id: f.id
        for f in session.scalars(select(Facility).order_by(Facility.id.desc()))
    }
    for unit in session.scalars(select(SigningUnit).order_by(SigningUnit.code)):
        if unit.id in has_officer:
            continue
        station = stations.get(unit.id) if unit.kind is SigningUnitKind.FACILITY else None
        seed.account(
            session,
            f"bench.{unit.code.lower()}",
            "Cán bộ ký duyệt (benchmark)",
            Role.SIGNING_OFFICER,
            password_hash="!",  # not a hash: this account cannot log in
            signing_unit=unit,
            facility=session.get(Facility, station) if station else None,
        )


def _synthetic_district(session: Session, province: Area, number: int) -> None:
    code = f"{province.code}B{number:02d}"
    district = seed.area(session, code, f"Quận mô phỏng {number}", AreaLevel.DISTRICT, province)
    wards = [
        seed.area(session, f"{code}{ward:02d}", f"Phường {ward}", AreaLevel.COMMUNE, district)
        for ward in range(1, COMMUNES_PER_DISTRICT + 1)
    ]
    centre = None
    if number % 2 == 0:  # signs centrally
        centre = seed.signing_unit(
            session,
            f"SU-{code}",
            f"Trung tâm Y tế Quận mô phỏng {number}",
            SigningUnitKind.DISTRICT_HEALTH_CENTRE,
            province,
            batch_mode=True,
        )
    facilities = [
        (f"TYT-{ward.code}", f"Trạm Y tế {ward.name}, {district.name}", "station", ward)
        for ward in wards
    ]
    facilities.append((f"BV-{code}", f"Bệnh viện {district.name}", "hospital", wards[0]))
    facilities.append((f"LD-{code}", f"Đội tiêm lưu động {district.name}", "mobile", wards[1]))
    kinds = {
        "station": FacilityType.COMMUNE_STATION,
        "hospital": FacilityType.HOSPITAL,
        "mobile": FacilityType.MOBILE_TEAM,
    }
    for facility_code, name, kind, ward in facilities:
        unit = centre or seed.signing_unit(
            session, f"SU-{facility_code}", name, SigningUnitKind.FACILITY, province
        )
        seed.facility(session, facility_code, name, kinds[kind], ward, unit)


def shaped_world(world: demo.DemoWorld, rng: random.Random) -> demo.DemoWorld:
    """The generator's world with wards of uneven sizes (up to four times others).

    The generator picks a ward uniformly within a province; listing a ward several times makes
    it proportionally larger.
    """
    communes = {
        province: tuple(ward for ward in wards for _ in range(rng.choice(COMMUNE_WEIGHTS)))
        for province, wards in world.communes_by_province.items()
    }
    return dataclasses.replace(world, communes_by_province=communes)


# -------------------------------------------------------------------------------- people


def registry_status(
    person: demo.DemoPerson,
) -> tuple[VerificationStatus, dict[str, Any] | None]:
    """The status the verification job would record: format rules, then the registry."""
    check = check_identity(person.identity_number, person.birth_date, person.gender)
    if check.status is not None:
        return check.status, check.detail
    entry = person.registry
    citizen = (
        None
        if entry is None
        else RegistryCitizen(entry.identity_number, entry.full_name, entry.birth_date, entry.gender)
    )
    return compare_with_registry(person, citizen)


# People per part: the generator's identity serials are unique per million people and seed.
PART = 1_000_000


@dataclass
class Part:
    """What one part of the population added, and where its time went (CPU of its process)."""

    people: int = 0
    doses: int = 0
    verified: int = 0
    generating: float = 0.0
    checking: float = 0.0
    inserting: float = 0.0


def part_seed(seed: int, number: int) -> int:
    """Part 0 keeps the run's seed (a run of up to a million people is the same as before)."""
    return seed if number == 0 else seed * 1000 + number


_WORLD: demo.DemoWorld | None = None  # set before the worker processes fork


def load_part(url: str, number: int, count: int) -> Part:
    """Generate part ``number`` (``count`` people, its own seed) and write it, checked (COPY).

    Each person gets the status the verification job would record (format rules, then the
    registry) before being written, so the table is written once: the earlier way (pending,
    then one UPDATE of every row) rewrote the whole table a second time, which at 10 million
    people cost more than the insert. The rows are the ones ``demo.insert_people`` writes plus
    the job's columns, through the same ``bulk`` helpers (ids from the sequence, COPY): parts
    can run in several processes at once.
    """
    world, seed = _WORLD, _SEED
    assert world is not None
    engine = make_engine(url)
    factory = make_session_factory(engine)
    people = demo.generate_people(world, count, part_seed(seed, number))
    part = Part()
    started = time.perf_counter()
    verified_at = datetime.now(UTC)
    with factory() as session:
        while True:
            t0 = time.process_time()
            batch = list(itertools.islice(people, BATCH))
            t1 = time.process_time()
            part.generating += t1 - t0
            if not batch:
                break
            now = utcnow()
            rows = []
            for person in batch:
                status, detail = registry_status(person)
                part.verified += status is VerificationStatus.VERIFIED
                rows.append(
                    {
                        "full_name": person.full_name,
                        "name_key": name_key(person.full_name),
                        "birth_date": person.birth_date,
                        "gender": person.gender,
                        "identity_number": person.identity_number,
                        "phone": person.phone,
                        "area_id": world.area_ids[person.area_code],
                        "address": person.address,
                        "verification_status": status,
                        "verification_detail": detail,
                        "verification_attempts": 1,
                        "verified_at": verified_at,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            t2 = time.process_time()
            part.checking += t2 - t1
            ids = bulk.insert_with_ids(session, PEOPLE, rows)
            doses = [
                {
                    "person_id": person_id,
                    "product_id": world.product_ids[d.product_code],
                    "lot": d.lot,
                    "vaccinated_on": d.vaccinated_on,
                    "dose_number": d.dose_number,
                    "facility_id": world.facility_ids[d.facility_code],
                    "created_by_facility_id": world.facility_ids[d.facility_code],
                    "created_by_user_id": None,
                }
                for person, person_id in zip(batch, ids, strict=True)
                for d in person.doses
            ]
            bulk.insert_doses(session, doses)
            session.commit()
            part.inserting += time.process_time() - t2
            part.people += len(batch)
            part.doses += len(doses)
            if part.people % (10 * BATCH) == 0:
                elapsed = time.perf_counter() - started
                progress(
                    f"  part {number}: {thousands(part.people)}/{thousands(count)} people, "
                    f"{elapsed:.0f} s ({thousands(part.people / elapsed)} people/s)",
                    milestone=True,
                )
    engine.dispose()
    return part


_SEED = 0


def load_people(
    url: str, world: demo.DemoWorld, count: int, seed: int, jobs: int, gen: Generation
) -> None:
    """The population in parts of a million, ``jobs`` parts at a time (processes)."""
    global _WORLD, _SEED
    _WORLD, _SEED = world, seed
    sizes = [min(PART, count - start) for start in range(0, count, PART)]
    started = time.perf_counter()
    if jobs == 1 or len(sizes) == 1:
        parts = [load_part(url, number, size) for number, size in enumerate(sizes)]
    else:
        # fork: the children inherit the world; each opens its own connection.
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            parts = pool.starmap(load_part, [(url, n, size) for n, size in enumerate(sizes)])
    for part in parts:
        gen.people += part.people
        gen.doses += part.doses
        gen.verified += part.verified
    gen.seconds[f"people ({min(jobs, len(sizes))} processes)"] = time.perf_counter() - started
    say(
        f"  {thousands(gen.people)} people, {thousands(gen.doses)} doses; CPU: generator "
        f"{sum(p.generating for p in parts):.0f} s, format rules+registry "
        f"{sum(p.checking for p in parts):.0f} s, rows+COPY {sum(p.inserting for p in parts):.0f} s"
    )


# Tables whose user triggers (the doses' search columns, migration 0016) are off during the
# bulk load, and the migration's own set-based fill of those columns, run after it.
TRIGGERED = ("doses", "dose_signatures")
_SEARCH_COLUMNS = importlib.import_module(
    "kyso.platform.migrations.versions.0016_doses_search_columns"
)
SEARCH_COLUMNS_FILL: str = _SEARCH_COLUMNS.FILL


@contextmanager
def indexes_deferred(engine: Engine, backend: str, gen: Generation) -> Iterator[None]:
    """PostgreSQL: the bulk tables' secondary indexes and constraints built after the load.

    What ``pg_restore`` does: COPY into tables with only their primary keys, then each index
    built once from sorted data, and the foreign keys checked in one join each, instead of
    ~10 index insertions and 4 foreign-key triggers per row. The definitions are read from the
    catalogue, so the indexes recreated are exactly the migrations' own.
    """
    if backend != "postgresql":
        yield
        return
    tables = ("people", "doses", "dose_signatures", "stats_people")
    with engine.begin() as connection:
        constraints = connection.execute(
            text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype "
                "FROM pg_constraint WHERE conrelid::regclass::text = ANY(:tables) "
                "AND contype IN ('f', 'u')"
            ),
            {"tables": list(tables)},
        ).all()
        indexes = connection.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename = ANY(:tables) AND indexname NOT IN "
                "(SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u'))"
            ),
            {"tables": list(tables)},
        ).all()
        # No foreign key refers to these unique constraints (they refer to primary keys,
        # which stay), so the order does not matter.
        for table_name, name, _definition, _kind in constraints:
            connection.exec_driver_sql(f'ALTER TABLE {table_name} DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            connection.exec_driver_sql(f'DROP INDEX "{name}"')
        # The search columns' triggers (migration 0016) would look up people and signatures
        # once per row, with their indexes gone: off for the load, the columns filled after it.
        for table_name in TRIGGERED:
            connection.exec_driver_sql(f"ALTER TABLE {table_name} DISABLE TRIGGER USER")
    yield
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.exec_driver_sql(SEARCH_COLUMNS_FILL)
        for table_name in TRIGGERED:
            connection.exec_driver_sql(f"ALTER TABLE {table_name} ENABLE TRIGGER USER")
    gen.seconds["search columns"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '1GB'")
        for _name, definition in indexes:
            connection.exec_driver_sql(definition)
        for table_name, name, definition, _kind in constraints:
            connection.exec_driver_sql(
                f'ALTER TABLE {table_name} ADD CONSTRAINT "{name}" {definition}'
            )
    gen.seconds["indexes+constraints"] = time.perf_counter() - started


def sign_backlog(factory: sessionmaker[Session], rng: random.Random, gen: Generation) -> None:
    """Each signing unit has signed its verified people's doses up to a date of its own."""
    started = time.perf_counter()
    span = (SIGNED_TO - SIGNED_FROM).days
    with factory() as session:
        units = sorted(set(session.scalars(select(Facility.signing_unit_id))))
        until = {unit: SIGNED_FROM + timedelta(days=rng.randrange(span)) for unit in units}
        _PROGRESS.create(session.connection(), checkfirst=True)
        rows = [
            {"facility_id": facility_id, "signed_until": until[unit_id]}
            for facility_id, unit_id in session.execute(
                select(Facility.id, Facility.signing_unit_id)
            )
        ]
        session.execute(insert(_PROGRESS), rows)
        signed = (
            select(
                Dose.id,
                Dose.version,
                literal(datetime.now(UTC), DateTime(timezone=True)),
            )
            .join(_PROGRESS, _PROGRESS.c.facility_id == Dose.facility_id)
            .join(Person, Person.id == Dose.person_id)
            .where(
                Dose.vaccinated_on < _PROGRESS.c.signed_until,
                Person.verification_status == VerificationStatus.VERIFIED,
            )
        )
        session.execute(
            insert(DoseSignature).from_select(["dose_id", "dose_version", "signed_at"], signed)
        )
        gen.signatures = session.scalar(select(func.count()).select_from(DoseSignature)) or 0
        _PROGRESS.drop(session.connection())
        session.commit()
    gen.seconds["signatures"] = time.perf_counter() - started


def fill_summary(factory: sessionmaker[Session], gen: Generation) -> None:
    """The statistics' summary of everyone, set-based (the bulk load wrote no summary rows)."""
    started = time.perf_counter()
    with factory() as session:
        summary.rebuild(session)
        session.commit()
    gen.seconds["stats summary"] = time.perf_counter() - started


def analyse(engine: Engine, backend: str, gen: Generation) -> None:
    started = time.perf_counter()
    if backend == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    gen.seconds["vacuum/analyze" if backend == "postgresql" else "analyze"] = (
        time.perf_counter() - started
    )


def generate(backend: str, people: int, seed: int, jobs: int = 1) -> Generation:
    say(f"{backend}: generating {thousands(people)} people ({database_url(backend)})")
    gen = Generation()
    started = time.perf_counter()
    recreate(backend)
    url = database_url(backend)
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    rng = random.Random(seed)
    with factory() as session:
        load_reference_data(session)
        demo.ensure_demo_organisation(session)
        extend_organisation(session, people)
        session.commit()
        world = shaped_world(demo.DemoWorld.load(session), rng)
        gen.facilities = session.scalar(select(func.count()).select_from(Facility)) or 0
        gen.signing_units = session.scalar(select(func.count()).select_from(SigningUnit)) or 0
    gen.seconds["schema+organisation"] = time.perf_counter() - started
    with indexes_deferred(engine, backend, gen):
        load_people(url, world, people, seed, jobs if backend == "postgresql" else 1, gen)
        sign_backlog(factory, rng, gen)
        fill_summary(factory, gen)
    analyse(engine, backend, gen)
    write_meta(engine, {**wanted_meta(people, seed), **gen.as_meta()})
    engine.dispose()
    return gen


def prepare(backend: str, people: int, seed: int, reuse: bool, jobs: int = 1) -> Generation:
    if reuse:
        meta = read_meta(backend)
        wanted = wanted_meta(people, seed)
        if meta is not None and all(meta.get(k) == v for k, v in wanted.items()):
            # Migrations added since the generation apply to the kept data, as on a server.
            started = time.perf_counter()
            upgrade(database_url(backend))
            say(f"{backend}: migrations applied in {time.perf_counter() - started:.0f} s")
            # What autovacuum would do to tables a migration filled (the stats summary): the
            # visibility map its index-only scans need.
            engine = make_engine(database_url(backend))
            analyse(engine, backend, Generation())
            engine.dispose()
            return Generation.from_meta(meta)
        say(f"{backend}: no database generated with {wanted} to reuse")
    return generate(backend, people, seed, jobs)


# ------------------------------------------------------------------------------ officers


@dataclass(frozen=True)
class Officer:
    user_id: int
    unit: str
    central: bool  # signs for several facilities (district health centre, CDC, DoH, …)
    facility_ids: tuple[int, ...]
    doses: int
    months: tuple[tuple[date, int], ...]  # (first day of month, doses), for picking months


def officers(session: Session) -> list[Officer]:
    """One officer per signing unit with doses (the first by id when there are several)."""
    per_facility_month: dict[int, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for facility_id, day, count in session.execute(
        select(Dose.facility_id, Dose.vaccinated_on, func.count()).group_by(
            Dose.facility_id, Dose.vaccinated_on
        )
    ):
        per_facility_month[facility_id][day.replace(day=1)] += count
    facilities: dict[int, list[int]] = defaultdict(list)
    for facility_id, unit_id in session.execute(select(Facility.id, Facility.signing_unit_id)):
        facilities[unit_id].append(facility_id)
    found: dict[int, Officer] = {}
    rows = session.execute(
        select(User.id, SigningUnit.id, SigningUnit.code, SigningUnit.kind)
        .join(SigningUnit, SigningUnit.id == User.signing_unit_id)
        .where(User.role == Role.SIGNING_OFFICER, User.active.is_(True))
        .order_by(User.id)
    )
    for user_id, unit_id, code, kind in rows:
        if unit_id in found:
            continue
        months: dict[date, int] = defaultdict(int)
        for facility_id in facilities[unit_id]:
            for month, count in per_facility_month[facility_id].items():
                months[month] += count
        if not months:
            continue
        found[unit_id] = Officer(
            user_id=user_id,
            unit=code,
            central=kind is not SigningUnitKind.FACILITY,
            facility_ids=tuple(sorted(facilities[unit_id])),
            doses=sum(months.values()),
            months=tuple(sorted(months.items())),
        )
    return list(found.values())


def fill_selections(
    factory: sessionmaker[Session], candidates: Sequence[Officer], rng: random.Random
) -> dict[int, int]:
    """A full selection (3,000 doses, at most 1,000 people) for up to PREVIEW_OFFICERS officers.

    Made with the selection service (``clear`` then ``add_doses``, which checks every rule):
    verified people with the most unsigned doses in scope first. Returns officer -> doses.
    Officers whose unit cannot fill a batch are left out; if none can, the largest are kept.
    """
    sized: list[tuple[int, Officer, list[int]]] = []
    with factory() as session:
        for officer in sorted(candidates, key=lambda o: rng.random()):
            by_person: dict[int, list[int]] = defaultdict(list)
            rows = session.execute(
                select(Dose.id, Dose.person_id)
                .join(Person, Person.id == Dose.person_id)
                .where(
                    Dose.facility_id.in_(officer.facility_ids),
                    Person.verification_status == VerificationStatus.VERIFIED,
                    ~signed_current(),
                )
            )
            for dose_id, person_id in rows:
                by_person[person_id].append(dose_id)
            chosen: list[int] = []
            people = sorted(by_person.values(), key=lambda doses: (-len(doses), rng.random()))
            for doses in people[: selection.MAX_PEOPLE]:
                if len(chosen) + len(doses) > selection.MAX_DOSES:
                    continue
                chosen.extend(doses)
            sized.append((len(chosen), officer, chosen))
            full = [s for s in sized if s[0] == selection.MAX_DOSES]
            if len(full) >= PREVIEW_OFFICERS:
                break
    sized.sort(key=lambda s: -s[0])
    full = [s for s in sized if s[0] == selection.MAX_DOSES]
    selected: dict[int, int] = {}
    for size, officer, dose_ids in (full or sized)[:PREVIEW_OFFICERS]:
        with factory() as session:
            user = session.get_one(User, officer.user_id)
            selection.clear(session, user)
            selection.add_doses(session, user, dose_ids)
            session.commit()
        selected[officer.user_id] = size
    # As autovacuum would within a minute on a server (the table went from empty to tens of
    # thousands of rows): without it the planner took a selection of 3,000 doses for 240 and
    # probed the people once per dose instead of once per person (Memoize), and whether it ran
    # during a measurement or not changed the preview's plan halfway through.
    with factory() as session:
        session.execute(text("ANALYZE signing_selections"))
        session.commit()
    return selected


# ------------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Call:
    """One timed page call: a search (query-string arguments) or a preview (args None)."""

    officer: Officer
    args: dict[str, str] | None
    page: int = 1  # of the preview; 0: validated_selection (the batch preparation's call)


@dataclass
class Sample:
    seconds: float  # wall time of the call
    cpu: float  # this process's CPU time during the call (Python, ORM, driver)
    call: Call
    rows: int
    statements: list[tuple[str, Any, float]]  # SQL, parameters, seconds until it returned

    @property
    def sql(self) -> float:
        return sum(seconds for _, _, seconds in self.statements)


@dataclass
class Measured:
    kind: str
    samples: list[Sample]

    def ms(self) -> list[float]:
        return sorted(s.seconds * 1000 for s in self.samples)

    def percentile(self, share: float) -> float:
        """Nearest-rank percentile of the wall times, in ms."""
        values = self.ms()
        return values[min(len(values) - 1, math.ceil(share * len(values)) - 1)]

    def median_of(self, part: Callable[[Sample], float]) -> float:
        return statistics.median(part(s) * 1000 for s in self.samples)

    @property
    def slowest(self) -> Sample:
        return max(self.samples, key=lambda s: s.seconds)


class StatementLog:
    """The SQL statements a call runs, with their time: what EXPLAIN is asked about."""

    def __init__(self, engine: Engine) -> None:
        self.entries: list[tuple[str, Any, float]] = []
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._started = time.perf_counter()

    def _after(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any
    ) -> None:
        self.entries.append((statement, parameters, time.perf_counter() - self._started))

    def take(self) -> list[tuple[str, Any, float]]:
        entries, self.entries = self.entries, []
        return entries


def month_args(officer: Officer, rng: random.Random) -> dict[str, str]:
    """A month of the unit's doses, busy months more often (as officers pick them)."""
    months = [m for m, _ in officer.months]
    weights = [c for _, c in officer.months]
    first = rng.choices(months, weights)[0]
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return {"from": first.strftime("%d/%m/%Y"), "to": last.strftime("%d/%m/%Y")}


def state_args(rng: random.Random) -> dict[str, str]:
    """Half the searches as the page opens (all doses), half "to sign" only."""
    return {"state": "to_sign"} if rng.random() < 0.5 else {}


def phone_people(session: Session, officer: Officer) -> list[tuple[str, str, date]]:
    """Some of the unit's people with a phone: the person an officer looks for."""
    rows = session.execute(
        select(Person.full_name, Person.phone, Dose.vaccinated_on)
        .join(Dose, Dose.person_id == Person.id)
        .where(
            Dose.facility_id.in_(officer.facility_ids),
            Person.phone.is_not(None),
            Dose.id % 41 == 0,
        )
        .limit(200)
    )
    return [(name, phone, day) for name, phone, day in rows if phone]


def plan(
    session: Session,
    units: Sequence[Officer],
    with_selection: dict[int, int],
    count: int,
    rng: random.Random,
) -> dict[str, list[Call]]:
    """The calls of each kind, parameters varied (unit, month, name, phone, state)."""
    calls: dict[str, list[Call]] = {}
    pick = rng.choice
    calls["search: month + family name only"] = [
        Call(o, {**month_args(o, rng), "name": pick(FAMILY_NAMES), **state_args(rng)})
        for o in (pick(units) for _ in range(count))
    ]
    calls["search: month + common name"] = [
        Call(o, {**month_args(o, rng), "name": pick(COMMON_NAMES), **state_args(rng)})
        for o in (pick(units) for _ in range(count))
    ]
    calls["search: month + rare name"] = [
        Call(o, {**month_args(o, rng), "name": pick(RARE_NAMES), **state_args(rng)})
        for o in (pick(units) for _ in range(count))
    ]
    pools: dict[int, list[tuple[str, str, date]]] = {}
    phone_calls: list[Call] = []
    while len(phone_calls) < count:
        officer = pick(units)
        if officer.user_id not in pools:
            pools[officer.user_id] = phone_people(session, officer)
        if not pools[officer.user_id]:
            continue
        name, phone, day = pick(pools[officer.user_id])
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        args = {
            "from": first.strftime("%d/%m/%Y"),
            "to": last.strftime("%d/%m/%Y"),
            "name": " ".join(name.split()[:2]),
            "phone": phone[: pick((4, 6, 8, 10))],
            **state_args(rng),
        }
        phone_calls.append(Call(officer, args))
    calls["search: month + name + phone"] = phone_calls
    previewing = [o for o in units if o.user_id in with_selection]
    if previewing:
        calls["preview: full selection"] = [Call(pick(previewing), None) for _ in range(count)]
        calls["preview: full selection, page 5"] = [
            Call(pick(previewing), None, page=5) for _ in range(count)
        ]
        calls["validated_selection (batch preparation)"] = [
            Call(pick(previewing), None, page=0) for _ in range(count)
        ]
    return calls


def run_call(factory: sessionmaker[Session], log: StatementLog, call: Call) -> Sample:
    with factory() as session:
        officer = session.get_one(User, call.officer.user_id)  # current_user(), before the view
        log.take()
        if call.args is not None:
            cpu, started = time.process_time(), time.perf_counter()
            filters, _problems = search.parse_filters(call.args)
            page = search.search(session, officer, filters, page_size=PAGE_SIZE)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows = len(page.people)
        elif call.page:
            cpu, started = time.process_time(), time.perf_counter()
            result = preview.preview(session, officer, page=call.page)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows = result.dose_count
            if result.dropped:
                raise RuntimeError(f"preview dropped {len(result.dropped)} doses")
            session.rollback()
        else:
            cpu, started = time.process_time(), time.perf_counter()
            doses, dropped = preview.validated_selection(session, officer)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows = len(doses)
            if dropped:
                raise RuntimeError(f"validated_selection dropped {len(dropped)} doses")
            session.rollback()
        return Sample(seconds, cpu, call, rows, log.take())


def measure(
    backend: str, queries: int, warmup: int, seed: int
) -> tuple[list[Measured], dict[str, str]]:
    engine = make_engine(database_url(backend))
    factory = make_session_factory(engine)
    rng = random.Random(seed * 31 + 7)
    with factory() as session:
        everyone = officers(session)
    facility_units = [o for o in everyone if not o.central]
    central_units = [o for o in everyone if o.central]
    notes: dict[str, str] = {}
    results: list[Measured] = []
    log = StatementLog(engine)
    for scope, units in ((FACILITY_SCOPE, facility_units), (CENTRAL_SCOPE, central_units)):
        if not units:
            continue
        started = time.perf_counter()
        with_selection = fill_selections(factory, units, rng)
        sizes = sorted(with_selection.values())
        doses = [o.doses for o in units]
        notes[scope] = (
            f"{len(units)} units, doses per unit median {thousands(statistics.median(doses))} "
            f"(min {thousands(min(doses))}, max {thousands(max(doses))}); "
            f"{len(sizes)} officers with a selection of "
            f"{thousands(sizes[0]) if sizes else 0}-{thousands(sizes[-1]) if sizes else 0} "
            f"doses (set up in {time.perf_counter() - started:.0f} s)"
        )
        with factory() as session:
            calls = plan(session, units, with_selection, warmup + queries, rng)
        for kind, kind_calls in calls.items():
            label = f"{kind} [{scope}]"
            for call in kind_calls[:warmup]:
                run_call(factory, log, call)
            measured = Measured(label, [run_call(factory, log, c) for c in kind_calls[warmup:]])
            results.append(measured)
            say(
                f"  {label}: p50 {measured.percentile(0.5):.1f} ms, "
                f"p95 {measured.percentile(0.95):.1f} ms, max {max(measured.ms()):.1f} ms"
            )
    engine.dispose()
    return results, notes


def explain(backend: str, measured: Measured) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest statement of the slowest call."""
    sample = measured.slowest
    statement, parameters, seconds = max(sample.statements, key=lambda s: s[2])
    engine = make_engine(database_url(backend))
    try:
        with engine.connect() as connection:
            plan_rows = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters
            )
            plan_text = "\n".join(f"    {row[0]}" for row in plan_rows)
            connection.rollback()
    finally:
        engine.dispose()
    return (
        f"  {measured.kind}: slowest call {sample.seconds * 1000:.1f} ms "
        f"({sample.call.args or f'preview page {sample.call.page}'}, "
        f"officer of {sample.call.officer.unit}); "
        f"its {len(sample.statements)} statements took {sample.sql * 1000:.1f} ms, "
        f"the slowest {seconds * 1000:.1f} ms:\n"
        f"    {statement.strip()}\n    parameters: {parameters}\n{plan_text}"
    )


# ---------------------------------------------------------------------------------- main


def table(rows: Sequence[tuple[str, Measured]]) -> str:
    """p50/p95/max wall time per kind; then, as medians, the time in SQL and in Python."""
    header = (
        f"{'backend':<11} {'kind':<52} {'n':>4} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
        f"{'sql p50':>7} {'cpu p50':>7} {'stmts':>5}  result"
    )
    lines = [header, "-" * len(header)]
    for backend, m in rows:
        mean_rows = statistics.fmean(s.rows for s in m.samples)
        noun = "people/page" if m.kind.startswith("search") else "doses"
        statements = statistics.median(len(s.statements) for s in m.samples)
        lines.append(
            f"{backend:<11} {m.kind:<52} {len(m.samples):>4} {m.percentile(0.5):>7.1f} "
            f"{m.percentile(0.95):>7.1f} {max(m.ms()):>7.1f} "
            f"{m.median_of(lambda s: s.sql):>7.1f} {m.median_of(lambda s: s.cpu):>7.1f} "
            f"{statements:>5.0f}  {mean_rows:.0f} {noun}"
        )
    return "\n".join(lines)


def revision() -> str:
    """The code measured: the commit, and the platform files changed since (work in progress)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.rstrip()  # not strip(): a porcelain line starts with a space

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = git("status", "--porcelain", "--", "platform").splitlines()
    files = ", ".join(line[3:] for line in changed)
    return f"commit {commit}" + (f", with uncommitted changes to {files}" if files else "")


def server_settings() -> str:
    engine = create_engine(database_url("postgresql"))
    try:
        with engine.connect() as connection:
            version = connection.exec_driver_sql("SHOW server_version").scalar()
            settings = {
                name: connection.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("shared_buffers", "work_mem", "effective_cache_size", "jit")
            }
    finally:
        engine.dispose()
    return f"PostgreSQL {version}, " + ", ".join(f"{k} {v}" for k, v in settings.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--queries", type=int, default=200, help="timed calls per kind")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per kind first")
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--reuse", action="store_true", help="keep a database generated before")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="PostgreSQL: processes generating parts of a million people at once",
    )
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE every kind (PostgreSQL)"
    )
    args = parser.parse_args(argv)
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]

    rows: list[tuple[str, Measured]] = []
    generations: dict[str, Generation] = {}
    notes: dict[str, dict[str, str]] = {}
    loads: dict[str, str] = {}
    for backend in backends:
        generations[backend] = prepare(backend, args.people, args.seed, args.reuse, args.jobs)
        say(f"{backend}: {generations[backend].describe()}")
        before = os.getloadavg()[0]
        measured, notes[backend] = measure(backend, args.queries, args.warmup, args.seed)
        loads[backend] = f"load average {before:.1f} -> {os.getloadavg()[0]:.1f}"
        rows.extend((backend, m) for m in measured)

    say("")
    say(f"code: {revision()}")
    say(f"{os.cpu_count()} CPUs; the times are wall times, so other load on the machine counts")
    if "postgresql" in generations:
        say(server_settings())
    for backend, gen in generations.items():
        say(f"{backend}: {gen.describe()}")
        say(f"  while measuring: {loads[backend]}")
        for scope, note in notes[backend].items():
            say(f"  {scope}: {note}")
    say("")
    say(table(rows))
    say(
        "p50/p95/max: wall time of the service call. sql p50: time inside cursor.execute "
        "(PostgreSQL: the server's work and the transfer; SQLite returns at the first row, the "
        "rest of its work shows in cpu). cpu p50: this process's CPU time (Python, ORM, driver; "
        "SQLite). stmts: SQL statements per call. Kinds alternate the page's default state "
        '(all doses) and "to sign".'
    )
    over = [m for backend, m in rows if backend == "postgresql" and m.percentile(0.95) > BAR_MS]
    if "postgresql" in generations:
        # The bar is a facility's page: officers of facility-level signing units.
        missed = [m.kind for m in over if m.kind.endswith(f"[{FACILITY_SCOPE}]")]
        verdict = "met" if not missed else "NOT met for " + ", ".join(missed)
        say(f"\nbar: p95 <= {BAR_MS:.0f} ms on PostgreSQL, {FACILITY_SCOPE}: {verdict}")
        beyond = [m.kind for m in over if not m.kind.endswith(f"[{FACILITY_SCOPE}]")]
        if beyond:
            say(f"also above {BAR_MS:.0f} ms: " + ", ".join(beyond))
        to_explain = [m for b, m in rows if b == "postgresql"] if args.explain else over
        for m in to_explain:
            say("")
            say(explain("postgresql", m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
