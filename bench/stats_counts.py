"""The statistics page at scale: what a provincial administrator, a national administrator and
the staff of a busy station wait for, on the database of ``platform_search.py``.

The page's own service calls, in a fresh session each, timed with ``time.perf_counter``
(ORM work included) after untimed warm-up calls: ``counts`` (the people per group: the bar,
issue 16: p95 <= 200 ms for a province), the two charts (``by_area``, ``by_latest_dose_month``)
and the list's first page (``page``). The provincial administrator is the one of the province
with the most doses (in ``platform_search.py``'s world, the province that holds most of the
generated population). The administrators are made on first use (no password: nobody logs in
as them). With ``--explain`` each kind's slowest statement is run again under
EXPLAIN (ANALYZE, BUFFERS).

Run (after ``platform_search.py`` has generated ``kyso_bench``; the size is the one it made):
    .venv/bin/python bench/stats_counts.py [--queries 50] [--warmup 5] [--explain]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from kyso.platform.db import make_engine, make_session_factory
from kyso.platform.models import Area, Dose, Facility, FacilityType, Person, Role, User
from kyso.platform.stats import service

URL = "postgresql+psycopg://postgres@127.0.0.1:5432/" + os.environ.get(
    "KYSO_BENCH_DATABASE", "kyso_bench"
)
BAR_MS = 200.0  # counts for a province, p95

Call = Callable[[Session, service.Scope, service.StatsFilters], Any]
KINDS: dict[str, Call] = {
    "counts": service.counts,
    "chart per area": service.by_area,
    "chart per month": service.by_latest_dose_month,
    "first page": lambda s, scope, f: service.page(s, scope, f, after=None, size=50),
}


def say(message: str) -> None:
    print(message, flush=True)


def administrator(session: Session, username: str, province_id: int | None) -> int:
    found = session.scalar(select(User.id).where(User.username == username))
    if found is not None:
        return found
    user = User(
        username=username,
        full_name="Quản trị (benchmark)",
        password_hash="!",  # not a hash: this account cannot log in
        role=Role.ADMINISTRATOR,
        province_id=province_id,
    )
    session.add(user)
    session.commit()
    return user.id


def actors(session: Session) -> list[tuple[str, int]]:
    """(label, user id): the busiest province's administrator, a national one, busy staff."""
    doses_per_province = (
        select(Area.province_id, func.count())
        .select_from(Dose)
        .join(Facility, Facility.id == Dose.facility_id)
        .join(Area, Area.id == Facility.area_id)
        .group_by(Area.province_id)
        .order_by(func.count().desc())
    )
    province_id, province_doses = session.execute(doses_per_province).first() or (None, 0)
    province = session.get(Area, province_id)
    result = []
    if province is not None:
        label = f"province administrator ({province.name}, {province_doses:,} doses)"
        result.append((label, administrator(session, f"bench.admin.{province.code}", province.id)))
    result.append(("national administrator", administrator(session, "bench.admin.national", None)))
    busiest = session.execute(
        select(Facility.id, func.count())
        .join(Dose, Dose.facility_id == Facility.id)
        .where(Facility.type == FacilityType.COMMUNE_STATION)
        .group_by(Facility.id)
        .order_by(func.count().desc())
        .limit(1)
    ).first()
    if busiest is not None:
        staff = session.scalar(
            select(User.id).where(User.role == Role.FACILITY_STAFF, User.facility_id == busiest[0])
        )
        if staff is None:
            user = User(
                username=f"bench.staff.{busiest[0]}",
                full_name="Nhân viên (benchmark)",
                password_hash="!",
                role=Role.FACILITY_STAFF,
                facility_id=busiest[0],
            )
            session.add(user)
            session.commit()
            staff = user.id
        result.append((f"station staff ({busiest[1]:,} doses)", staff))
    return result


class Statements:
    """The SQL of the last call, to EXPLAIN its slowest statement."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[tuple[str, Any, float]] = []
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.seen.append((statement, parameters, time.perf_counter() - self._started))


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--url", default=URL, help="the database (default platform_search's)")
    args = parser.parse_args(argv)
    engine = make_engine(args.url)
    factory = make_session_factory(engine)
    statements = Statements(engine)
    with factory() as session:
        people = session.scalar(select(func.count()).select_from(Person)) or 0
        doses = session.scalar(select(func.count()).select_from(Dose)) or 0
        who = actors(session)
    load_before = os.getloadavg()[0]
    say(f"kyso_bench: {people:,} people, {doses:,} doses")
    rows = []
    slowest: dict[str, tuple[str, Any, float]] = {}
    for label, user_id in who:
        for kind, call in KINDS.items():
            times = []
            for number in range(args.warmup + args.queries):
                with factory() as session:
                    user = session.get_one(User, user_id)
                    scope = service.scope_for(session, user)
                    filters = service.StatsFilters(None, None, None)
                    statements.seen.clear()
                    started = time.perf_counter()
                    call(session, scope, filters)
                    elapsed = (time.perf_counter() - started) * 1000
                    if number >= args.warmup:
                        times.append(elapsed)
                        top = max(statements.seen, key=lambda s: s[2])
                        name = f"{kind} [{label}]"
                        if name not in slowest or top[2] > slowest[name][2]:
                            slowest[name] = top
            rows.append((f"{kind} [{label}]", times))
            say(
                f"  {kind} [{label}]: p50 {statistics.median(times):.1f} ms, "
                f"p95 {percentile(times, 0.95):.1f} ms"
            )
    say(f"\nload average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs")
    say(f"{'kind':<90} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, times in rows:
        say(
            f"{name:<90} {len(times):>4} {statistics.median(times):>8.1f} "
            f"{percentile(times, 0.95):>8.1f} {max(times):>8.1f}"
        )
    province = [t for n, t in rows if n.startswith("counts [province")]
    if province:
        p95 = percentile(province[0], 0.95)
        verdict = "meets" if p95 <= BAR_MS else "MISS"
        say(f"\n{verdict}  counts for a province p95 {p95:.1f} ms (bar {BAR_MS:.0f} ms)")
    if args.explain:
        with engine.connect() as connection:
            for name, (statement, parameters, _seconds) in slowest.items():
                say(f"\nEXPLAIN {name}")
                plan = connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                )
                for (line,) in plan:
                    say("    " + line)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
