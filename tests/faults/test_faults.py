"""Faults on the real platform process and PostgreSQL (issue 19): nothing lost, nothing signed,
stored or completed twice.

Each test injects one kind of fault at an exact point and then checks the invariants of
``conftest.invariants``: every dose version has at most one stored signature, no signature
without its batch item, batch counters equal to the items, one completion audit per completed
batch (none for an open one), at most one current passport per person, and every exported
``.p7s`` verifies with ``openssl cms``. The exact points come from locks the test holds: the
platform's request waits on the lock after its earlier writes, and is killed (SIGKILL of the
whole gunicorn process group) or has its database connection terminated
(``pg_terminate_backend``) there.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from support.pg_faults import HeldLock

from .conftest import Officer, World, invariants

pytestmark = pytest.mark.timeout(120)

from kyso.platform.models import (  # noqa: E402
    BatchStatus,
    DoseSignature,
    SigningBatch,
)

CHUNK = 20


def _post_in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []

    def run() -> None:
        try:
            answers.append(call())
        except httpx.HTTPError as exc:
            answers.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, answers


def _batch(world: World, batch_id: str) -> SigningBatch:
    with world.session() as session:
        batch = session.get(SigningBatch, batch_id)
        assert batch is not None
        return batch


def _post_all(officer: Officer, batch: str, attempt: str, signatures: list[str]) -> None:
    for offset in range(0, len(signatures), CHUNK):
        answer = officer.chunk(batch, attempt, offset, signatures[offset : offset + CHUNK])
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("where", "lock", "chunk"),
    [
        # After the signatures and items are written, before the passport queue and the commit.
        ("while storing a chunk", "LOCK TABLE passport_queue IN EXCLUSIVE MODE", 0),
        # The last chunk: after every write, at the completion audit, before the commit.
        ("after the last chunk's writes", "LOCK TABLE audit_events IN EXCLUSIVE MODE", -1),
    ],
)
def test_platform_killed_inside_a_chunk_post(
    world: World, where: str, lock: str, chunk: int
) -> None:
    officer = Officer(world)
    prepared = officer.prepare()
    batch, attempt = prepared["batch"], prepared["attempt"]
    signatures = officer.sign(attempt)
    offsets = list(range(0, len(signatures), CHUNK))
    target = offsets[chunk]
    for offset in offsets:
        if offset == target:
            break
        officer.chunk(batch, attempt["id"], offset, signatures[offset : offset + CHUNK])
    held = HeldLock(world.url, lock)
    try:
        thread, answers = _post_in_thread(
            lambda: officer.chunk(batch, attempt["id"], target, signatures[target : target + CHUNK])
        )
        held.wait_for("INSERT INTO%")
        world.platform.kill()
    finally:
        held.release()
    thread.join(30)
    assert isinstance(answers[0], httpx.HTTPError)  # the page saw the platform go away
    world.platform.start()
    before = invariants(world)
    assert before["signatures"] == target  # the killed post stored nothing of its chunk
    # The page posts what it has again (a new tab after the restart: the session survives).
    again = Officer(world)
    _post_all(again, batch, attempt["id"], signatures)
    after = invariants(world)
    assert after["signatures"] == world.doses
    assert _batch(world, batch).status is BatchStatus.COMPLETED


def test_platform_killed_between_the_last_chunk_and_complete(world: World) -> None:
    officer = Officer(world)
    prepared = officer.prepare()
    batch, attempt = prepared["batch"], prepared["attempt"]
    _post_all(officer, batch, attempt["id"], officer.sign(attempt))
    world.platform.kill()  # `complete` never arrives, however long the page retries
    world.platform.start()
    stored = _batch(world, batch)
    assert stored.status is BatchStatus.COMPLETED
    assert stored.completed_at is not None
    invariants(world)
    late = Officer(world).complete(batch)  # the page's late complete changes nothing
    assert late.json()["status"] == "completed"
    assert invariants(world)["completed"] == 1


@pytest.mark.parametrize(
    ("where", "lock", "match", "call"),
    [
        ("chunk post", "LOCK TABLE passport_queue IN EXCLUSIVE MODE", "INSERT INTO%", "chunk"),
        ("complete", "LOCK TABLE signing_batches IN EXCLUSIVE MODE", "SELECT%", "complete"),
    ],
)
def test_database_connection_terminated_inside_a_request(
    world: World, where: str, lock: str, match: str, call: str
) -> None:
    officer = Officer(world)
    prepared = officer.prepare()
    batch, attempt = prepared["batch"], prepared["attempt"]
    signatures = officer.sign(attempt)
    if call == "complete":
        _post_all(officer, batch, attempt["id"], signatures[:CHUNK])
        request = lambda: officer.complete(batch)  # noqa: E731
    else:
        request = lambda: officer.chunk(batch, attempt["id"], 0, signatures[:CHUNK])  # noqa: E731
    held = HeldLock(world.url, lock)
    try:
        thread, answers = _post_in_thread(request)
        held.terminate(held.wait_for(match))
    finally:
        held.release()
    thread.join(30)
    answer = answers[0]
    assert isinstance(answer, httpx.Response)
    assert answer.status_code >= 500  # the page's post fails and is retried
    assert invariants(world)["signatures"] == (CHUNK if call == "complete" else 0)
    retry = request()
    assert retry.status_code == 200, retry.text
    _post_all(officer, batch, attempt["id"], signatures)
    assert invariants(world)["signatures"] == world.doses


def test_replays_out_of_order_two_tabs_and_after_completion(world: World) -> None:
    first, second = Officer(world), Officer(world)
    prepared = first.prepare()
    batch, attempt = prepared["batch"], prepared["attempt"]["id"]
    signatures = first.sign(prepared["attempt"])
    last = len(signatures) - CHUNK
    # Out of order: the last chunk first; then the same chunk twice.
    assert first.chunk(batch, attempt, last, signatures[last:]).status_code == 200
    assert first.chunk(batch, attempt, last, signatures[last:]).json()["signed"] == CHUNK
    # Two tabs posting every chunk at the same moment.
    for offset in range(0, last, CHUNK):
        part = signatures[offset : offset + CHUNK]
        threads = [
            _post_in_thread(lambda tab=tab, o=offset, p=part: tab.chunk(batch, attempt, o, p))
            for tab in (first, second)
        ]
        for thread, answers in threads:
            thread.join(30)
            assert answers[0].status_code == 200, answers[0].text
    assert invariants(world)["signatures"] == world.doses
    # After completion: a replayed chunk and two `complete` at once change nothing.
    assert second.chunk(batch, attempt, 0, signatures[:CHUNK]).json()["signed"] == world.doses
    both = [_post_in_thread(lambda tab=tab: tab.complete(batch)) for tab in (first, second)]
    for thread, answers in both:
        thread.join(30)
        assert answers[0].json()["status"] == "completed"
    counts = invariants(world)
    assert (counts["signatures"], counts["completed"]) == (world.doses, 1)


def test_complete_twice_at_once_while_records_are_pending(world: World) -> None:
    first, second = Officer(world), Officer(world)
    prepared = first.prepare()
    batch, attempt = prepared["batch"], prepared["attempt"]
    signatures = first.sign(attempt)
    _post_all(first, batch, attempt["id"], signatures[: len(signatures) - CHUNK])
    both = [_post_in_thread(lambda tab=tab: tab.complete(batch)) for tab in (first, second)]
    for thread, answers in both:
        thread.join(30)
        assert answers[0].json()["status"] == "open"
    last = len(signatures) - CHUNK
    assert first.chunk(batch, attempt["id"], last, signatures[last:]).status_code == 200
    both = [_post_in_thread(lambda tab=tab: tab.complete(batch)) for tab in (first, second)]
    for thread, answers in both:
        thread.join(30)
        assert answers[0].json()["status"] == "completed"
    counts = invariants(world)
    assert (counts["signatures"], counts["completed"]) == (world.doses, 1)
    with world.session() as session:
        assert session.scalar(select(func.count()).select_from(DoseSignature)) == world.doses
