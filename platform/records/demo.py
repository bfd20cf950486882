"""Demo data: a demo organisation, demo accounts, and realistic Vietnamese people with doses.

People are generated as a stream (``generate_people``) and written in batches with bulk inserts
(``insert_people``), so a million people never sit in memory and 100,000 take seconds. The same
``seed`` always gives the same people, whatever the batch size.

Identity numbers follow the person (province of birth registration, century/gender digit, year
of birth), with the problems real data has, in these shares: ~5% missing, ~3% old 9-digit CMND,
~4% malformed (wrong length, unknown province code, century or year that contradicts the birth
date), ~3% that the population registry contradicts (a different birth date, name or gender, or
no such number). ``registry_citizens`` gives what the reference registry should hold for them.

The demo organisation (``platform/data/demo-org.toml``) and its accounts are created when
missing and never changed afterwards; every demo account has the password ``DEMO_PASSWORD``.
Everything is written through ``records.seed``, as the tests and the benchmarks write theirs.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.auth.service import audit, hash_password
from kyso.platform.models import (
    Area,
    AreaLevel,
    Facility,
    FacilityType,
    Gender,
    Role,
    SigningUnit,
    SigningUnitKind,
    User,
    VaccineProduct,
)
from kyso.platform.records import seed as build
from kyso.platform.records.reference_data import areas, products, read_toml
from kyso.platform.registry.identity import PROVINCES, century_gender_digit

if TYPE_CHECKING:
    from kyso.platform.registry.reference_server import Citizen

DEMO_PASSWORD = "kyso-demo-2022"
REFERENCE_DAY = date(2022, 1, 1)  # ages in the data file are ages on this day


class IdentityProblem(enum.StrEnum):
    """What is wrong with a demo person's identity number, if anything."""

    NONE = "none"
    MISSING = "missing"
    OLD_ID = "old_id"  # a 9-digit CMND
    MALFORMED = "malformed"
    REGISTRY_MISMATCH = "registry_mismatch"


# Shares of people with each problem (the rest have a correct, registered number).
PROBLEM_SHARES: dict[IdentityProblem, float] = {
    IdentityProblem.MISSING: 0.05,
    IdentityProblem.OLD_ID: 0.03,
    IdentityProblem.MALFORMED: 0.04,
    IdentityProblem.REGISTRY_MISMATCH: 0.03,
}


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """What the population registry holds under a number (it may contradict the record)."""

    identity_number: str
    full_name: str
    birth_date: date
    gender: Gender


@dataclass(frozen=True, slots=True)
class DemoDose:
    dose_number: int
    vaccinated_on: date
    product_code: str
    lot: str
    facility_code: str


@dataclass(frozen=True, slots=True)
class DemoPerson:
    full_name: str
    birth_date: date
    gender: Gender
    identity_number: str | None
    phone: str | None
    area_code: str
    address: str
    doses: tuple[DemoDose, ...]
    problem: IdentityProblem
    registry: RegistryEntry | None  # None: the registry does not know this number


@dataclass(frozen=True)
class Commune:
    code: str
    district_code: str
    province_code: str


@dataclass(frozen=True)
class DemoWorld:
    """Where demo people live and are vaccinated: codes and database ids."""

    communes_by_province: dict[str, tuple[Commune, ...]]
    facilities_by_district: dict[str, tuple[str, ...]]
    station_by_commune: dict[str, str]
    area_ids: dict[str, int]
    facility_ids: dict[str, int]
    product_ids: dict[str, int]

    @classmethod
    def load(cls, session: Session) -> DemoWorld:
        """The demo provinces' communes and facilities (after ``ensure_demo_organisation``)."""
        shares = read_toml("demo-people.toml")["province_share"]
        by_code = {a.code: a for a in session.scalars(select(Area))}
        by_id = {a.id: a for a in by_code.values()}
        communes: dict[str, list[Commune]] = {code: [] for code in shares}
        for area in sorted(by_code.values(), key=lambda a: a.code):
            if area.level is not AreaLevel.COMMUNE or area.parent_id is None:
                continue
            province = by_id[area.province_id].code if area.province_id else None
            if province in communes:
                communes[province].append(Commune(area.code, by_id[area.parent_id].code, province))
        facilities: dict[str, list[str]] = {}
        stations: dict[str, str] = {}
        facility_ids: dict[str, int] = {}
        for facility in session.scalars(select(Facility).order_by(Facility.code)):
            area = by_id[facility.area_id]
            if area.parent_id is None or by_id[area.parent_id].level is not AreaLevel.DISTRICT:
                continue
            facilities.setdefault(by_id[area.parent_id].code, []).append(facility.code)
            facility_ids[facility.code] = facility.id
            if facility.type is FacilityType.COMMUNE_STATION:
                stations.setdefault(area.code, facility.code)
        missing = [p for p, found in communes.items() if not found]
        if missing:
            raise ValueError(f"no communes for demo provinces {missing}: load reference data")
        return cls(
            communes_by_province={p: tuple(c) for p, c in communes.items()},
            facilities_by_district={d: tuple(f) for d, f in facilities.items()},
            station_by_commune=stations,
            area_ids={code: area.id for code, area in by_code.items()},
            facility_ids=facility_ids,
            product_ids={p.code: p.id for p in session.scalars(select(VaccineProduct))},
        )


# ---------------------------------------------------------------------------- organisation


@dataclass(frozen=True)
class DemoAccount:
    username: str
    full_name: str
    role: Role
    created: bool
    where: str  # facility, signing unit or province it works for ("" for the whole country)


def ensure_demo_organisation(session: Session) -> list[DemoAccount]:
    """Create what is missing of the demo organisation; nothing existing is changed."""
    spec = read_toml("demo-org.toml")
    area_by_code = {a.code: a for a in session.scalars(select(Area))}
    units = {u.code: u for u in session.scalars(select(SigningUnit))}
    for entry in spec["signing_unit"]:
        if entry["code"] not in units:
            units[entry["code"]] = build.signing_unit(
                session,
                entry["code"],
                entry["name"],
                SigningUnitKind(entry["kind"]),
                area_by_code[entry["province"]],
                batch_mode=bool(entry.get("batch_mode", False)),
                tax_code=entry.get("tax_code"),
            )

    facilities = {f.code: f for f in session.scalars(select(Facility))}
    wanted: list[dict[str, Any]] = list(spec["facility"])
    named_areas = {entry["area"] for entry in wanted if entry["type"] == "commune_station"}
    for group in spec["stations"]:
        district = area_by_code[group["district"]]
        for row in areas():
            if row.parent_code == district.code and row.code not in named_areas:
                wanted.append(
                    {
                        "code": f"TYT-{row.code}",
                        "name": f"Trạm Y tế {row.name}",
                        "type": "commune_station",
                        "area": row.code,
                        "signing_unit": group["signing_unit"],
                    }
                )
    for entry in wanted:
        if entry["code"] not in facilities:
            facilities[entry["code"]] = build.facility(
                session,
                entry["code"],
                entry["name"],
                FacilityType(entry["type"]),
                area_by_code[entry["area"]],
                units[entry["signing_unit"]],
                under_ministry=bool(entry.get("under_ministry", False)),
            )

    accounts: list[DemoAccount] = []
    users = {u.username: u for u in session.scalars(select(User))}
    password_hash: str | None = None
    for entry in spec["user"]:
        facility_code = entry.get("facility")
        unit_code = entry.get("signing_unit")
        province_code = entry.get("province")
        where = unit_code or facility_code or province_code or ""
        user = users.get(entry["username"])
        created = user is None
        if user is None:
            password_hash = password_hash or hash_password(DEMO_PASSWORD)
            user = build.account(
                session,
                entry["username"],
                entry["full_name"],
                Role(entry["role"]),
                password_hash=password_hash,
                facility=facilities[facility_code] if facility_code else None,
                signing_unit=units[unit_code] if unit_code else None,
                province=area_by_code[province_code] if province_code else None,
            )
            audit(session, "user.create", None, target=user.username, via="demo-data")
        accounts.append(DemoAccount(user.username, user.full_name, user.role, created, where))
    return accounts


# ---------------------------------------------------------------------------------- people


class _Weighted:
    """Weighted choice with one random number and a binary search (fast, deterministic)."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cumulative = list(itertools.accumulate(weights))
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


@dataclass(frozen=True)
class _Catalogue:
    family_north: _Weighted
    family_south: _Weighted
    south: frozenset[str]
    middle: dict[Gender, _Weighted]
    second_middle: dict[Gender, _Weighted]
    second_middle_share: float
    given: dict[Gender, tuple[str, ...]]
    phone_prefixes: tuple[str, ...]
    phone_missing_share: float
    provinces: _Weighted
    streets: dict[str, tuple[str, ...]]
    ages: _Weighted
    eligibility: tuple[tuple[date, int], ...]
    dose_counts: _Weighted
    last_first_dose: date
    last_dose: date
    booster_after: int
    primary_adult: _Weighted
    primary_child: _Weighted
    boosters: _Weighted
    interval: dict[str, int]
    lots: dict[str, tuple[str, ...]]
    birth_provinces: tuple[str, ...]  # 3-digit codes of the identity number

    @classmethod
    def load(cls) -> _Catalogue:
        spec = read_toml("demo-people.toml")
        middles = spec["middle"]
        excluded = set(middles["second_excludes"])

        def weighted(shares: dict[str, float]) -> _Weighted:
            return _Weighted(list(shares), list(shares.values()))

        ages = [(tuple(int(x) for x in k.split("-")), w) for k, w in spec["age_share"].items()]
        doses = spec["doses"]
        catalogue = {p.code: p for p in products()}
        primary = [p for p in catalogue.values() if p.demo_share > 0]
        children = [catalogue[c] for c in doses["child_products"]]
        boosters = [catalogue[c] for c in doses["booster_products"]]
        return cls(
            family_north=weighted({**spec["family"], **spec["north"]}),
            family_south=weighted({**spec["family"], **spec["south"]}),
            south=frozenset(spec["region"]["south"]),
            middle={gender: weighted(middles[gender.value]) for gender in Gender},
            second_middle={
                gender: weighted(
                    {k: w for k, w in middles[gender.value].items() if k not in excluded}
                )
                for gender in Gender
            },
            second_middle_share=float(middles["second_share"]),
            given={
                Gender.MALE: tuple(spec["given"]["male"]),
                Gender.FEMALE: tuple(spec["given"]["female"]),
            },
            phone_prefixes=tuple(spec["phone"]["prefixes"]),
            phone_missing_share=float(spec["phone"]["missing_share"]),
            provinces=weighted(spec["province_share"]),
            streets={k: tuple(v) for k, v in spec["streets"].items()},
            ages=_Weighted([a for a, _ in ages], [w for _, w in ages]),
            eligibility=tuple(sorted((e["from"], int(e["min_age"])) for e in spec["eligibility"])),
            dose_counts=_Weighted([1, 2, 3], doses["count_share"]),
            last_first_dose=doses["last_first_dose"],
            last_dose=doses["last_dose"],
            booster_after=int(doses["booster_after_days"]),
            primary_adult=_Weighted([p.code for p in primary], [p.demo_share for p in primary]),
            primary_child=_Weighted([p.code for p in children], [p.demo_share for p in children]),
            boosters=_Weighted([p.code for p in boosters], [p.demo_share for p in boosters]),
            interval={p.code: p.demo_interval_days for p in catalogue.values()},
            lots={p.code: p.demo_lots or ("L",) for p in catalogue.values()},
            birth_provinces=tuple(sorted(PROVINCES)),
        )


# Three-digit codes that are not provinces (gaps in Circular 07/2016's list).
_NOT_PROVINCES = ("003", "005", "007", "009", "013", "016", "018", "021", "099")


class _Generator:
    def __init__(self, world: DemoWorld, seed: int) -> None:
        self.world = world
        self.rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
        self.catalogue = _Catalogue.load()
        # A permutation of the six serial digits: unique numbers for a million people per seed.
        self.serial_offset = random.Random(seed ^ 0x5EED).randrange(1_000_000)  # noqa: S311

    def person(self, index: int) -> DemoPerson:
        rng, cat = self.rng, self.catalogue
        province = cat.provinces.pick(rng)
        commune = rng.choice(self.world.communes_by_province[province])
        gender = Gender.FEMALE if rng.random() < 0.505 else Gender.MALE
        low, high = cat.ages.pick(rng)
        age = rng.randint(low, high)
        birth_date = REFERENCE_DAY - timedelta(days=365 * age + rng.randrange(365) + age // 4)
        full_name = self._name(gender, province)
        phone = None
        if rng.random() >= cat.phone_missing_share:
            phone = rng.choice(cat.phone_prefixes) + f"{rng.randrange(10_000_000):07d}"
        address = self._address(commune)
        doses = self._doses(birth_date, commune)
        problem = self._problem()
        number, registry = self._identity(index, problem, full_name, birth_date, gender, province)
        return DemoPerson(
            full_name=full_name,
            birth_date=birth_date,
            gender=gender,
            identity_number=number,
            phone=phone,
            area_code=commune.code,
            address=address,
            doses=doses,
            problem=problem,
            registry=registry,
        )

    def _name(self, gender: Gender, province: str) -> str:
        rng, cat = self.rng, self.catalogue
        family = (cat.family_south if province in cat.south else cat.family_north).pick(rng)
        parts = [family]
        pools = [cat.middle[gender]]
        if rng.random() < cat.second_middle_share:
            pools.append(cat.second_middle[gender])
        for pool in pools:
            parts.append(self._other_than(parts, pool.pick))
        parts.append(self._other_than(parts, lambda r: r.choice(cat.given[gender])))
        return " ".join(parts)

    def _other_than(self, taken: list[str], draw: Callable[[random.Random], str]) -> str:
        """No word twice in a name ("Hoàng Hoàng Bình"): draw again."""
        while (word := draw(self.rng)) in taken:
            pass
        return word

    def _address(self, commune: Commune) -> str:
        streets = self.catalogue.streets.get(commune.district_code, ())
        if streets:
            return f"Số {self.rng.randint(1, 250)} {self.rng.choice(streets)}"
        return f"Thôn {self.rng.randint(1, 12)}"

    def _problem(self) -> IdentityProblem:
        draw = self.rng.random()
        for problem, share in PROBLEM_SHARES.items():
            if draw < share:
                return problem
            draw -= share
        return IdentityProblem.NONE

    def _identity(
        self,
        index: int,
        problem: IdentityProblem,
        full_name: str,
        birth_date: date,
        gender: Gender,
        province: str,
    ) -> tuple[str | None, RegistryEntry | None]:
        rng, cat = self.rng, self.catalogue
        if problem is IdentityProblem.MISSING:
            return None, None
        if problem is IdentityProblem.OLD_ID:
            return f"{rng.randrange(10_000_000, 400_000_000):09d}", None
        born_in = f"0{province}" if rng.random() < 0.7 else rng.choice(cat.birth_provinces)
        g = century_gender_digit(birth_date.year, gender)
        serial = (index * 7919 + self.serial_offset) % 1_000_000  # 7919 is coprime to 10**6
        number = f"{born_in}{g}{birth_date.year % 100:02d}{serial:06d}"
        if problem is IdentityProblem.MALFORMED:
            return self._malformed(number), None
        truth = RegistryEntry(number, full_name, birth_date, gender)
        if problem is IdentityProblem.NONE:
            return number, truth
        return number, self._contradiction(truth)

    def _malformed(self, number: str) -> str:
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:  # a digit lost or doubled while typing
            cut = rng.randrange(3, 12)
            return number[:cut] + number[cut + 1 :] if rng.random() < 0.5 else number[:11]
        if kind == 1:  # no such province
            return rng.choice(_NOT_PROVINCES) + number[3:]
        if kind == 2:  # the century/gender digit of another century
            g = int(number[3])
            return number[:3] + str((g + 2 * rng.randint(1, 4)) % 10) + number[4:]
        year = (int(number[4:6]) + rng.randint(1, 9)) % 100  # the year of birth mistyped
        return number[:4] + f"{year:02d}" + number[6:]

    def _contradiction(self, truth: RegistryEntry) -> RegistryEntry | None:
        rng, cat = self.rng, self.catalogue
        kind = rng.randrange(4)
        if kind == 0:
            return None  # the registry has no such number
        if kind == 1:  # another birth date: day and month swapped, or a few days off
            born = truth.birth_date
            try:
                other = born.replace(day=born.month, month=born.day)
            except ValueError:
                other = born
            if other == born:
                other = born + timedelta(days=rng.randint(1, 20))
            return RegistryEntry(truth.identity_number, truth.full_name, other, truth.gender)
        if kind == 2:  # the given name differs
            parts = truth.full_name.split()
            choices = [g for g in cat.given[truth.gender] if g != parts[-1]]
            parts[-1] = rng.choice(choices)
            return RegistryEntry(
                truth.identity_number, " ".join(parts), truth.birth_date, truth.gender
            )
        other_gender = Gender.MALE if truth.gender is Gender.FEMALE else Gender.FEMALE
        return RegistryEntry(truth.identity_number, truth.full_name, truth.birth_date, other_gender)

    def _doses(self, birth_date: date, commune: Commune) -> tuple[DemoDose, ...]:
        rng, cat = self.rng, self.catalogue
        # The first day this person could get a first dose: their age group's campaign start.
        start = cat.last_first_dose
        for since, min_age in cat.eligibility:
            candidate = max(since, _years_after(birth_date, min_age))
            if candidate <= cat.last_first_dose:
                start = candidate
                break
        span = (cat.last_first_dose - start).days
        first = start + timedelta(days=int(rng.triangular(0, span, span * 0.15)) if span else 0)
        adult = (first - birth_date).days >= 18 * 365
        product = (cat.primary_adult if adult else cat.primary_child).pick(rng)
        wanted = cat.dose_counts.pick(rng)
        doses = [self._dose(1, first, product, commune)]
        if wanted >= 2:
            second = first + timedelta(days=cat.interval[product] + rng.randrange(22))
            if second <= cat.last_dose:
                doses.append(self._dose(2, second, product, commune))
                if wanted >= 3:
                    third = second + timedelta(days=cat.booster_after + rng.randrange(150))
                    if third <= cat.last_dose:
                        booster = cat.boosters.pick(rng) if adult else product
                        doses.append(self._dose(3, third, booster, commune))
        return tuple(doses)

    def _dose(self, number: int, on: date, product: str, commune: Commune) -> DemoDose:
        rng = self.rng
        station = self.world.station_by_commune.get(commune.code)
        nearby = self.world.facilities_by_district.get(commune.district_code, ())
        if station and (rng.random() < 0.7 or not nearby):
            facility = station
        else:
            facility = rng.choice(nearby) if nearby else next(iter(self.world.facility_ids))
        lot = rng.choice(self.catalogue.lots[product]) + f"{rng.randrange(10_000):04d}"
        return DemoDose(number, on, product, lot, facility)


def _years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return date(day.year + years, 3, 1)


def generate_people(world: DemoWorld, count: int, seed: int = 1) -> Iterator[DemoPerson]:
    """``count`` demo people, one at a time; the same seed gives the same people."""
    generator = _Generator(world, seed)
    for index in range(count):
        yield generator.person(index)


@dataclass
class InsertStats:
    people: int = 0
    doses: int = 0
    problems: Counter[IdentityProblem] = field(default_factory=Counter)


def insert_people(
    session: Session, world: DemoWorld, people: Iterable[DemoPerson], batch_size: int = 5000
) -> InsertStats:
    """Bulk-insert the people and their doses, ``batch_size`` people per round trip.

    Only one batch is held in memory. The caller owns the transaction (and may commit between
    calls to insert a very large population in several transactions).
    """
    stats = InsertStats()

    def rows() -> Iterator[build.NewPerson]:
        for p in people:
            stats.problems[p.problem] += 1
            yield build.NewPerson(
                full_name=p.full_name,
                birth_date=p.birth_date,
                gender=p.gender,
                identity_number=p.identity_number,
                phone=p.phone,
                area_id=world.area_ids[p.area_code],
                address=p.address,
                doses=tuple(
                    build.NewDose(
                        dose_number=d.dose_number,
                        vaccinated_on=d.vaccinated_on,
                        product_id=world.product_ids[d.product_code],
                        lot=d.lot,
                        facility_id=world.facility_ids[d.facility_code],
                    )
                    for d in p.doses
                ),
            )

    inserted = build.people(session, rows(), batch_size)
    stats.people = len(inserted.ids)
    stats.doses = inserted.doses
    return stats


def registry_citizens(people: Iterable[DemoPerson]) -> Iterator[Citizen]:
    """What the reference population registry holds about these people."""
    from kyso.platform.registry.reference_server import Citizen

    for person in people:
        entry = person.registry
        if entry is not None:
            yield Citizen(entry.identity_number, entry.full_name, entry.birth_date, entry.gender)
