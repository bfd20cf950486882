"""Passport commands: the end-of-day issuance and the DCC verifier.

    kyso-platform issue-passports [--limit N] [--chunk N]
    kyso-platform dcc verify HC1:...        (or --image qr.png; --dsc list.pem; --at TIME)

Several ``issue-passports`` may run at once (on several machines) against PostgreSQL. A chunk
that meets a lost database connection is tried again (3 times); then the command stops with a
one-line message and exit code 75 (EX_TEMPFAIL: run it again later), keeping what committed.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from flask import Flask
from sqlalchemy.exc import DBAPIError

from kyso.platform.db import exit_database_unavailable, is_transient
from kyso.platform.i18n import DomainError, translate
from kyso.platform.passport import config
from kyso.platform.passport.issuance import issue_passports, worker_name
from kyso.platform.passport.models import RunStatus
from kyso.platform.passport.pictures import MAX_PICTURE_BYTES
from kyso.platform.passport.verifier import (
    MAX_SIGNER_LIST_BYTES,
    MAX_TEXT,
    Verification,
    verify,
    verify_image,
)


@click.command("issue-passports")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many queue entries.")
@click.option("--chunk", type=click.IntRange(1, 5000), default=200, show_default=True)
@click.pass_obj
def issue_passports_command(app: Flask, limit: int | None, chunk: int) -> None:
    """Issue vaccine passports for the facility-signed certificates in the queue."""
    try:
        signer = config.open_signer(app.config, app.extensions)
        context = config.issuance_context(app.config, app.instance_path, signer, chunk=chunk)
    except DomainError as exc:
        raise click.ClickException(exc.text("en")) from None
    try:
        summary = issue_passports(
            app.extensions["kyso.sessions"], context, worker=worker_name(), limit=limit
        )
    except DBAPIError as exc:
        if not is_transient(exc):
            raise
        exit_database_unavailable("issue-passports", exc)
    click.echo(
        f"run {summary.run_id} ({context.algorithm}): {summary.issued} passports issued, "
        f"{summary.covered} entries already covered, {summary.failed} failed "
        f"({summary.claimed} queue entries)"
    )
    if summary.failed:
        click.echo("see the failed entries on the central issuer page (/passports/issuer)")
    if summary.status is not RunStatus.FINISHED:
        sys.exit(1)


@click.group("dcc")
def dcc_group() -> None:
    """EU Digital COVID Certificates (vaccine passports)."""


def _print(result: Verification) -> None:
    for check in result.checks:
        mark = "ok  " if check.ok else "FAIL"
        text = translate(f"passport.check_{check.name}", "en")
        if check.problem:
            text += f" — {translate(check.problem, 'en', **check.values)}"
        click.echo(f"{mark} {text}" + (f" ({check.detail})" if check.detail else ""))
    if result.kid is not None:
        click.echo(f"kid {result.kid.hex()}  alg {result.algorithm}")
    if result.signer is not None:
        click.echo(f"signer {result.signer.subject.rfc4514_string()}")
    if result.issued_at and result.expires_at:
        click.echo(
            f"issued {result.issued_at:%Y-%m-%d %H:%M}Z, "
            f"expires {result.expires_at:%Y-%m-%d %H:%M}Z"
        )
    if result.dcc is not None:
        click.echo(json.dumps(result.dcc, ensure_ascii=False, indent=2))
    click.echo("VALID" if result.valid else "NOT VALID")


@dcc_group.command("verify")
@click.argument("text", required=False)
@click.option("--image", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--dsc",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Signer certificates (PEM bundle or JSON trust list) besides the platform's own.",
)
@click.option("--at", "at", type=click.DateTime(), help="Check expiry at this time (UTC).")
@click.pass_obj
def verify_command(
    app: Flask, text: str | None, image: Path | None, dsc: Path | None, at: datetime | None
) -> None:
    """Verify an HC1 text (argument, or - for standard input) or a QR picture (--image)."""
    if (text is None) == (image is None):
        raise click.UsageError("give an HC1 text or --image FILE (one of them)")
    extra = _read_at_most(dsc, MAX_SIGNER_LIST_BYTES, "--dsc") if dsc else None
    with app.extensions["kyso.sessions"]() as session:
        try:
            signers = config.dsc_list(session, app.config, extra)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if image is not None:
        # One byte more than allowed, so that a larger file is refused rather than cut.
        with image.open("rb") as picture:
            result = verify_image(picture.read(MAX_PICTURE_BYTES + 1), signers, at)
    else:
        assert text is not None
        result = verify(sys.stdin.read(MAX_TEXT + 1) if text == "-" else text, signers, at)
    _print(result)
    if not result.valid:
        sys.exit(1)


def _read_at_most(path: Path, limit: int, option: str) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise click.BadParameter(f"{path} is larger than {limit} bytes", param_hint=option)
    return data


commands = [issue_passports_command, dcc_group]
