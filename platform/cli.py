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
    """Serve the platform on Flask's development server (production: kyso-platform serve)."""
    app.run(host=host, port=port, debug=False, use_reloader=False)


@main.command("serve")
@click.option("--bind", default="127.0.0.1:8080", show_default=True, envvar="KYSO_BIND")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    envvar="KYSO_WORKERS",
    help="worker processes [default: 2 x cores + 1, at most 9]",
)
@click.option(
    "--threads", type=click.IntRange(1, 64), default=4, show_default=True, envvar="KYSO_THREADS"
)
@click.option(
    "--allow-sqlite",
    is_flag=True,
    envvar="KYSO_ALLOW_SQLITE",
    help="serve a SQLite database (the demo only)",
)
@click.pass_obj
def serve_command(
    app: Flask, bind: str, workers: int | None, threads: int, allow_sqlite: bool
) -> None:
    """Serve the platform on gunicorn (production). Reload gracefully with kill -HUP."""
    from kyso.platform.ops.serve import default_workers, serve

    if app.config["DATABASE_URL"].startswith("sqlite") and not allow_sqlite:
        raise click.ClickException(
            "SQLite cannot take several worker processes' writes in production: set "
            "DATABASE_URL to PostgreSQL (postgresql+psycopg://...), or pass --allow-sqlite for "
            "a demo."
        )
    serve(create_app, bind=bind, workers=workers or default_workers(), threads=threads)


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
    from kyso.platform.stats.cli import commands as stats_commands

    for command in stats_commands:
        main.add_command(command)


_register_feature_commands()

if __name__ == "__main__":
    sys.exit(main())
