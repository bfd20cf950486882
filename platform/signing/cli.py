"""Signing commands: exporting a batch's signed certificates for verification with openssl."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask

from kyso.platform.errors import DomainError
from kyso.platform.signing.certificates import load_trust_store
from kyso.platform.signing.export import export_signed
from kyso.platform.signing.revocation import set_unit_tax_code
from kyso.platform.signing.verify import verify_directory


@click.command("export-signed")
@click.option("--batch", "batch_id", required=True, help="Batch id, e.g. KB261127A1B2C3D4E5.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def export_signed_command(app: Flask, batch_id: str, directory: Path) -> None:
    """Write each signed record's JSON, its .p7s (or the batch document) and chain.pem."""
    configured = app.config.get("TRUST_ANCHORS")
    anchors = Path(configured) if configured else Path(app.instance_path) / "trust-anchors.pem"
    if not anchors.exists():
        raise click.ClickException(
            f"no trust anchors at {anchors}: set KYSO_TRUST_ANCHORS to the CA bundle"
        )
    factory = app.extensions["kyso.sessions"]
    with factory() as session:
        try:
            summary = export_signed(session, batch_id, directory, load_trust_store(anchors))
        except DomainError as exc:
            raise click.ClickException(exc.text("en")) from None
    click.echo(
        f"batch {summary.batch_id} ({summary.mode.value}): {summary.records} signed records "
        f"written to {summary.directory}; verify with the commands in VERIFY.txt"
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
def verify_signed_command(directory: Path, at: str | None, anchors: Path | None) -> None:
    """Validate an export-signed folder offline: one line per file, then the total."""
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
    results = verify_directory(directory, moment, anchors)
    for result in results:
        click.echo(result.line())
    failed = sum(not r.ok for r in results)
    click.echo(f"{len(results)} files: {len(results) - failed} OK, {failed} failed")
    if failed or not results:
        raise SystemExit(1)


commands = [export_signed_command, unit_tax_code_command, verify_signed_command]
