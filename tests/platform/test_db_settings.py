"""Connection settings the platform relies on, checked on the real servers."""

from __future__ import annotations

from sqlalchemy import text

from kyso.platform.db import make_engine


def test_connection_settings(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            if database_url.startswith("postgresql"):
                # Short OLTP queries: JIT compilation only adds latency (bench/README.md).
                assert connection.execute(text("SHOW jit")).scalar() == "off"
            else:
                assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
                assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()
