"""The citizen lookup's limits hold for requests sent at the same moment, not only one by one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy.orm import Session
from support.platform_seed import Seed, add_person

from kyso.platform.errors import DomainError
from kyso.platform.passport import lookup


def test_a_burst_of_guesses_gets_no_more_than_the_limit(
    app: Flask, session: Session, org: Seed
) -> None:
    add_person(session, org, "Bùi Thị Xuân", identity_number="079190000123", phone="0912345678")
    session.commit()
    factory = app.extensions["kyso.sessions"]
    guesses = 12
    start = threading.Barrier(guesses)
    outcomes: list[str] = []
    now = datetime.now(UTC)  # sent at the same moment

    def guess(i: int) -> None:
        with factory() as own:
            start.wait()
            try:
                lookup.find_passport(
                    own,
                    identity_number="079190000123",
                    birth_date="17/05/1990",
                    phone_last4=f"{i:04d}",  # never the right 5678
                    ip=f"10.1.0.{i}",
                    now=now,
                )
            except DomainError as exc:
                outcomes.append(exc.key)
            own.commit()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == sorted(
        ["passport.lookup_not_found"] * lookup.MAX_PER_SUBJECT
        + ["passport.lookup_wait"] * (guesses - lookup.MAX_PER_SUBJECT)
    )
