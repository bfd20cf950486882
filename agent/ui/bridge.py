"""The service's ``UserInterface`` in Qt: asyncio thread in, Qt main thread out, and back.

The service calls these methods on the asyncio thread. Each one only emits a queued signal to
the ``Presenter`` (which lives on the Qt main thread and owns the dialogs) and, for questions,
awaits an asyncio future that the presenter completes through a thread-safe callback. Nothing
here ever blocks the event loop, and nothing on the asyncio thread touches a widget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from PySide6.QtCore import QObject, Qt, Signal

from kyso.agent.service import BatchOutcome, ConsentRequest

log = logging.getLogger(__name__)

T = TypeVar("T")
Reply = Callable[[T], None]


class Presenter(Protocol):
    """What the Qt side does with the service's questions; called on the Qt main thread only.

    ``reply`` may be called once, from the Qt thread; a second call is ignored.
    """

    def ask_origin(self, origin: str, reply: Reply[bool]) -> None: ...

    def ask_consent(self, request: ConsentRequest, reply: Reply[str | None]) -> None: ...

    def withdraw_question(self) -> None:
        """The service stopped waiting (agent stopping): close any open question unanswered."""
        ...

    def show_progress(self, signed: int, total: int) -> None: ...

    def show_outcome(self, outcome: BatchOutcome) -> None: ...


def _replier(loop: asyncio.AbstractEventLoop, future: asyncio.Future[T]) -> Reply[T]:
    def reply(value: T) -> None:
        def settle() -> None:
            if not future.done():
                future.set_result(value)

        # The loop is gone when the agent stopped while a dialog was open: nothing to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)

    return reply


class QtUserInterface(QObject):
    """Implements kyso.agent.service.UserInterface for the desktop app."""

    _origin_asked = Signal(str, object)
    _consent_asked = Signal(object, object)
    _withdrawn = Signal()
    _progressed = Signal(int, int)
    _finished = Signal(object)

    def __init__(self, presenter: Presenter) -> None:
        super().__init__()
        queued = Qt.ConnectionType.QueuedConnection
        self._origin_asked.connect(presenter.ask_origin, queued)
        self._consent_asked.connect(presenter.ask_consent, queued)
        self._withdrawn.connect(presenter.withdraw_question, queued)
        self._progressed.connect(presenter.show_progress, queued)
        self._finished.connect(presenter.show_outcome, queued)

    async def _ask(self, emit: Callable[[Reply[T]], None], default: T) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        try:
            emit(_replier(loop, future))
            return await future
        except asyncio.CancelledError:
            self._withdrawn.emit()
            raise
        except Exception:
            # The interface must not raise: an unexpected failure answers "no".
            log.exception("the desktop dialog failed")
            return default

    async def approve_origin(self, origin: str) -> bool:
        return await self._ask(lambda reply: self._origin_asked.emit(origin, reply), False)

    async def ask_consent_and_pin(self, request: ConsentRequest) -> str | None:
        return await self._ask(lambda reply: self._consent_asked.emit(request, reply), None)

    def signing_progress(self, signed: int, total: int) -> None:
        self._progressed.emit(signed, total)

    def batch_finished(self, outcome: BatchOutcome) -> None:
        self._finished.emit(outcome)
