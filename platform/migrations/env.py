"""Alembic environment: the platform's metadata, one connection, batch mode for SQLite."""

from __future__ import annotations

from alembic import context

import kyso.platform.models  # noqa: F401 - registers every table
from kyso.platform.db import Base, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None
engine = make_engine(url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
