"""Record commands: reference data, spreadsheet import, and demo data."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select

from kyso.platform.db import transaction
from kyso.platform.i18n import translate
from kyso.platform.models import Facility, User


@click.command("reference-data")
@click.pass_obj
def reference_data(app: Flask) -> None:
    """Load or update the provinces, areas and vaccine products shipped in platform/data."""
    from kyso.platform.records.reference_data import load_reference_data

    with transaction(app.extensions["kyso.sessions"]) as session:
        summary = load_reference_data(session)
    click.echo(
        f"areas: {summary.areas_added} added, {summary.areas_updated} updated; "
        f"vaccine products: {summary.products_added} added, {summary.products_updated} updated"
    )


@click.command("import-records")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--facility", "facility_code", required=True, help="Code of the entering facility.")
@click.option("--user", "username", help="Import as this user (their rights apply).")
@click.option("--dry-run", is_flag=True, help="Only check the file; write nothing.")
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True)
@click.pass_obj
def import_records_command(
    app: Flask, file: Path, facility_code: str, username: str | None, dry_run: bool, lang: str
) -> None:
    """Import vaccination records from an .xlsx or .csv file, all or nothing.

    Exits with status 1, writing nothing, when any row has a problem; every problem is listed
    with its row and column.
    """
    from kyso.platform.records.importer import import_records

    with transaction(app.extensions["kyso.sessions"]) as session:
        facility = session.scalar(select(Facility).where(Facility.code == facility_code))
        if facility is None:
            raise click.UsageError(f"no facility with code {facility_code!r}")
        user = None
        if username:
            user = session.scalar(select(User).where(User.username == username.strip().lower()))
            if user is None:
                raise click.UsageError(f"no user {username!r}")
        started = time.perf_counter()
        with file.open("rb") as fh:
            report = import_records(session, fh, file.name, facility, user, dry_run=dry_run)
        elapsed = time.perf_counter() - started
    for entry in report.problems:
        where = entry.row if entry.row is not None else translate("records.report_file", lang)
        click.echo(f"{where}\t{entry.column(lang)}\t{entry.value or ''}\t{entry.text(lang)}")
    for entry in report.notes:
        click.echo(
            f"{entry.row or ''}\t{entry.column(lang)}\t{entry.value or ''}\t{entry.text(lang)}"
        )
    counts = {
        "doses": report.doses_created,
        "created": report.people_created,
        "existing": report.people_existing,
        "skipped": report.doses_skipped,
    }
    if not report.ok:
        click.echo(translate("records.import_failed", lang, count=len(report.problems)), err=True)
        sys.exit(1)
    key = "records.import_checked" if dry_run else "records.import_done"
    click.echo(f"{translate(key, lang, **counts)} ({report.rows} rows, {elapsed:.1f} s)")


@click.command("demo-data")
@click.option("--people", "count", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--registry-dataset",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the reference population registry's dataset for these people here.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=5000, show_default=True)
@click.pass_obj
def demo_data(
    app: Flask, count: int, seed: int, registry_dataset: Path | None, batch_size: int
) -> None:
    """(Demonstration databases only) Demo organisation, accounts and vaccinated people.

    The organisation and accounts are created when missing; each run adds COUNT new people.
    The same --seed gives the same people.
    """
    from kyso.platform.records import demo
    from kyso.platform.records.reference_data import load_reference_data

    started = time.perf_counter()
    factory = app.extensions["kyso.sessions"]
    with transaction(factory) as session:
        load_reference_data(session)
        accounts = demo.ensure_demo_organisation(session)
    with transaction(factory) as session:
        world = demo.DemoWorld.load(session)
        stats = demo.insert_people(
            session, world, demo.generate_people(world, count, seed), batch_size
        )
    click.echo(
        f"{stats.people} people, {stats.doses} doses in {time.perf_counter() - started:.1f} s"
    )
    for problem in demo.IdentityProblem:
        click.echo(f"  identity number {problem.value}: {stats.problems[problem]}")
    if registry_dataset is not None:
        from kyso.platform.registry.reference_server import write_dataset

        write_dataset(
            registry_dataset, demo.registry_citizens(demo.generate_people(world, count, seed))
        )
        click.echo(f"reference registry dataset: {registry_dataset}")
    click.echo(f"demo accounts (password for new ones: {demo.DEMO_PASSWORD}):")
    for account in accounts:
        state = "created" if account.created else "already there, unchanged"
        click.echo(f"  {account.username:<20} {account.role.value:<16} {account.where:<16} {state}")


commands = [reference_data, import_records_command, demo_data]
