"""Commands: ``stats rebuild`` and ``stats check`` (the statistics' summary, ``stats.summary``).

``stats check`` exits 0 when the summary equals a recompute from the doses and people, 1 when
it drifted (it prints how many rows and people, and the provinces concerned: no personal data);
``--repair`` then recomputes the drifted people's rows. ``stats rebuild`` recomputes every row
in one statement (after a bulk load or a restore that bypassed the platform's writers).
"""

from __future__ import annotations

import sys
import time

import click
from flask import Flask
from sqlalchemy import select

from kyso.platform.formatting import number
from kyso.platform.models import Area
from kyso.platform.stats import summary


@click.group("stats")
def stats() -> None:
    """The statistics' summary of people per province (Thống kê xác minh đối tượng)."""


@stats.command("rebuild")
@click.pass_obj
def rebuild(app: Flask) -> None:
    """Recompute the whole summary from the doses and the people (one transaction)."""
    factory = app.extensions["kyso.sessions"]
    started = time.perf_counter()
    with factory() as session:
        rows = summary.rebuild(session)
        session.commit()
    click.echo(
        f"stats summary rebuilt: {number(rows)} rows in {time.perf_counter() - started:.1f} s"
    )


@stats.command("check")
@click.option("--repair", is_flag=True, help="Recompute the rows of the people that drifted.")
@click.pass_obj
def check(app: Flask, repair: bool) -> None:
    """Compare the summary with the truth; exit 1 when they differ."""
    factory = app.extensions["kyso.sessions"]
    with factory() as session:
        found = summary.drift(session)
        if found.none:
            click.echo("stats summary: no drift")
            return
        codes = dict(
            session.execute(
                select(Area.id, Area.code).where(Area.id.in_([p for p, _ in found.provinces]))
            )
            .tuples()
            .all()
        )
        click.echo(
            f"stats summary drifted: {number(found.missing)} rows missing or different, "
            f"{number(found.extra)} rows extra or different, {number(found.people)} people",
            err=True,
        )
        for province, rows in found.provinces:
            click.echo(f"  province {codes.get(province, province)}: {number(rows)} rows", err=True)
        if repair:
            summary.refresh(session, summary.drifted_people(session))
            session.commit()
            click.echo("repaired: the drifted people's rows recomputed", err=True)
    sys.exit(1)


commands = [stats]
