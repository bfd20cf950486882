"""Passport commands: the end-of-day issuance and the DCC verifier.

    kyso-platform issue-passports [--limit N] [--chunk N]
    kyso-platform requeue-passports         (failed entries back to the queue)
    kyso-platform dcc verify HC1:...        (or --image qr.png; --at TIME; offline, with no
                                             database: --dsc list.pem or --trust-list URL|FILE
                                             --anchor csca.pem; --revocation URL|DIR)
    kyso-platform dcc revocation export DIR [--hash-type T] [--chunk N]

Several ``issue-passports`` may run at once (on several machines) against PostgreSQL. A chunk
that meets a lost database connection is tried again (3 times); then the command stops with a
one-line message and exit code 75 (EX_TEMPFAIL: run it again later), keeping what committed.
"""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from kyso.platform.db import exit_database_unavailable, is_transient
from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.models import RunStatus
from kyso.platform.passport import config
from kyso.platform.passport.issuance import issue_passports, retry_failed, worker_name
from kyso.platform.passport.pictures import MAX_PICTURE_BYTES
from kyso.platform.passport.revocation import (
    CHUNK,
    HASH_TYPES,
    RevocationList,
    Revocations,
    current_batches,
    export,
    platform_list,
)
from kyso.platform.passport.signedlist import ListError
from kyso.platform.passport.trustlist import load_trust_list
from kyso.platform.passport.verifier import (
    MAX_SIGNER_LIST_BYTES,
    MAX_TEXT,
    SignerList,
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
        raise click.ClickException(config.error_detail(exc)) from None
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
        click.echo(
            "see the failed entries on the central issuer page (/passports/issuer); once their "
            "cause is fixed, kyso-platform requeue-passports puts them back in the queue"
        )
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
        click.echo(f"{mark} {text}" + (f" — {check.detail}" if check.detail else ""))
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
    if result.revoked:
        click.echo("NOT VALID: REVOKED (superseded or revoked by its issuer)")
    else:
        click.echo("VALID" if result.valid else "NOT VALID")


def _offline_signers(dsc: Path | None, trust_list: str | None, anchors: list[Any]) -> SignerList:
    signers = SignerList()
    sources = []
    if dsc:
        try:
            sources.append(
                SignerList.from_bytes(_read_at_most(dsc, MAX_SIGNER_LIST_BYTES, "--dsc"))
            )
        except ValueError as exc:
            raise click.ClickException(f"{exc} (--dsc {dsc})") from None
    if trust_list:
        sources.append(load_trust_list(trust_list, anchors))
    for found in sources:
        for certificate in found.certificates():
            signers.add(certificate)
    return signers


NO_SCHEMA = (
    "the database has no passport tables: run `kyso-platform db upgrade` on this instance, or "
    "verify without a database: --dsc FILE or --trust-list URL|FILE (with --anchor CSCA.pem)"
)


@dcc_group.command("verify")
@click.argument("text", required=False)
@click.option("--image", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--dsc",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Signer certificates (PEM bundle or JSON trust list), trusted as given; no database.",
)
@click.option(
    "--trust-list",
    "trust_list",
    metavar="URL|FILE",
    help="The platform's signed signer trust list (checked against --anchor); no database.",
)
@click.option(
    "--revocation",
    metavar="URL|DIR",
    help="A signed revocation list: its URL, or a directory of `dcc revocation export`.",
)
@click.option(
    "--anchor",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="PEM certificates the signed lists must be signed under (the CSCA); default: "
    "KYSO_PASSPORT_LIST_ANCHORS.",
)
@click.option("--at", "at", type=click.DateTime(), help="Check expiry at this time (UTC).")
@click.pass_obj
def verify_command(
    app: Flask,
    text: str | None,
    image: Path | None,
    dsc: Path | None,
    trust_list: str | None,
    revocation: str | None,
    anchor: Path | None,
    at: datetime | None,
) -> None:
    """Verify an HC1 text (argument, or - for standard input) or a QR picture (--image).

    With --dsc or --trust-list nothing is read from the database (offline verifier); without
    them the platform's own signers and revocation list are used."""
    if (text is None) == (image is None):
        raise click.UsageError("give an HC1 text or --image FILE (one of them)")
    with contextlib.ExitStack() as stack:
        revocations: Revocations | None = None
        try:
            anchors = config.list_anchors(app.config, anchor) if (trust_list or revocation) else []
            if dsc or trust_list:
                signers = _offline_signers(dsc, trust_list, anchors)
            else:
                session = stack.enter_context(app.extensions["kyso.sessions"]())
                signers, revocations = _platform_lists(app, session)
            if revocation:
                revocations = RevocationList.load(revocation, anchors)
        except ListError as exc:
            raise click.ClickException(
                f"{exc}. Nothing was verified: check the list's URL or file and the anchor "
                "(--anchor or KYSO_PASSPORT_LIST_ANCHORS), or fetch the list again."
            ) from None
        if image is not None:
            # One byte more than allowed, so that a larger file is refused rather than cut.
            with image.open("rb") as picture:
                data = picture.read(MAX_PICTURE_BYTES + 1)
            result = verify_image(data, signers, at, revocations=revocations)
        else:
            assert text is not None
            result = verify(
                sys.stdin.read(MAX_TEXT + 1) if text == "-" else text,
                signers,
                at,
                revocations=revocations,
            )
    if revocations is None:
        click.echo("revocation not checked: give --revocation URL|DIR")
    _print(result)
    if not result.valid:
        sys.exit(1)


def _read_at_most(path: Path, limit: int, option: str) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise click.BadParameter(f"{path} is larger than {limit} bytes", param_hint=option)
    return data


def _platform_lists(app: Flask, session: Session) -> tuple[SignerList, Revocations]:
    """The platform's own signers and revocations (its database), or a message saying why the
    database cannot give them and how to verify without it."""
    try:
        return config.dsc_list(session, app.config), platform_list(session)
    except (OperationalError, ProgrammingError) as exc:
        if "passport" in str(exc.orig) or "no such table" in str(exc.orig):
            raise click.ClickException(NO_SCHEMA) from None
        raise click.ClickException(
            f"the database cannot be read ({exc.orig}): check DATABASE_URL, or verify without "
            "a database: --dsc FILE or --trust-list URL|FILE"
        ) from None


@dcc_group.group("revocation")
def revocation_group() -> None:
    """The signed revocation list of superseded passports (EU DCC revocation format)."""


@revocation_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--hash-type",
    "hash_types",
    type=click.Choice(HASH_TYPES),
    multiple=True,
    help="Publish only these hash types (default: all three).",
)
@click.option("--chunk", type=click.IntRange(1, 1000), default=CHUNK, show_default=True)
@click.pass_obj
def revocation_export(app: Flask, directory: Path, hash_types: tuple[str, ...], chunk: int) -> None:
    """Write the signed revocation list (index.jws and one file per batch) to DIRECTORY."""
    try:
        signer = config.list_signer(app.config, app.extensions)
    except DomainError as exc:
        raise click.ClickException(config.error_detail(exc)) from None
    try:
        with app.extensions["kyso.sessions"]() as session:
            batches = current_batches(session, hash_types=hash_types or HASH_TYPES, chunk=chunk)
    except (OperationalError, ProgrammingError):
        raise click.ClickException(NO_SCHEMA.split(", or")[0]) from None
    written = export(directory, batches, signer)
    entries = sum(len(b.hashes) for b in batches)
    click.echo(f"{len(batches)} batches ({entries} hashes) and index.jws written to {directory}")
    click.echo(f"({len(written)} files)")


@click.command("requeue-passports")
@click.pass_obj
def requeue_command(app: Flask) -> None:
    """Put every failed passport issuance entry back in the queue (after fixing the cause)."""
    try:
        with app.extensions["kyso.sessions"]() as session:
            count = retry_failed(session)
            session.commit()
    except (OperationalError, ProgrammingError):
        raise click.ClickException(NO_SCHEMA.split(", or")[0]) from None
    click.echo(f"{count} failed entries put back in the queue; run kyso-platform issue-passports")


commands = [issue_passports_command, requeue_command, dcc_group]
