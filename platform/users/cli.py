"""User commands: create an account from the command line (first administrator, scripts)."""

from __future__ import annotations

import click
from flask import Flask

from kyso.platform.auth.service import audit, hash_password
from kyso.platform.db import transaction
from kyso.platform.models import Role, User


@click.command("create-user")
@click.argument("username")
@click.option("--full-name", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--facility-id", type=int)
@click.option("--signing-unit-id", type=int)
@click.pass_obj
def create_user(
    app: Flask,
    username: str,
    full_name: str,
    role: str,
    password: str,
    facility_id: int | None,
    signing_unit_id: int | None,
) -> None:
    """Create a user account."""
    with transaction(app.extensions["kyso.sessions"]) as session:
        user = User(
            username=username.strip().lower(),
            full_name=full_name,
            password_hash=hash_password(password),
            role=Role(role),
            facility_id=facility_id,
            signing_unit_id=signing_unit_id,
        )
        session.add(user)
        session.flush()
        audit(session, "user.create", None, target=user.username, via="cli")
    click.echo(f"created {username}")


commands = [create_user]
