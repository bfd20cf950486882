"""Signing commands: the time-stamping worker, exporting a batch's signed certificates for
verification with openssl, checking an export offline, a signing unit's tax code."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask
from sqlalchemy.exc import DBAPIError

from kyso.platform.db import exit_database_unavailable, is_transient
from kyso.platform.errors import DomainError
from kyso.platform.signing.certificates import load_trust_store
from kyso.platform.signing.export import export_signed
from kyso.platform.signing.revocation import set_unit_tax_code
from kyso.platform.signing.stamping import stamp_due, waiting, waiting_positions
from kyso.platform.signing.timestamps import timestamper
from kyso.platform.signing.verify import verify_directory


@click.command("export-signed")
@click.option("--batch", "batch_id", required=True, help="Batch id, e.g. KB261127A1B2C3D4E5.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0, 86400),
    default=0,
    show_default=True,
    help="Wait up to this many seconds for the batch's signatures still waiting for their "
    "time-stamp (kyso-platform signing timestamp must be running).",
)
@click.pass_obj
def export_signed_command(app: Flask, batch_id: str, directory: Path, wait_seconds: float) -> None:
    """Write each signed record's JSON, its .p7s (or the batch document) and chain.pem."""
    configured = app.config.get("TRUST_ANCHORS")
    anchors = Path(configured) if configured else Path(app.instance_path) / "trust-anchors.pem"
    if not anchors.exists():
        raise click.ClickException(
            f"no trust anchors at {anchors}: set KYSO_TRUST_ANCHORS to the CA bundle"
        )
    factory = app.extensions["kyso.sessions"]
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        with factory() as session:
            if not waiting_positions(session, batch_id):
                break
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
    with factory() as session:
        try:
            summary = export_signed(session, batch_id, directory, load_trust_store(anchors))
        except DomainError as exc:
            raise click.ClickException(exc.text("en")) from None
    click.echo(
        f"batch {summary.batch_id} ({summary.mode.value}): {summary.records} signed records "
        f"written to {summary.directory}; verify with the commands in VERIFY.txt"
    )
    if summary.unstamped:
        click.echo(
            f"WARNING: {len(summary.unstamped)} signature(s) not time-stamped yet (CAdES-BES, "
            "listed in NOT-TIMESTAMPED.txt): they wait for kyso-platform signing timestamp; "
            "export again later, or with --wait SECONDS",
            err=True,
        )


@click.command("unit-tax-code")
@click.argument("unit_code")
@click.argument("tax_code")
@click.pass_obj
def unit_tax_code_command(app: Flask, unit_code: str, tax_code: str) -> None:
    """Record a signing unit's tax code (MST): its officers' certificates must carry it."""
    factory = app.extensions["kyso.sessions"]
    with factory() as session:
        try:
            unit = set_unit_tax_code(session, unit_code, tax_code)
        except DomainError as exc:
            raise click.ClickException(exc.text("en")) from None
        session.commit()
        click.echo(f"{unit.code} ({unit.name}): tax code {unit.tax_code}")


@click.command("verify-signed")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--at",
    "at",
    help="Validate as at this time (ISO 8601, e.g. 2030-01-01T00:00:00+07:00) [default: now].",
)
@click.option(
    "--anchors",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust anchors (PEM) [default: the self-signed certificates of DIR/chain.pem].",
)
@click.option(
    "--require-timestamp",
    is_flag=True,
    help="Fail every signature without RFC 3161 time-stamp (CAdES-BES).",
)
def verify_signed_command(
    directory: Path, at: str | None, anchors: Path | None, require_timestamp: bool
) -> None:
    """Validate an export-signed folder offline: one line per file, then the total.

    A signature without time-stamp (CAdES-BES: not time-stamped yet) is validated at --at and
    said so; --require-timestamp makes it a failure."""
    moment = None
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(
                f"{at!r} is not an ISO 8601 time, e.g. 2030-01-01T00:00:00+07:00", param_hint="--at"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if not (directory / "chain.pem").exists():
        raise click.ClickException(
            f"no chain.pem in {directory}: give the folder kyso-platform export-signed wrote"
        )
    results = verify_directory(directory, moment, anchors, require_timestamp=require_timestamp)
    for result in results:
        click.echo(result.line())
    failed = sum(not r.ok for r in results)
    unstamped = sum(r.unstamped for r in results)
    total = f"{len(results)} files: {len(results) - failed} OK, {failed} failed"
    if unstamped:
        total += f"; {unstamped} signature(s) NOT time-stamped"
    click.echo(total)
    if failed or not results:
        raise SystemExit(1)


@click.group("signing")
def signing_group() -> None:
    """Signing jobs: time-stamping the stored signatures."""


@signing_group.command("timestamp")
@click.option(
    "--follow",
    is_flag=True,
    help="Keep running: time-stamp signatures as they are stored (the systemd service).",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    help="With --follow: seconds between looks at an empty queue.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many signatures.")
@click.option("--chunk", type=click.IntRange(1, 2000), default=200, show_default=True)
@click.pass_obj
def timestamp_command(
    app: Flask, follow: bool, interval: float, limit: int | None, chunk: int
) -> None:
    """Time-stamp the stored signatures waiting in the queue (CAdES-BES becomes CAdES-T).

    Without --follow: what is due now, then exit (75 when the TSA could not be reached: run it
    again later; the signatures stay queued)."""
    stamper = timestamper(app.config)
    if stamper is None:
        raise click.ClickException("KYSO_TSA_URL is not set: there is no TSA to ask")
    factory = app.extensions["kyso.sessions"]
    try:
        while True:
            started = time.perf_counter()
            try:
                run = stamp_due(factory, stamper, chunk=chunk, limit=limit)
                with factory() as session:
                    left, oldest = waiting(session)
            except DBAPIError as exc:
                if not is_transient(exc):
                    raise
                if not follow:
                    exit_database_unavailable("signing timestamp", exc)
                click.echo(f"database unavailable, trying again: {exc.orig}", err=True)
                time.sleep(interval)
                continue
            took = time.perf_counter() - started
            if run.stamped or run.failed or not follow:
                rate = f", {run.stamped / took:.0f}/s" if run.stamped and took > 0 else ""
                line = (
                    f"{run.stamped} signatures time-stamped in {took:.1f} s{rate} (TSA "
                    f"{run.seconds_tsa:.1f} s), {run.failed} put off; {left} waiting"
                )
                if oldest is not None:
                    line += f", the oldest since {oldest:%Y-%m-%d %H:%M:%S}Z"
                click.echo(line, err=bool(run.failed))
                for error in run.errors:
                    click.echo(f"  TSA: {error}", err=True)
            if not follow:
                if run.failed:
                    sys.exit(75)  # EX_TEMPFAIL: the TSA away; the signatures stay queued
                return
            if not run.stamped:
                time.sleep(interval)
    finally:
        stamper.close()


commands = [export_signed_command, unit_tax_code_command, verify_signed_command, signing_group]
