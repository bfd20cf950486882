"""The desktop app's state: listening or stopped, the token and its certificates, the last batch.

The controller lives on the Qt main thread. It starts and stops the agent's ``ServerThread``
(asyncio in its own thread) and tells the window and the tray through one signal. The token is
watched by the core's hot-plug monitor: while listening, the service's own (through its state
listener, called on the asyncio thread); while stopped, a ``PresenceMonitor`` of the
controller's (called on the monitor's thread). Both reach the Qt thread through a queued signal.
Qt-only glue: the rules stay in the service.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from PySide6.QtCore import QObject, Qt, Signal

from kyso.agent import i18n
from kyso.agent.config import AgentConfig
from kyso.agent.i18n import Text
from kyso.agent.manifest import ReplayGuard
from kyso.agent.pairing import PairingManager
from kyso.agent.protocol import AgentState, Request
from kyso.agent.server import PortInUse, ServerThread
from kyso.agent.service import (
    AgentService,
    AgentStatus,
    BatchOutcome,
    Connection,
    Send,
    UserInterface,
)
from kyso.agent.token import model as tm
from kyso.agent.token.monitor import DEFAULT_INTERVAL, PresenceMonitor, TokenPresence

log = logging.getLogger(__name__)

HOTPLUG_SECONDS = DEFAULT_INTERVAL  # insertion and removal show within 2 s


class TrayState(enum.Enum):
    """What the tray icon shows."""

    STOPPED = "stopped"
    LISTENING = "listening"
    NO_TOKEN = "no_token"  # listening, but no token is inserted
    SIGNING = "signing"  # a consent dialog or a batch is under way


@dataclass(frozen=True)
class TokenSnapshot:
    """The tokens inserted now and their certificates (from the hot-plug monitor)."""

    tokens: tuple[tm.TokenInfo, ...] = ()
    certificates: tuple[tm.CertificateInfo, ...] = ()
    busy: bool = False  # the service is in a batch (checks, dialog or signing)
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(cls, source: TokenPresence | AgentStatus) -> TokenSnapshot:
        busy = isinstance(source, AgentStatus) and source.state is AgentState.BUSY
        return cls(source.tokens, source.certificates, busy)

    @property
    def present(self) -> bool:
        return bool(self.tokens)

    @property
    def signing_certificates(self) -> tuple[tm.CertificateInfo, ...]:
        now = datetime.now(UTC)
        return tuple(c for c in self.certificates if c.can_sign_at(now))


class DesktopService(AgentService):
    """The service, plus a way for the officer's Cancel button to stop the running batch.

    It remembers the open connections (the service is given each one with every request) so
    that ``cancel_running`` can set their batches' cancel events, exactly as a page's ``cancel``
    or a closed page does. ``cancel_running`` may be called from the Qt thread: it only copies
    the dicts (one atomic step under the GIL) and sets threading.Events.
    """

    def __init__(
        self,
        config: AgentConfig,
        token: tm.Token,
        ui: UserInterface,
        replay_guard: ReplayGuard,
        *,
        hotplug_interval: float = HOTPLUG_SECONDS,
        pairing: PairingManager | None = None,
    ) -> None:
        super().__init__(
            config, token, ui, replay_guard, hotplug_interval=hotplug_interval, pairing=pairing
        )
        self._connections: dict[int, Connection] = {}

    async def handle(self, conn: Connection, request: Request, send: Send) -> None:
        self._connections[id(conn)] = conn
        await super().handle(conn, request, send)

    def connection_closed(self, conn: Connection) -> None:
        self._connections.pop(id(conn), None)
        super().connection_closed(conn)

    def cancel_running(self) -> None:
        for conn in list(self._connections.values()):
            for cancel in list(conn.running.values()):
                cancel.set()


class AgentController(QObject):
    """Start/Stop, the token state and the last batch, for the window and the tray."""

    changed = Signal()
    _snapshot_read = Signal(object)

    def __init__(
        self,
        config: AgentConfig,
        token: tm.Token | None,
        ui: UserInterface,
        *,
        module: str | None = None,
        module_error: Text | None = None,
        port: int | None = None,
        hotplug_interval: float = HOTPLUG_SECONDS,
        pairing: PairingManager | None = None,
    ) -> None:
        super().__init__()
        self.pairing = pairing
        self.config = config
        self.token = token
        self.module = module
        self.module_error = module_error  # why no token layer could be loaded
        self._ui = ui
        self._port = port
        self._thread: ServerThread | None = None
        self.listening_port: int | None = None
        self.start_error: Text | None = None
        self.snapshot = TokenSnapshot()
        self.last_outcome: BatchOutcome | None = None
        self.signing = False
        self._hotplug_interval = hotplug_interval
        self._snapshot_read.connect(self._take_snapshot, Qt.ConnectionType.QueuedConnection)
        self._monitor: PresenceMonitor | None = None
        self._first_poll: threading.Thread | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._closing = False
        self._watch_while_stopped()

    # --- the token, listening or not -------------------------------------------------------

    def _watch_while_stopped(self) -> None:
        """Runs a monitor of our own (the service's runs only while listening)."""
        if self.token is None or self._monitor is not None or self._closing:
            return
        emit = self._snapshot_read.emit
        monitor = PresenceMonitor(
            self.token, lambda p: emit(TokenSnapshot.of(p)), interval=self._hotplug_interval
        )
        self._monitor = monitor

        def first_poll() -> None:  # off the Qt thread: listing certificates may take a while
            try:
                emit(TokenSnapshot.of(monitor.start()))
            except (tm.TokenError, RuntimeError) as exc:
                log.warning("cannot watch the token: %s", exc)

        self._first_poll = threading.Thread(target=first_poll, name="kyso-first-poll", daemon=True)
        self._first_poll.start()

    def _stop_watching(self) -> None:
        # The first poll and the monitor emit on this object: both end before it may go away.
        first_poll, self._first_poll = self._first_poll, None
        if first_poll is not None:
            first_poll.join(timeout=30)
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()

    # --- state -----------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._thread is not None

    @property
    def status(self) -> TrayState:
        if not self.listening:
            return TrayState.STOPPED
        if self.signing or self.snapshot.busy:
            return TrayState.SIGNING
        if not self.snapshot.present:
            return TrayState.NO_TOKEN
        return TrayState.LISTENING

    @property
    def service(self) -> DesktopService | None:
        if self._thread is None or self._thread.service is None:
            return None
        service = self._thread.service
        assert isinstance(service, DesktopService)
        return service

    def _take_snapshot(self, snapshot: TokenSnapshot) -> None:
        self.snapshot = snapshot
        self.changed.emit()

    def set_signing(self, signing: bool) -> None:
        if signing != self.signing:
            self.signing = signing
            self.changed.emit()

    def record_outcome(self, outcome: BatchOutcome) -> None:
        self.last_outcome = outcome
        self.changed.emit()

    # --- start / stop ----------------------------------------------------------------------

    def start(self) -> bool:
        """Starts listening; False (with ``start_error``) when the token layer or port fails."""
        if self._thread is not None:
            return True
        token = self.token
        if token is None:
            self.start_error = self.module_error
            self.changed.emit()
            return False
        config, ui, interval, pairing = self.config, self._ui, self._hotplug_interval, self.pairing
        guard = ReplayGuard(config.state_dir / "used-batches.json")

        def make_service() -> DesktopService:
            return DesktopService(
                config, token, ui, guard, hotplug_interval=interval, pairing=pairing
            )

        thread = ServerThread(config, make_service, port=self._port)
        self._stop_watching()  # the service's monitor takes over
        try:
            self.listening_port = thread.start()
        except PortInUse as exc:
            log.warning("port %d is taken", exc.port)
            self.start_error = exc.text
        except OSError as exc:
            log.warning("could not listen: %s", exc)
            self.start_error = i18n.text(
                "ui.listen_failed", port=self._port or self.config.port, error=exc.strerror or exc
            )
        else:
            self._thread = thread
            self.start_error = None
            service = self.service
            assert service is not None
            emit = self._snapshot_read.emit
            self._remove_listener = service.add_state_listener(
                lambda status: emit(TokenSnapshot.of(status))
            )
            self.changed.emit()
            return True
        self._watch_while_stopped()
        self.changed.emit()
        return False

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        remove, self._remove_listener = self._remove_listener, None
        if remove is not None:
            remove()
        if thread is not None:
            thread.stop()
            self._watch_while_stopped()
        self.listening_port = None
        self.signing = False
        self.changed.emit()

    def cancel_signing(self) -> None:
        """The officer's Cancel during a batch: stops it between two signatures."""
        service = self.service
        if service is not None:
            service.cancel_running()

    def shutdown(self) -> None:
        self._closing = True
        self.stop()
        self._stop_watching()
