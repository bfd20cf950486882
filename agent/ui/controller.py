"""The desktop app's state: listening or stopped, the token and its certificates, the last batch.

The controller lives on the Qt main thread. It starts and stops the agent's ``ServerThread``
(asyncio in its own thread), watches the token from a small background thread (the token's own
worker runs the PKCS#11 calls), and tells the window and the tray through one signal. Qt-only
glue: the rules stay in the service.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from PySide6.QtCore import QObject, Qt, Signal

from kyso.agent.config import AgentConfig
from kyso.agent.i18n import Text
from kyso.agent.manifest import ReplayGuard
from kyso.agent.protocol import Request
from kyso.agent.server import PortInUse, ServerThread
from kyso.agent.service import (
    AgentService,
    BatchOutcome,
    Connection,
    Send,
    UserInterface,
)
from kyso.agent.token import model as tm

log = logging.getLogger(__name__)

TOKEN_POLL_SECONDS = 1.0  # insertion and removal show within 2 s


class TrayState(enum.Enum):
    """What the tray icon shows."""

    STOPPED = "stopped"
    LISTENING = "listening"
    NO_TOKEN = "no_token"  # listening, but no token is inserted
    SIGNING = "signing"  # a consent dialog or a batch is under way


@dataclass(frozen=True)
class TokenSnapshot:
    """The tokens inserted now and their certificates that can sign today."""

    tokens: tuple[tm.TokenInfo, ...] = ()
    certificates: tuple[tm.CertificateInfo, ...] = ()
    error: str | None = None  # a token layer failure, in English for the logs/diagnostics
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))

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
    ) -> None:
        super().__init__(config, token, ui, replay_guard)
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


class TokenWatch:
    """Polls the token for insertion and removal from a daemon thread; calls back on change."""

    def __init__(
        self,
        token: tm.Token,
        changed: Callable[[TokenSnapshot], None],
        interval: float = TOKEN_POLL_SECONDS,
    ) -> None:
        self._token = token
        self._changed = changed
        self._interval = interval
        self._stop = threading.Event()
        self._refresh = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kyso-token-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def refresh(self) -> None:
        """Re-read the certificates at the next tick (after a batch, or on request)."""
        self._refresh.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        last: tuple[tm.TokenInfo, ...] | None = None
        last_error: str | None = None
        while not self._stop.is_set():
            try:
                tokens = tuple(self._token.present_tokens())
                error = None
            except tm.TokenError as exc:
                tokens, error = (), f"{type(exc).__name__}: {exc}"
            if tokens != last or error != last_error or self._refresh.is_set():
                self._refresh.clear()
                certificates: tuple[tm.CertificateInfo, ...] = ()
                if tokens:
                    try:
                        certificates = tuple(self._token.list_certificates())
                    except tm.TokenError as exc:
                        error = f"{type(exc).__name__}: {exc}"
                last, last_error = tokens, error
                self._changed(TokenSnapshot(tokens, certificates, error))
            self._stop.wait(self._interval)


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
        watch_interval: float = TOKEN_POLL_SECONDS,
    ) -> None:
        super().__init__()
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
        self._snapshot_read.connect(self._take_snapshot, Qt.ConnectionType.QueuedConnection)
        self._watch: TokenWatch | None = None
        if token is not None:
            self._watch = TokenWatch(token, self._snapshot_read.emit, watch_interval)
            self._watch.start()

    # --- state -----------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._thread is not None

    @property
    def status(self) -> TrayState:
        if not self.listening:
            return TrayState.STOPPED
        if self.signing:
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
        if self._watch is not None:
            self._watch.refresh()  # a wrong PIN changes the token's PIN flags
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
        config, ui = self.config, self._ui
        guard = ReplayGuard(config.state_dir / "used-batches.json")
        thread = ServerThread(
            config, lambda: DesktopService(config, token, ui, guard), port=self._port
        )
        try:
            self.listening_port = thread.start()
        except PortInUse as exc:
            log.warning("port %d is taken", exc.port)
            self.start_error = exc.text
            self.changed.emit()
            return False
        except OSError as exc:
            log.warning("could not listen: %s", exc)
            self.start_error = Text(vi=str(exc), en=str(exc))
            self.changed.emit()
            return False
        self._thread = thread
        self.start_error = None
        self.changed.emit()
        return True

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop()
        self.listening_port = None
        self.signing = False
        self.changed.emit()

    def cancel_signing(self) -> None:
        """The officer's Cancel during a batch: stops it between two signatures."""
        service = self.service
        if service is not None:
            service.cancel_running()

    def shutdown(self) -> None:
        self.stop()
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
