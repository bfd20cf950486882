"""``kyso-platform``: the platform's command line (long jobs run here, not in web requests)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from kyso.platform.app import create_app


def sessions(app: Flask) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = app.extensions["kyso.sessions"]
    return factory


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """Kyso platform commands. The database comes from DATABASE_URL (default: SQLite)."""
    ctx.obj = create_app()


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(app: Flask) -> None:
    """Create or migrate the schema to the latest version."""
    from kyso.platform.migrations import upgrade

    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    upgrade(app.config["DATABASE_URL"])
    click.echo("database schema is up to date")


@db.command("revision")
@click.option("-m", "--message", required=True)
@click.pass_obj
def db_revision(app: Flask, message: str) -> None:
    """(developers) Write a new migration from the difference between models and schema."""
    from kyso.platform.migrations import revision

    revision(app.config["DATABASE_URL"], message)


@main.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.pass_obj
def run(app: Flask, host: str, port: int) -> None:
    """Serve the platform (development server; use a WSGI server in production)."""
    app.run(host=host, port=port, debug=False, use_reloader=False)


def _register_feature_commands() -> None:
    """Each feature contributes its commands from its own module."""
    from kyso.platform.users.cli import commands as user_commands

    for command in user_commands:
        main.add_command(command)
    from kyso.platform.registry.cli import commands as registry_commands

    for command in registry_commands:
        main.add_command(command)
    from kyso.platform.records.cli import commands as record_commands

    for command in record_commands:
        main.add_command(command)
    from kyso.platform.signing.cli import commands as signing_commands

    for command in signing_commands:
        main.add_command(command)
    from kyso.platform.passport.cli import commands as passport_commands

    for command in passport_commands:
        main.add_command(command)


_register_feature_commands()

if __name__ == "__main__":
    sys.exit(main())
