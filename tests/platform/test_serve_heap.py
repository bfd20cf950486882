"""gunicorn workers settle their heap once their app is built (``ops.serve.settle_heap``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kyso.platform.ops import serve


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_worker_freezes_what_its_app_built_out_of_the_collectors_sight(
    unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve.logs, "configure", lambda: None)
    assert gc.get_freeze_count() == 0
    serve._post_worker_init(object())
    # Every module, class and function loaded so far is frozen: full collections skip them.
    assert gc.get_freeze_count() > 10_000
