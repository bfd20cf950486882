"""The agent's rules: who may list certificates, what may be signed, one batch at a time.

The service runs on the asyncio thread. It talks to the officer through ``UserInterface`` (Qt
dialogs, terminal prompts, or a scripted implementation that exists only in the tests) and to the
token through the token layer's ``Token`` contract, whose blocking calls it hands to a thread.
It knows nothing of WebSockets: the server gives it parsed requests and a ``send`` callable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from kyso.agent.config import AgentConfig, AllowedOrigin
from kyso.agent.manifest import BatchManifest, ReplayGuard, commitment, verify_manifest
from kyso.agent.pairing import ConsentMemory, PairingError, PairingManager
from kyso.agent.protocol import (
    PROTOCOL_VERSIONS,
    AgentState,
    Cancel,
    Cancelled,
    CertificatesReply,
    ErrorCode,
    Hello,
    HelloReply,
    ListCertificates,
    Progress,
    ProtocolError,
    Reply,
    Request,
    Sign,
    Signatures,
    SignResult,
    Stage,
    StateEvent,
    negotiate,
)
from kyso.agent.token import model as tm
from kyso.agent.token.monitor import DEFAULT_INTERVAL, PresenceMonitor, TokenPresence

log = logging.getLogger(__name__)

Send = Callable[[Reply], Coroutine[Any, Any, None]]
# A command's handler as ``handle`` calls it: (connection, request of its type, send).
Handler = Callable[["Connection", Any, Send], Coroutine[Any, Any, None]]
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class ConsentRequest:
    """Everything the consent-and-PIN dialog shows. All of it was verified by the agent."""

    origin: str
    certificate: tm.CertificateInfo
    manifest: BatchManifest
    pin_status: tm.PinStatus


@dataclass(frozen=True)
class BatchOutcome:
    """What the UI is told when a batch ends (for the 'last batch' line and the result)."""

    origin: str
    batch_id: str
    total: int
    signed: int
    error: ErrorCode | None
    finished_at: datetime


@dataclass(frozen=True)
class AgentStatus:
    """What the desktop app shows: the state, the present tokens and their certificates."""

    state: AgentState
    tokens: tuple[tm.TokenInfo, ...] = ()
    certificates: tuple[tm.CertificateInfo, ...] = ()


StateListener = Callable[[AgentStatus], None]


class UserInterface(Protocol):
    """How the service talks to the officer. Every method may be slow; none may raise.

    A question (``approve_origin``, ``ask_consent_and_pin``) is withdrawn by cancelling its
    coroutine when the page that caused it disconnects or cancels: the implementation must then
    close the question unanswered (and may tell the officer why), so other pages are served.
    """

    async def approve_origin(self, origin: str) -> bool:
        """Asks whether this origin may read the certificate list (once per agent run, or once
        for good when the service has a ``ConsentMemory``)."""
        ...

    async def ask_consent_and_pin(self, request: ConsentRequest) -> str | None:
        """Shows the batch and asks for the PIN; returns None when the officer declines."""
        ...

    def signing_progress(self, signed: int, total: int) -> None: ...

    def batch_finished(self, outcome: BatchOutcome) -> None: ...


class CancelSignal(threading.Event):
    """A ``threading.Event`` (the token worker polls it) that asyncio code can also await."""

    def __init__(self) -> None:
        super().__init__()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Event | None = None

    def set(self) -> None:
        super().set()
        loop, waiter = self._loop, self._waiter
        if loop is not None and waiter is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(waiter.set)

    async def wait_set(self) -> None:
        if self._waiter is None:
            self._waiter = asyncio.Event()
            self._loop = asyncio.get_running_loop()
        if self.is_set():
            return
        await self._waiter.wait()


@dataclass(eq=False)
class Connection:
    """Per-connection state, owned by the server and passed with every request."""

    origin: AllowedOrigin
    version: int | None = None
    running: dict[str, CancelSignal] = field(default_factory=dict)  # sign id -> cancel
    gone: CancelSignal = field(default_factory=CancelSignal)  # set when the page disconnects
    notify: Send | None = None  # sends unsolicited events (the server sets it)
    told_state: AgentState | None = None  # the state this page was last told (hello or event)


class AgentService:
    def __init__(
        self,
        config: AgentConfig,
        token: tm.Token,
        ui: UserInterface,
        replay_guard: ReplayGuard,
        clock: Callable[[], float] = time.time,
        *,
        hotplug_interval: float | None = DEFAULT_INTERVAL,
        pairing: PairingManager | None = None,
        consents: ConsentMemory | None = None,
    ) -> None:
        """``hotplug_interval``: seconds between two polls of the token slots (``start`` runs
        the monitor); None runs no monitor and ``hello`` asks the token each time.
        ``pairing``: the allowlist with the officer's paired origins and pairing requests;
        None allows the machine config's origins only.
        ``consents``: where the officer's "yes" to an origin is remembered across runs (the
        headless agent); None asks once per run."""
        self._config = config
        self.pairing = pairing
        self._consents = consents
        self._token = token
        self._ui = ui
        self._replays = replay_guard
        self._clock = clock
        self._approved_origins: set[str] = set()
        self._batch_lock = asyncio.Lock()
        self._origin_lock = asyncio.Lock()
        self._hotplug_interval = hotplug_interval
        self._monitor: PresenceMonitor | None = None
        self._presence: TokenPresence | None = None  # None: no monitor (yet)
        self._pages: list[Connection] = []  # connections that said hello
        self._state_listeners: list[StateListener] = []
        self._listeners_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.status = AgentStatus(AgentState.NO_TOKEN)
        self._handlers: dict[type[Request], Handler] = {
            Hello: self._on_hello,
            ListCertificates: self._on_list_certificates,
            Sign: self._on_sign,
            Cancel: self._on_cancel,
        }

    @property
    def busy(self) -> bool:
        return self._batch_lock.locked()

    def allowed_origin(self, origin_header: str) -> AllowedOrigin | None:
        """The allowlist entry equal to the ``Origin`` header byte for byte (threat 1)."""
        if self.pairing is not None:
            return self.pairing.allowed_origin(origin_header)
        return self._config.origin(origin_header)

    def origin_refused(self, origin_header: str) -> None:
        """The server refused a handshake from this origin: maybe a pairing request."""
        if self.pairing is not None:
            self.pairing.origin_refused(origin_header)

    # --- lifecycle and state (asyncio thread) --------------------------------------------------

    async def start(self) -> None:
        """Starts the hot-plug monitor (when configured) after reading the slots once."""
        self._loop = asyncio.get_running_loop()
        if self._hotplug_interval is None or self._monitor is not None:
            return
        loop = self._loop

        def changed(presence: TokenPresence) -> None:  # monitor thread
            loop.call_soon_threadsafe(self.token_changed, presence)

        monitor = PresenceMonitor(self._token, changed, interval=self._hotplug_interval)
        presence = await asyncio.to_thread(monitor.start)
        self._monitor = monitor
        self.token_changed(presence)

    async def close(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            await asyncio.to_thread(monitor.stop)

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        """Calls ``listener(status)`` on the asyncio thread now and at every change of the
        state, the tokens or their certificates. Callable from any thread; returns a function
        that removes the listener. A listener must be quick and must not raise."""
        with self._listeners_lock:
            self._state_listeners.append(listener)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._tell, listener, self.status)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._state_listeners:
                    self._state_listeners.remove(listener)

        return remove

    @staticmethod
    def _tell(listener: StateListener, status: AgentStatus) -> None:
        try:
            listener(status)
        except Exception:
            log.exception("a state listener failed")

    def _current_state(self) -> AgentState:
        if self.busy:
            return AgentState.BUSY
        if self._presence is None or not self._presence.present:
            return AgentState.NO_TOKEN
        return AgentState.READY

    def _page_state(self) -> AgentState:
        """What a page is told after an insertion or removal: a removal is always no_token."""
        if self._presence is not None and not self._presence.present:
            return AgentState.NO_TOKEN
        return AgentState.BUSY if self.busy else AgentState.READY

    def _publish(self) -> None:
        """Tells the state listeners (not the pages) about a change."""
        presence = self._presence or TokenPresence()
        status = AgentStatus(self._current_state(), presence.tokens, presence.certificates)
        if status == self.status:
            return
        self.status = status
        with self._listeners_lock:
            listeners = list(self._state_listeners)
        for listener in listeners:
            self._tell(listener, status)

    def token_changed(self, presence: TokenPresence) -> None:
        """A token was inserted or removed (asyncio thread). Listeners and pages are told."""
        for conn, event in self.state_changed(presence):
            assert conn.notify is not None
            asyncio.get_running_loop().create_task(conn.notify(event))

    # --- one handler per command --------------------------------------------------------------
    #
    # ``handle`` checks what holds for every request, then calls the command's handler (one
    # per request type, ``self._handlers``). The handlers of hello, cancel and state are
    # synchronous and do no I/O: they take the service's state and return what to send
    # (tests/agent/test_service.py calls them directly); ``_on_hello`` and ``_on_cancel`` only
    # send what they return. list_certificates and sign wait for the officer and the token, so
    # they are coroutines; the sign request's checks (``check_sign``) are synchronous too.

    def state_changed(self, presence: TokenPresence) -> list[tuple[Connection, StateEvent]]:
        """The ``state`` event: records the presence, tells the listeners, and returns the event
        each page that said hello must now be sent (only a state it was not told last).

        Pages hear only about insertions and removals, never about a batch starting or ending:
        another page's batch is none of their business (threat 16).
        """
        self._presence = presence
        self._publish()
        state = self._page_state()
        events = []
        for conn in self._pages:
            if conn.told_state is not state and conn.notify is not None:
                conn.told_state = state
                events.append((conn, StateEvent(state)))
        return events

    def hello(
        self, conn: Connection, request: Hello, token_present: bool | None = None
    ) -> list[Reply]:
        """The ``hello`` handler: the reply, then a ``state`` event if the presence the reply
        was computed from is already out of date. ``token_present`` is what the token said when
        no hot-plug monitor runs (``_on_hello`` asks it); it is unused otherwise.

        Before the officer approves the origin, nothing but version and state is revealed.
        """
        version = _negotiated(request)
        conn.version = version
        if self.busy:
            state = AgentState.BUSY
        elif self._presence is not None:
            state = AgentState.READY if self._presence.present else AgentState.NO_TOKEN
        else:
            state = AgentState.READY if token_present else AgentState.NO_TOKEN
        replies: list[Reply] = [HelloReply(request.id, version, state)]
        # Events only after the hello reply: from now on this page hears of state changes.
        if conn not in self._pages:
            self._pages.append(conn)
        conn.told_state = state
        if self._presence is not None and (state is AgentState.NO_TOKEN) == self._presence.present:
            conn.told_state = self._page_state()
            replies.append(StateEvent(conn.told_state))
        return replies

    def cancel(self, conn: Connection, request: Cancel) -> Cancelled:
        """The ``cancel`` handler: stops this page's running batch (or withdraws its dialog)."""
        cancel = conn.running.get(request.target)
        if cancel is None:
            raise ProtocolError(ErrorCode.NOTHING_TO_CANCEL, request.id)
        cancel.set()
        return Cancelled(request.id, request.target)

    async def handle(self, conn: Connection, request: Request, send: Send) -> None:
        """Answers one request; every failure becomes an error reply on this connection."""
        try:
            self._check_request(conn, request)
            await self._handlers[type(request)](conn, request, send)
        except ProtocolError as exc:
            await send(exc.reply())
        except Exception:
            log.exception("unexpected error while handling a %s request", type(request).__name__)
            await send(ProtocolError(ErrorCode.INTERNAL_ERROR, request.id).reply())

    def _check_request(self, conn: Connection, request: Request) -> None:
        """What holds for every request: the page is still allowed, and said hello first."""
        if (
            self.pairing is not None
            and self.pairing.allowed_origin(conn.origin.origin) is not conn.origin
        ):
            # The officer removed this page (or paired it again with another key) while it
            # stayed connected: what the handshake allowed no longer holds.
            self._approved_origins.discard(conn.origin.origin)
            raise ProtocolError(ErrorCode.ORIGIN_NOT_APPROVED, request.id)
        if conn.version is None and not isinstance(request, Hello):
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, request.id)

    def connection_closed(self, conn: Connection) -> None:
        """A page that goes away cancels its batch; what was delivered stays delivered."""
        if conn in self._pages:
            self._pages.remove(conn)
        conn.gone.set()  # withdraws a question this page is waiting for
        for cancel in conn.running.values():
            cancel.set()

    # --- hello and certificates --------------------------------------------------------------

    async def _on_hello(self, conn: Connection, request: Hello, send: Send) -> None:
        _negotiated(request)  # refused before the token is asked anything
        present = None
        if not self.busy and self._presence is None:
            present = await asyncio.to_thread(self._token_present)
        for reply in self.hello(conn, request, present):
            await send(reply)

    def _token_present(self) -> bool:
        try:
            return bool(self._token.present_tokens())
        except tm.TokenError:
            return False

    async def _on_list_certificates(
        self, conn: Connection, request: ListCertificates, send: Send
    ) -> None:
        await self._require_approved(conn, request.id)
        certificates = await self._call_token(request.id, self._token.list_certificates)
        await send(CertificatesReply(request.id, tuple(certificates)))

    async def _on_cancel(self, conn: Connection, request: Cancel, send: Send) -> None:
        await send(self.cancel(conn, request))

    async def _require_approved(self, conn: Connection, request_id: str) -> None:
        origin = conn.origin.origin
        if origin in self._approved_origins:
            return
        if self.pairing is not None and self.pairing.paired_in_this_run(origin):
            self._approved_origins.add(origin)  # pairing it was the officer's consent
            return
        consents = self._consents
        if consents is not None and await asyncio.to_thread(consents.remembered, conn.origin):
            self._approved_origins.add(origin)  # allowed in an earlier run, with this same key
            return
        if self._origin_lock.locked() or self.busy:
            raise ProtocolError(ErrorCode.BUSY, request_id)
        async with self._origin_lock:
            answered, approved = await _unless(self._ui.approve_origin(origin), conn.gone)
            if answered and approved:
                self._approved_origins.add(origin)
                if consents is not None:
                    await asyncio.to_thread(_remember, consents, conn.origin)
                return
        raise ProtocolError(ErrorCode.ORIGIN_NOT_APPROVED, request_id)

    # --- signing -----------------------------------------------------------------------------

    async def _on_sign(self, conn: Connection, request: Sign, send: Send) -> None:
        if self._batch_lock.locked() or self._origin_lock.locked():
            raise ProtocolError(ErrorCode.BUSY, request.id)
        try:
            async with self._batch_lock:
                self._publish()  # busy
                await self._sign_locked(conn, request, send)
        finally:
            self._publish()  # ready again (or no_token)

    async def _sign_locked(self, conn: Connection, request: Sign, send: Send) -> None:
        # Everything below up to the dialog is checked before any token operation.
        manifest = self.check_sign(conn, request)
        # One trip off the event loop for both token reads (each trip is two thread hand-overs).
        certificate, pin_status = await self._call_token(
            request.id, self._certificate_and_pin, request, manifest
        )
        if pin_status.locked:
            self._finished(conn, manifest, 0, ErrorCode.PIN_LOCKED)
            raise ProtocolError(ErrorCode.PIN_LOCKED, request.id, detail={"retries_left": 0})
        cancel = CancelSignal()
        conn.running[request.id] = cancel
        try:
            await send(Progress(request.id, Stage.CONSENT, 0, manifest.count))
            # A page that cancels or goes away withdraws its dialog: the officer is not left
            # with a question nobody waits for, and other pages are not kept BUSY by it.
            _, pin = await _unless(
                self._ui.ask_consent_and_pin(
                    ConsentRequest(conn.origin.origin, certificate, manifest, pin_status)
                ),
                cancel,
            )
            if pin is None or cancel.is_set():
                code = ErrorCode.CANCELLED if cancel.is_set() else ErrorCode.USER_DECLINED
                self._finished(conn, manifest, 0, code)
                raise ProtocolError(code, request.id, detail={"signed": 0})
            await send(Progress(request.id, Stage.SIGNING, 0, manifest.count))
            signed = await self._run_batch(conn, request, manifest, certificate, pin, cancel, send)
        finally:
            conn.running.pop(request.id, None)
        self._finished(conn, manifest, signed, None)
        await send(SignResult(request.id, manifest.batch_id, signed))

    def check_sign(self, conn: Connection, request: Sign) -> BatchManifest:
        """The sign request's checks before any token operation (synchronous, no I/O): the
        manifest's signature, audience and lifetime, that it matches the request, no replay."""
        manifest = verify_manifest(
            request.manifest,
            key=conn.origin.manifest_key,
            origin=conn.origin.origin,
            now=self._clock(),
            max_lifetime=self._config.manifest_max_lifetime_seconds,
            request_id=request.id,
        )

        def mismatch(name: str) -> ProtocolError:
            return ProtocolError(
                ErrorCode.MANIFEST_MISMATCH, request.id, detail={"field": name}, field=name
            )

        if manifest.certificate != request.certificate:
            raise mismatch("certificate")
        if manifest.algorithm is not request.algorithm:
            raise mismatch("algorithm")
        if manifest.count != len(request.digests):
            raise mismatch("count")
        if manifest.digests != commitment(request.digests):
            raise mismatch("digests")
        if self._replays.is_used(conn.origin.origin, manifest.batch_id):
            raise ProtocolError(ErrorCode.MANIFEST_REPLAYED, request.id)
        return manifest

    def _certificate_and_pin(
        self, request: Sign, manifest: BatchManifest
    ) -> tuple[tm.CertificateInfo, tm.PinStatus]:
        """Off the event loop: the manifest's certificate on the token, then its PIN flags."""
        certificate = self._find_certificate(request, manifest)
        return certificate, self._token.pin_status(certificate.token)

    def _find_certificate(self, request: Sign, manifest: BatchManifest) -> tm.CertificateInfo:
        certificates = self._token.list_certificates()
        for certificate in certificates:
            if certificate.fingerprint_sha256 == manifest.certificate:
                break
        else:
            raise ProtocolError(ErrorCode.CERTIFICATE_NOT_FOUND, request.id)
        if not certificate.can_sign_at(datetime.now(UTC)):
            raise ProtocolError(ErrorCode.CERTIFICATE_UNUSABLE, request.id, reason="validity")
        if manifest.algorithm.key_type != certificate.key_type:
            raise ProtocolError(ErrorCode.ALGORITHM_UNSUPPORTED, request.id)
        return certificate

    async def _run_batch(
        self,
        conn: Connection,
        request: Sign,
        manifest: BatchManifest,
        certificate: tm.CertificateInfo,
        pin: str,
        cancel: threading.Event,
        send: Send,
    ) -> int:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[int, list[bytes]] | None] = asyncio.Queue()
        total = manifest.count
        origin = conn.origin.origin
        # The worker hands chunks over through ``handed``; it wakes the loop only when no
        # wake-up is already on its way. Each wake-up is a write to the loop's self-pipe, and
        # the worker then waits for the GIL while the loop turns the chunk into a frame: when
        # the loop lags (a busy PC), the chunks queued meanwhile go with the one wake-up.
        handed: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        wake_lock = threading.Lock()
        waking = False

        def take_chunks() -> None:  # event loop
            nonlocal waking
            with wake_lock:
                waking = False
            while handed:
                chunks.put_nowait(handed.popleft())

        def on_chunk(offset: int, signatures: list[bytes]) -> None:  # token worker thread
            nonlocal waking
            handed.append((offset, signatures))
            with wake_lock:
                if waking:
                    return
                waking = True
            loop.call_soon_threadsafe(take_chunks)

        async def deliver() -> int:
            delivered = 0
            while (item := await chunks.get()) is not None:
                offset, signatures = item
                if delivered == 0:
                    # The batch id is spent the moment a signature leaves the agent (a file
                    # write: off the event loop).
                    await asyncio.to_thread(
                        self._replays.consume,
                        origin,
                        manifest.batch_id,
                        manifest.expires_at,
                        self._clock(),
                    )
                delivered = offset + len(signatures)
                # Each chunk is also the progress event: one message per 100 signatures.
                await send(Signatures(request.id, offset, tuple(signatures), total))
                self._ui.signing_progress(delivered, total)
            return delivered

        sender = asyncio.create_task(deliver())
        try:
            signed = await asyncio.to_thread(
                self._token.sign_batch,
                certificate,
                manifest.algorithm,
                request.digests,
                pin,
                on_chunk,
                cancel,
            )
        except tm.TokenError as exc:
            # The worker queued its last chunk before raising: deliver it before the error.
            loop.call_soon_threadsafe(chunks.put_nowait, None)
            delivered = await sender
            error = _token_error(exc, request.id, delivered)
            self._finished(conn, manifest, delivered, error.code)
            raise error from None
        finally:
            del pin
            if not sender.done():
                loop.call_soon_threadsafe(chunks.put_nowait, None)
        await sender
        return signed

    def _finished(
        self, conn: Connection, manifest: BatchManifest, signed: int, error: ErrorCode | None
    ) -> None:
        self._ui.batch_finished(
            BatchOutcome(
                origin=conn.origin.origin,
                batch_id=manifest.batch_id,
                total=manifest.count,
                signed=signed,
                error=error,
                finished_at=datetime.now(UTC),
            )
        )

    async def _call_token(
        self, request_id: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except tm.TokenError as exc:
            raise _token_error(exc, request_id, 0) from None


async def _unless(
    question: Coroutine[Any, Any, T], withdraw: CancelSignal
) -> tuple[bool, T | None]:
    """Awaits the officer's answer unless ``withdraw`` is set first, which cancels the question.

    Returns (True, answer), or (False, None) when the question was withdrawn unanswered.
    """
    ask = asyncio.ensure_future(question)
    stop = asyncio.ensure_future(withdraw.wait_set())
    try:
        await asyncio.wait({ask, stop}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        ask.cancel()
        raise
    finally:
        stop.cancel()
    if ask.done():
        return True, ask.result()
    ask.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ask
    return False, None


def _negotiated(request: Hello) -> int:
    version = negotiate(request.versions)
    if version is None:
        raise ProtocolError(
            ErrorCode.VERSION_UNSUPPORTED,
            request.id,
            detail={"supported": ",".join(map(str, PROTOCOL_VERSIONS))},
        )
    return version


def _token_error(exc: tm.TokenError, request_id: str, delivered: int) -> ProtocolError:
    """Maps the token layer's errors to the protocol's stable codes."""
    signed = {"signed": delivered}
    if isinstance(exc, tm.PinIncorrect):
        return ProtocolError(
            ErrorCode.PIN_INCORRECT,
            request_id,
            detail={"retries_left": exc.retries_left, **signed},
        )
    if isinstance(exc, tm.PinLocked):
        return ProtocolError(ErrorCode.PIN_LOCKED, request_id, detail={"retries_left": 0})
    simple: dict[type[tm.TokenError], ErrorCode] = {
        tm.PinInvalid: ErrorCode.PIN_INVALID,
        tm.TokenRemoved: ErrorCode.TOKEN_REMOVED,
        tm.SigningCancelled: ErrorCode.CANCELLED,
        tm.TokenNotPresent: ErrorCode.TOKEN_NOT_PRESENT,
        tm.CertificateNotFound: ErrorCode.CERTIFICATE_NOT_FOUND,
        tm.KeyMismatch: ErrorCode.KEY_MISMATCH,
    }
    for kind, code in simple.items():
        if isinstance(exc, kind):
            return ProtocolError(code, request_id, detail=signed, signed=delivered)
    log.warning(
        "token error: %s: %s (cause: %r)", type(exc).__name__, exc, getattr(exc, "cause", None)
    )
    return ProtocolError(ErrorCode.TOKEN_ERROR, request_id, detail=signed)


def _remember(consents: ConsentMemory, allowed: AllowedOrigin) -> None:
    """Stores the officer's yes; a keyring that fails only means being asked again next run."""
    try:
        consents.remember(allowed)
    except PairingError as exc:
        log.warning("cannot remember that %s was allowed: %s", allowed.origin, exc)
