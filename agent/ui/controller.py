"""The desktop app's state: listening or stopped, the token and its certificates, the last batch.

The controller lives on the Qt main thread. It starts and stops the agent's ``ServerThread``
(asyncio in its own thread) and tells the window and the tray through one signal. The token is
watched by the core's hot-plug monitor: while listening, the service's own (through its state
listener, called on the asyncio thread); while stopped, a ``PresenceMonitor`` of the
controller's (called on the monitor's thread). Both reach the Qt thread through a queued signal.
Qt-only glue: the rules stay in the service.

The Qt thread never waits for the token's driver (issue 18): loading it at launch (C_Initialize,
on a "kyso-driver-load" thread), starting the server (which reads the slots once), stopping it
and stopping a monitor run off the Qt thread; start and stop on one "control" worker thread, one
job after another. While a Start waits, the window says it is waiting for the USB token driver and
offers Cancel; after ``driver_timeout`` seconds it gives up with a message. A start that comes
back after it was given up is stopped at once, on the worker. A driver that answers its
C_Initialize only after the wait was given up is still taken (the window then shows the token and
Start works); one that answers after Quit is closed by its loading thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from PySide6.QtCore import QObject, Qt, QTimer, Signal

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
# How long Start waits for the token's driver (its first slot list) before giving up.
DRIVER_TIMEOUT_SECONDS = 30.0
# How long Quit waits for the control worker to stop the server; a driver that never answers
# only keeps its own (daemon) thread, never the window.
SHUTDOWN_SECONDS = 10.0


class TrayState(enum.Enum):
    """What the tray icon shows."""

    STOPPED = "stopped"
    LISTENING = "listening"
    NO_TOKEN = "no_token"  # listening, but no token is inserted
    SIGNING = "signing"  # a consent dialog or a batch is under way
    WAITING = "waiting"  # Start waits for the USB token's driver


class _ControlWorker:
    """One daemon thread running jobs in order (a ThreadPoolExecutor's thread is joined at
    interpreter exit, so a driver stuck forever would keep the process from ending)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self.thread = threading.Thread(target=self._run, name="kyso-control", daemon=True)
        self.thread.start()

    def submit(self, job: Callable[[], None]) -> threading.Event:
        """Queues ``job``; the event is set when it has run. RuntimeError once shut down."""
        if self._closed:
            raise RuntimeError("the control worker is shut down")
        done = threading.Event()
        self._jobs.put((job, done))
        return done

    def shutdown(self) -> None:
        """No more jobs; the thread ends after the queued ones."""
        self._closed = True
        self._jobs.put(None)

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done = item
            try:
                job()
            except Exception:
                log.exception("a start/stop job failed")
            finally:
                done.set()


class _Load:
    """The token layer being loaded on its own thread (C_Initialize may never return).

    The loading thread hands its result over with ``deliver``; Quit calls ``orphan``. Exactly one
    side closes the token: the controller when it was delivered first, else the loading thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orphaned = False
        self._result: tm.Token | BaseException | None = None

    def deliver(self, result: tm.Token | BaseException) -> bool:
        """Loading thread: False when Quit came first (the caller closes what it loaded)."""
        with self._lock:
            if self._orphaned:
                return False
            self._result = result
            return True

    def orphan(self) -> tm.Token | BaseException | None:
        """Qt thread, at Quit: what was delivered already (to close), None when still loading."""
        with self._lock:
            self._orphaned = True
            return self._result

    @property
    def orphaned(self) -> bool:
        with self._lock:
            return self._orphaned


class _Attempt:
    """One press of Start: the server thread it starts, and whether it was given up."""

    def __init__(self, thread: ServerThread) -> None:
        self.thread = thread
        self.abandoned = threading.Event()


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
    # (watcher generation, TokenSnapshot), from a monitor, the first poll or the asyncio thread
    _snapshot_read = Signal(object, object)
    # (_Attempt, port | BaseException), from the control worker
    _start_done = Signal(object, object)
    # (_Load, Token | BaseException), from the loading thread
    _load_done = Signal(object, object)
    _stop_done = Signal()

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
        driver_timeout: float = DRIVER_TIMEOUT_SECONDS,
        load_token: Callable[[], tm.Token] | None = None,
    ) -> None:
        """``load_token`` (instead of ``token``) loads the token layer on a thread of its own:
        the window shows and answers while the driver's C_Initialize runs, however long."""
        super().__init__()
        self.pairing = pairing
        self.config = config
        self.token = token
        self.module = module
        self.module_error = module_error  # why no token layer could be loaded
        self._ui = ui
        self._port = port
        self._thread: ServerThread | None = None
        self._attempt: _Attempt | None = None  # a Start waiting for the driver
        self._loading: _Load | None = None  # the token layer being loaded (launch)
        self._wait_for_load = False  # the window waits for that load (Cancel gives up)
        self._start_after_load = False  # Start was asked for during the load
        self._owns_token = False  # loaded here: closed by release_token
        self.listening_port: int | None = None
        self.start_error: Text | None = None
        self.snapshot = TokenSnapshot()
        self.last_outcome: BatchOutcome | None = None
        self.signing = False
        self.driver_timeout = driver_timeout
        self._hotplug_interval = hotplug_interval
        # Every job that may wait for the driver or for a thread, one after another: a Start
        # runs after the Stop before it, so the port is free again.
        self._control = _ControlWorker()
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.timeout.connect(self._give_up)
        queued = Qt.ConnectionType.QueuedConnection
        self._snapshot_read.connect(self._take_snapshot, queued)
        self._start_done.connect(self._started, queued)
        self._stop_done.connect(self._stopped, queued)
        self._load_done.connect(self._loaded, queued)
        self._generation = 0  # snapshots of an older watcher are stale
        self._monitor: PresenceMonitor | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._closing = False
        if token is None and load_token is not None:
            self._load(load_token)
        self._watch_while_stopped()

    # --- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _emitter(signal_emit: Callable[..., None]) -> Callable[..., None]:
        """A signal's ``emit`` for worker threads: harmless once the controller is gone."""

        def emit(*args: object) -> None:
            with contextlib.suppress(RuntimeError):  # the C++ object was deleted
                signal_emit(*args)

        return emit

    def _submit(self, job: Callable[[], None]) -> None:
        """Runs ``job`` on the control worker; on a daemon thread once that is shut down."""
        try:
            self._control.submit(job)
        except RuntimeError:  # after Quit: nothing waits for it any more
            threading.Thread(target=job, name="kyso-control-late", daemon=True).start()

    # --- loading the token layer (launch) ---------------------------------------------------

    def _load(self, load_token: Callable[[], tm.Token]) -> None:
        load = _Load()
        self._loading = load
        self._wait_for_load = True
        emit = self._emitter(self._load_done.emit)

        def run() -> None:  # its own daemon thread: C_Initialize may hang for ever
            result: tm.Token | BaseException
            try:
                result = load_token()
            except Exception as exc:
                result = exc
            if load.deliver(result):
                emit(load, result)
            elif not isinstance(result, BaseException):
                log.info("the token's driver answered after Quit: closing it")
                result.close()

        threading.Thread(target=run, name="kyso-driver-load", daemon=True).start()
        self._deadline.start(max(1, round(self.driver_timeout * 1000)))

    @property
    def loading(self) -> bool:
        """The token layer is still being loaded (its driver's C_Initialize has not returned)."""
        return self._loading is not None

    def _loaded(self, load: _Load, result: tm.Token | BaseException) -> None:
        if load is not self._loading or load.orphaned:
            return  # Quit came first: shutdown took care of it
        self._loading = None
        waited, start = self._wait_for_load, self._start_after_load
        self._wait_for_load = self._start_after_load = False
        if waited and self._attempt is None:
            self._deadline.stop()
        if isinstance(result, BaseException):
            log.error("the token's driver could not be loaded: %s", result)
            self.module_error = i18n.text(
                "cli.module_load_failed", module=self.module, error=result
            )
            if start:
                self.start_error = self.module_error
        else:
            if not waited:
                log.warning("the token's driver answered after the wait was given up")
            self.token = result
            self._owns_token = True
            if start:
                self.start()
            else:
                self._watch_while_stopped()
        self.changed.emit()

    def release_token(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        """After ``shutdown``: closes the token layer this controller loaded, on a helper thread.

        False when a driver is still inside a call (its load, or a call the close waits for)
        after ``timeout`` seconds: the process must then end without waiting for that thread.
        """
        if self._loading is not None:
            return False  # C_Initialize has not returned: its thread closes what it gets
        token, self.token = (self.token, None) if self._owns_token else (None, self.token)
        if token is None:
            return True
        closer = threading.Thread(target=token.close, name="kyso-token-close", daemon=True)
        closer.start()
        closer.join(timeout)
        return not closer.is_alive()

    # --- the token, listening or not -------------------------------------------------------

    def _watch_while_stopped(self) -> None:
        """Runs a monitor of our own (the service's runs only while listening)."""
        if (
            self.token is None
            or self._monitor is not None
            or self._closing
            or self._thread is not None
            or self._attempt is not None
        ):
            return
        self._generation += 1
        generation, emit = self._generation, self._emitter(self._snapshot_read.emit)
        monitor = PresenceMonitor(
            self.token,
            lambda p: emit(generation, TokenSnapshot.of(p)),
            interval=self._hotplug_interval,
        )
        self._monitor = monitor

        def first_poll() -> None:  # off the Qt thread: the driver may take its time, or hang
            try:
                emit(generation, TokenSnapshot.of(monitor.start()))
            except (tm.TokenError, RuntimeError) as exc:
                log.warning("cannot watch the token: %s", exc)

        threading.Thread(target=first_poll, name="kyso-first-poll", daemon=True).start()

    def _stop_watching(self) -> None:
        """Retires the stopped-state monitor; its thread ends on the control worker."""
        self._generation += 1  # whatever it still reports is stale
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            self._submit(monitor.stop)

    # --- state -----------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._thread is not None

    @property
    def waiting(self) -> bool:
        """The window waits for the token's driver: its load at launch, or a Start (Cancel gives
        up)."""
        return self._attempt is not None or self._wait_for_load

    @property
    def status(self) -> TrayState:
        if self.waiting:
            return TrayState.WAITING
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

    def _take_snapshot(self, generation: int, snapshot: TokenSnapshot) -> None:
        if generation != self._generation:
            return  # from a monitor that was stopped meanwhile
        self.snapshot = snapshot
        self.changed.emit()

    def set_signing(self, signing: bool) -> None:
        if signing != self.signing:
            self.signing = signing
            self.changed.emit()

    def record_outcome(self, outcome: BatchOutcome) -> None:
        self.last_outcome = outcome
        if self.snapshot.busy:
            # The batch is over: the service's own "ready" comes through another queued signal,
            # after the page got its result; until then the tray would still say "signing".
            self.snapshot = dataclasses.replace(self.snapshot, busy=False)
        self.changed.emit()

    # --- start / stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Starts listening, off the Qt thread; ``changed`` tells how it went.

        ``waiting`` is true until the server listens (``listening``) or fails (``start_error``):
        when the token layer is missing, the port is taken, the driver does not answer within
        ``driver_timeout`` seconds, or the officer pressed Cancel.
        """
        if self._thread is not None or self._attempt is not None or self._closing:
            return
        token = self.token
        if token is None and self._loading is not None:
            # The driver's C_Initialize has not returned yet: wait for it (again, after a
            # Cancel or a timeout); the server starts when it has.
            self._start_after_load = True
            if not self._wait_for_load:
                self._wait_for_load = True
                self.start_error = None
                self._deadline.start(max(1, round(self.driver_timeout * 1000)))
            self.changed.emit()
            return
        if token is None:
            self.start_error = self.module_error
            self.changed.emit()
            return
        config, ui, interval, pairing = self.config, self._ui, self._hotplug_interval, self.pairing
        guard = ReplayGuard(config.state_dir / "used-batches.json")

        def make_service() -> DesktopService:
            return DesktopService(
                config, token, ui, guard, hotplug_interval=interval, pairing=pairing
            )

        attempt = _Attempt(ServerThread(config, make_service, port=self._port))
        self._attempt = attempt
        self.start_error = None
        self._stop_watching()  # the service's monitor takes over
        emit = self._emitter(self._start_done.emit)

        def start_server() -> None:  # control worker: waits for the driver's first answer
            result: int | BaseException
            try:
                result = attempt.thread.start()
            except Exception as exc:
                result = exc
            if isinstance(result, int) and attempt.abandoned.is_set():
                log.info("the token's driver answered after Start was given up: stopping")
                attempt.thread.stop()
                return
            emit(attempt, result)

        self._submit(start_server)
        self._deadline.start(max(1, round(self.driver_timeout * 1000)))
        self.changed.emit()

    def _started(self, attempt: _Attempt, result: int | BaseException) -> None:
        if attempt is not self._attempt:  # given up meanwhile (Cancel, timeout or Quit)
            if isinstance(result, int):
                self._submit(attempt.thread.stop)
            return
        self._attempt = None
        self._deadline.stop()
        if isinstance(result, int):
            self._thread = attempt.thread
            self.listening_port = result
            self.start_error = None
            service = self.service
            assert service is not None
            self._generation += 1
            generation, emit = self._generation, self._emitter(self._snapshot_read.emit)
            self._remove_listener = service.add_state_listener(
                lambda status: emit(generation, TokenSnapshot.of(status))
            )
        else:
            if isinstance(result, PortInUse):
                log.warning("port %d is taken", result.port)
                self.start_error = result.text
            elif isinstance(result, OSError):
                log.warning("could not listen: %s", result)
                self.start_error = i18n.text(
                    "ui.listen_failed",
                    port=self._port or self.config.port,
                    error=result.strerror or result,
                )
            else:
                log.error("could not start: %r", result)
                self.start_error = i18n.text("ui.start_failed", error=result)
            self._watch_while_stopped()
        self.changed.emit()

    def _abandon(self, error: Text | None) -> bool:
        attempt, self._attempt = self._attempt, None
        waited, self._wait_for_load = self._wait_for_load, False
        self._start_after_load = False
        if attempt is None and not waited:
            return False
        if attempt is not None:
            attempt.abandoned.set()
        self._deadline.stop()
        self.start_error = error
        self.changed.emit()
        return True

    def cancel_start(self) -> None:
        """The officer's Cancel while Start waits for the driver."""
        if self._abandon(i18n.text("ui.driver_cancelled")):
            log.warning("Start cancelled while waiting for the token's driver")

    def _give_up(self) -> None:
        seconds = round(self.driver_timeout)
        if self._abandon(i18n.text("ui.driver_timeout", seconds=seconds)):
            log.warning("the token's driver did not answer within %d s", seconds)

    def stop(self) -> None:
        """Stops listening: at once for the window, the server thread ends on the worker."""
        thread, self._thread = self._thread, None
        remove, self._remove_listener = self._remove_listener, None
        if remove is not None:
            remove()
        self._generation += 1  # the service's last reports are stale
        if thread is not None:
            emit = self._emitter(self._stop_done.emit)

            def stop_server() -> None:
                thread.stop()
                emit()

            self._submit(stop_server)
        self.listening_port = None
        self.signing = False
        self.changed.emit()

    def _stopped(self) -> None:
        self._watch_while_stopped()

    def cancel_signing(self) -> None:
        """The officer's Cancel during a batch: stops it between two signatures."""
        service = self.service
        if service is not None:
            service.cancel_running()

    def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        """Quit: stops everything; True when it all ended within ``timeout`` seconds.

        A driver stuck in a call keeps only its own thread; everything else has ended (or, for
        a start still waiting for that driver, stops itself when the driver answers).
        """
        self._closing = True
        self._abandon(None)
        load, self._loading = self._loading, None
        if load is not None:
            delivered = load.orphan()
            if delivered is None:
                self._loading = load  # still inside C_Initialize: release_token says so
            elif not isinstance(delivered, BaseException):
                self.token, self._owns_token = delivered, True  # closed by release_token
        self.stop()
        self._stop_watching()
        self._control.shutdown()
        self._control.thread.join(timeout=timeout)
        if self._control.thread.is_alive():
            log.warning("Quit: the token's driver still does not answer; not waiting for it")
            return False
        return True
