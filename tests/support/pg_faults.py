"""Faults injected into PostgreSQL at exact points: a lock held, the backends that queue behind it
terminated (``pg_terminate_backend``), as a lost connection looks to the platform.

``race`` runs two transactions against each other, the second on a thread, at the point where it
waits for the first's lock (or has gone through without waiting).

``LockTrap`` holds a lock in a connection of its own (a row ``FOR UPDATE``, or a whole table
``LOCK TABLE``); a watcher (another connection, autocommit, so that ``pg_stat_activity`` is read
afresh) terminates every backend waiting for a lock whose statement matches, up to ``times``
times, then the lock is released. The point of the fault is therefore exact: the first
statement of the victim that needs the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

_WAITING = text(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query ILIKE :match"
)

_PID_WAITING = text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid")

Step = Callable[[Connection], object]


def race(engine: Engine, first: Step, second: Step, then: Step | None = None) -> None:
    """``first`` on one connection, left uncommitted; ``second`` on another, on a thread, then
    committed; once the second waits for a lock (PostgreSQL's ``pg_stat_activity``) or has
    ended without waiting, ``then`` (if any) on the first connection, which commits. Returns
    when both have committed; raises what the second raised (a deadlock, for one)."""
    errors: list[BaseException] = []
    with engine.connect() as one, engine.connect() as other:
        first(one)
        pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()

        def run() -> None:
            try:
                second(other)
                other.commit()
            except BaseException as error:  # raised below, on the test's thread
                errors.append(error)

        worker = threading.Thread(target=run, name="race-second")
        worker.start()
        deadline = time.monotonic() + 10
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            while worker.is_alive() and time.monotonic() < deadline:
                if watcher.execute(_PID_WAITING, {"pid": pid}).scalar_one_or_none():
                    break
                time.sleep(0.01)
        if then is not None:
            then(one)
        one.commit()
        worker.join(10)
        assert not worker.is_alive(), "the second transaction did not end"
    if errors:
        raise errors[0]


class LockTrap:
    def __init__(
        self,
        database_url: str,
        lock_sql: str,
        match: str,
        *,
        times: int = 1,
        params: dict[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._engine: Engine = create_engine(database_url, poolclass=NullPool)
        self._lock_sql = lock_sql
        self._params = params or {}
        self._match = match
        self._times = times
        self._timeout = timeout
        self._locked = threading.Event()
        self._stop = threading.Event()
        self.killed: list[int] = []
        self._thread = threading.Thread(target=self._run, name="lock-trap", daemon=True)

    def start(self) -> LockTrap:
        self._thread.start()
        if not self._locked.wait(20):
            raise RuntimeError("the trap could not take its lock")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._engine.dispose()

    def wait(self, timeout: float = 60.0) -> None:
        """Until the trap has terminated its ``times`` victims and released its lock."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the trap caught {len(self.killed)} victims"

    def __enter__(self) -> LockTrap:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        with (
            self._engine.connect() as locker,
            self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher,
        ):
            locker.execute(text(self._lock_sql), self._params)
            self._locked.set()
            deadline = time.monotonic() + self._timeout
            while (
                len(self.killed) < self._times
                and not self._stop.is_set()
                and time.monotonic() < deadline
            ):
                for pid in watcher.execute(_WAITING, {"match": self._match}).scalars():
                    if watcher.execute(
                        text("SELECT pg_terminate_backend(:p)"), {"p": pid}
                    ).scalar():
                        self.killed.append(pid)
                time.sleep(0.01)
            locker.rollback()


class HeldLock:
    """A lock held by the test until ``release``; ``wait_for`` returns once a backend whose
    statement matches is waiting for it (the victim stands at the exact point)."""

    def __init__(self, database_url: str, lock_sql: str) -> None:
        self._engine: Engine = create_engine(database_url, poolclass=NullPool)
        self._locker = self._engine.connect()
        self._locker.execute(text(lock_sql))

    def wait_for(self, match: str, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            while True:
                pids = list(watcher.execute(_WAITING, {"match": match}).scalars())
                if pids:
                    return pids
                assert time.monotonic() < deadline, f"nothing waited for the lock ({match})"
                time.sleep(0.01)

    def terminate(self, pids: list[int]) -> None:
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            for pid in pids:
                watcher.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})

    def release(self) -> None:
        if not self._locker.closed:
            self._locker.rollback()
            self._locker.close()
        self._engine.dispose()
