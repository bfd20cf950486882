"""Commands: ``verify-population`` (the job) and ``registry`` (the reference service).

``verify-population`` exits 0 when every claimed person got a status, 75 (EX_TEMPFAIL) when the
registry was unavailable for some of them or the database connection was lost (run it again
later, e.g. from cron), and 1 when the registry refused the API key or did not speak the
protocol.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask
from sqlalchemy.exc import DBAPIError

from kyso.platform.db import EX_TEMPFAIL, exit_database_unavailable, is_transient
from kyso.platform.errors import DomainError
from kyso.platform.models import VerificationStatus
from kyso.platform.registry.client import load_registry
from kyso.platform.registry.protocol import MAX_BATCH
from kyso.platform.registry.reference_server import (
    DatasetError,
    make_app,
    read_citizens_csv,
    write_dataset,
)
from kyso.platform.registry.service import VerificationReport, verify_population

API_KEY_ENV = "KYSO_REGISTRY_API_KEY"


def _summary(report: VerificationReport) -> str:
    counts = ", ".join(
        f"{status.value} {report.counts[status]}"
        for status in VerificationStatus
        if report.counts[status]
    )
    return (
        f"{report.processed} people in {report.batches} batches"
        f" ({counts or 'nobody to verify'}); {report.looked_up} numbers looked up"
    )


@click.command("verify-population")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10 * MAX_BATCH),
    default=MAX_BATCH,
    show_default=True,
    help="People claimed and committed together.",
)
@click.option("--limit", type=click.IntRange(0), help="Stop after this many people.")
@click.option("-v", "--verbose", is_flag=True, help="Report every batch.")
@click.pass_obj
def verify_population_command(
    app: Flask, batch_size: int, limit: int | None, verbose: bool
) -> None:
    """Verify pending people against the National Population Database.

    The registry is REGISTRY_URL (KYSO_REGISTRY_URL), its API key KYSO_REGISTRY_API_KEY. Safe to
    run as several processes at once against PostgreSQL.
    """

    def progress(report: VerificationReport) -> None:
        if verbose:
            click.echo(f"batch {report.batches}: {_summary(report)}", err=True)

    api_key = app.config.get("REGISTRY_API_KEY")
    registry = load_registry(app.config, str(api_key) if api_key else None)
    factory = app.extensions["kyso.sessions"]
    try:
        with factory() as session:
            report = verify_population(
                session, registry, batch_size=batch_size, limit=limit, progress=progress
            )
    except DomainError as exc:
        click.echo(f"{exc.text('vi')}\n{exc.text('en')}", err=True)
        sys.exit(1)
    except DBAPIError as exc:
        if not is_transient(exc):
            raise
        exit_database_unavailable("verify-population", exc)
    finally:
        close = getattr(registry, "close", None)
        if callable(close):
            close()
    click.echo(f"verified {_summary(report)}")
    if report.counts[VerificationStatus.UNAVAILABLE]:
        stopped = " — stopped early" if report.stopped else ""
        click.echo(
            f"the registry was unavailable ({report.unavailable_reason}){stopped}: run again later",
            err=True,
        )
        sys.exit(EX_TEMPFAIL)


@click.group("registry")
def registry() -> None:
    """The reference population registry (a stand-in for the National Population Database)."""


@registry.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, help="0 picks a free port.")
@click.option(
    "--dataset",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The SQLite dataset (write_dataset or `registry import-dataset`).",
)
@click.option(
    "--api-key",
    envvar=API_KEY_ENV,
    help=f"Require this bearer key (default: ${API_KEY_ENV}; none: anyone may look up).",
)
def serve(host: str, port: int, dataset: Path, api_key: str | None) -> None:
    """Serve the lookup protocol of platform/registry/README.md from a dataset."""
    from werkzeug.serving import make_server

    try:
        app = make_app(dataset, api_key=api_key or None)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc
    server = make_server(host, port, app, threaded=True)
    protection = "API key required" if api_key else "no API key: anyone may look up"
    click.echo(f"reference registry on http://{host}:{server.server_port} ({protection})")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@registry.command("import-dataset")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", type=click.Path(dir_okay=False, path_type=Path), required=True)
def import_dataset(csv_file: Path, dataset: Path) -> None:
    """Create (or replace) a dataset from a CSV file.

    Columns: identity_number, full_name, birth_date (1990-05-17 or 17/05/1990), gender
    (male/female or Nam/Nữ).
    """
    try:
        citizens = list(read_citizens_csv(csv_file))
        write_dataset(dataset, citizens)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(citizens)} citizens written to {dataset}")


commands: list[click.Command] = [verify_population_command, registry]
