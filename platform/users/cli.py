"""User commands for IT: create an account (the first administrator, scripts) and register a
signing officer's certificate without the web page. Both go through the same service rules as
the pages do, and both are audited."""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.db import transaction
from kyso.platform.errors import DomainError
from kyso.platform.models import Area, AreaLevel, Facility, Role, SigningUnit, User
from kyso.platform.signing.certificates import CheckedCertificate, load_trust_store
from kyso.platform.signing.revocation import check_registration
from kyso.platform.signing.validation import revocation_checker
from kyso.platform.users import service


def _fail(exc: DomainError) -> click.ClickException:
    return click.ClickException(exc.text("en"))


def _by_code(session: Session, model: type[Facility] | type[SigningUnit], code: str) -> int:
    found = session.scalar(select(model.id).where(model.code == code))
    if found is None:
        kind = "facility" if model is Facility else "signing unit"
        raise click.ClickException(f"no {kind} with code {code!r}")
    return found


def _province_by_code(session: Session, code: str) -> int:
    found = session.scalar(
        select(Area.id).where(Area.code == code, Area.level == AreaLevel.PROVINCE)
    )
    if found is None:
        raise click.ClickException(f"no province with code {code!r}")
    return found


@click.command("create-user")
@click.argument("username")
@click.option("--full-name", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--facility-id", type=int)
@click.option("--signing-unit-id", type=int)
@click.option("--facility-code", help="Instead of --facility-id.")
@click.option("--signing-unit-code", help="Instead of --signing-unit-id.")
@click.option("--province-code", help="Administrators of one province (e.g. 79); else national.")
@click.option("--language", type=click.Choice(["vi", "en"]), default="vi", show_default=True)
@click.pass_obj
def create_user(
    app: Flask,
    username: str,
    full_name: str,
    role: str,
    password: str,
    facility_id: int | None,
    signing_unit_id: int | None,
    facility_code: str | None,
    signing_unit_code: str | None,
    province_code: str | None,
    language: str,
) -> None:
    """Create a user account (the same rules as the user management page)."""
    with transaction(app.extensions["kyso.sessions"]) as session:
        if facility_code:
            facility_id = _by_code(session, Facility, facility_code)
        if signing_unit_code:
            signing_unit_id = _by_code(session, SigningUnit, signing_unit_code)
        province_id = _province_by_code(session, province_code) if province_code else None
        form = service.UserForm(
            username=username,
            full_name=full_name,
            role=Role(role),
            facility_id=facility_id,
            signing_unit_id=signing_unit_id,
            province_id=province_id,
            language=language,
        )
        try:
            user, _password = service.create_user(session, None, form, password=password)
        except DomainError as exc:
            raise _fail(exc) from None
        created = user.username
    click.echo(f"created {created}")


@click.command("register-certificate")
@click.argument("username")
@click.argument("serial")
@click.option(
    "--by",
    "by_username",
    required=True,
    help="Your administrator user name: recorded as who registered the certificate.",
)
@click.pass_obj
def register_certificate(app: Flask, username: str, serial: str, by_username: str) -> None:
    """Register SERIAL (hex, as the CA prints it) as USERNAME's signing certificate.

    The officer's previous certificate, if any, is deactivated ("replaced").
    """
    with transaction(app.extensions["kyso.sessions"]) as session:
        officer = session.scalar(select(User).where(User.username == username.strip().lower()))
        if officer is None:
            raise click.ClickException(f"no user {username!r}")
        actor = session.scalar(select(User).where(User.username == by_username.strip().lower()))
        if actor is None or actor.role is not Role.ADMINISTRATOR or not actor.active:
            raise click.ClickException(f"{by_username!r} is not an active administrator")
        before = service.active_certificate(session, officer)
        try:
            registered = service.register_certificate(
                session, actor, officer, serial, ip=f"cli:{getpass.getuser()}", verify=_verify(app)
            )
        except DomainError as exc:
            session.commit()  # keep the audit record of a refused attempt
            raise _fail(exc) from None
        shown = service.format_serial(registered.serial_hex)
        if before is not None and before.id == registered.id:
            message = f"{officer.username}: certificate {shown} already registered; nothing changed"
        elif before is not None:
            old = service.format_serial(before.serial_hex)
            message = f"{officer.username}: registered {shown} (replaces {old})"
        else:
            message = f"{officer.username}: registered {shown}"
        unchecked = registered.der is None
    click.echo(message)
    if unchecked:
        click.echo(
            f"WARNING: {shown} is registered by its serial only: the certificate itself (validity, "
            "revocation, organisation) is checked at the officer's first batch; register it from "
            "the user page with the token or its .cer file to check it now",
            err=True,
        )


def _verify(
    app: Flask,
) -> Callable[[bytes, str, SigningUnit | None], CheckedCertificate] | None:
    """The registration check with the platform's trust anchors and revocation policy (for a
    serial whose certificate an earlier registration bound); None without trust anchors."""
    configured = app.config.get("TRUST_ANCHORS")
    path = Path(configured) if configured else Path(app.instance_path) / "trust-anchors.pem"
    if not path.exists():
        return None
    return functools.partial(
        check_registration,
        trust=load_trust_store(path),
        revocation=revocation_checker(app.config),
        at=datetime.now(UTC),
    )


commands = [create_user, register_certificate]
