"""The WebSocket server on loopback: handshake checks, limits and the message loop.

Security rules enforced here, before the service sees anything (threats 1, 2, 12, 16):
- listen on 127.0.0.1 and ::1 only, on the configured port; a taken port is an error, never a
  reason to pick another;
- the ``Host`` header must name a loopback host with our port (DNS rebinding);
- the ``Origin`` header must equal an allowed origin exactly (cross-site WebSocket hijacking);
- message size, connection count and pending requests per connection are capped;
- a connection that says no hello within ``hello_timeout_seconds`` of opening, or sends nothing
  for ``idle_timeout_seconds`` while none of its requests runs, is closed (4001, 4002), so a
  local program cannot hold the connection cap and lock the officer's page out (threat 17);
- only text frames; every failure becomes an error reply on the requesting connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from http import HTTPStatus
from typing import Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kyso.agent import i18n
from kyso.agent.config import AgentConfig
from kyso.agent.errors import AgentError
from kyso.agent.protocol import (
    ErrorCode,
    ListCertificates,
    ProtocolError,
    Reply,
    Sign,
    parse_request,
    serialize_utf8,
)
from kyso.agent.service import AgentService, Connection

log = logging.getLogger(__name__)

LOOPBACK_HOSTS: Final = ("127.0.0.1", "::1")
MAX_PENDING_PER_CONNECTION: Final = 4
# WebSocket close codes (private range, protocol.md 1) and their reasons.
CLOSE_NO_HELLO: Final = 4001
REASON_NO_HELLO: Final = "no hello in time"
CLOSE_IDLE: Final = 4002
REASON_IDLE: Final = "idle"


class PortInUse(AgentError):
    """Another program listens on the agent's port. The agent stops rather than move."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.port = port
        self.text = i18n.text("server.port_in_use", port=port)


class AgentServer:
    """One asyncio server per loopback address, sharing one service."""

    def __init__(self, config: AgentConfig, service: AgentService, port: int | None = None):
        self._config = config
        self._service = service
        self._requested_port = config.port if port is None else port
        self._servers: list[Server] = []
        self.port = 0

    @property
    def connection_count(self) -> int:
        return sum(len(s.connections) for s in self._servers)

    async def start(self) -> int:
        """Binds and starts serving. Returns the port (useful when started with port 0)."""
        sockets = _bind_loopback(self._requested_port)
        self.port = sockets[0].getsockname()[1]
        for sock in sockets:
            self._servers.append(
                await serve(
                    self._handler,
                    sock=sock,
                    process_request=self._check_handshake,
                    compression=None,
                    max_size=self._config.max_message_bytes,
                    max_queue=4,
                    open_timeout=5,
                    server_header=None,
                )
            )
        log.info("listening on port %d", self.port)
        return self.port

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        hosts = request.headers.get_all("Host")
        if len(hosts) != 1 or hosts[0].lower() not in self._allowed_hosts():
            log.warning("refused a handshake with Host %r", hosts[:1])
            return connection.respond(HTTPStatus.FORBIDDEN, "Host not allowed\n")
        origins = request.headers.get_all("Origin")
        if len(origins) != 1 or self._service.allowed_origin(origins[0]) is None:
            log.warning("refused a handshake from origin %r", origins[:1])
            if len(origins) == 1:
                # Only recorded for the officer to consider: the page is refused regardless.
                self._service.origin_refused(origins[0])
            return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed\n")
        if self.connection_count >= self._config.max_connections:
            log.warning("refused a connection: %d open", self.connection_count)
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections\n")
        return None

    def _allowed_hosts(self) -> frozenset[str]:
        port = self.port
        return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})

    async def _handler(self, websocket: ServerConnection) -> None:
        origin = self._service.allowed_origin(websocket.request.headers["Origin"])  # type: ignore[union-attr]
        assert origin is not None  # checked during the handshake
        pending: set[asyncio.Task[None]] = set()

        async def send(reply: Reply) -> None:
            with contextlib.suppress(ConnectionClosed):
                # A text frame from UTF-8 bytes: no str -> bytes copy of every chunk.
                await websocket.send(serialize_utf8(reply), text=True)

        conn = Connection(origin, notify=send)

        log.info("page connected from %s", origin.origin)
        loop = asyncio.get_running_loop()
        hello_deadline = loop.time() + self._config.hello_timeout_seconds
        last_activity = loop.time()  # last message, or last request finished

        def request_finished(task: asyncio.Task[None]) -> None:
            nonlocal last_activity
            pending.discard(task)
            last_activity = loop.time()

        try:
            while True:
                if conn.version is None:
                    deadline = hello_deadline
                else:
                    deadline = last_activity + self._config.idle_timeout_seconds
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await websocket.recv()
                except TimeoutError:
                    if conn.version is None:
                        log.warning("closed a connection from %s: no hello", origin.origin)
                        await websocket.close(CLOSE_NO_HELLO, REASON_NO_HELLO)
                        break
                    if pending:
                        # A batch, dialog or list is running: never dropped for silence. The
                        # idle time counts again from when the last request finishes.
                        last_activity = loop.time()
                        continue
                    if loop.time() < last_activity + self._config.idle_timeout_seconds:
                        continue  # a request finished meanwhile
                    log.info("closed an idle connection from %s", origin.origin)
                    await websocket.close(CLOSE_IDLE, REASON_IDLE)
                    break
                last_activity = loop.time()
                if not isinstance(message, str):
                    await send(ProtocolError(ErrorCode.BAD_MESSAGE, reason="binary").reply())
                    continue
                try:
                    request = parse_request(message, batch_cap=self._config.batch_cap)
                except ProtocolError as exc:
                    await send(exc.reply())
                    continue
                if not isinstance(request, Sign | ListCertificates):
                    # Quick requests run in order, so a hello is done before the next message.
                    await self._service.handle(conn, request, send)
                elif len(pending) >= MAX_PENDING_PER_CONNECTION:
                    await send(ProtocolError(ErrorCode.BUSY, request.id).reply())
                else:
                    task = asyncio.create_task(self._service.handle(conn, request, send))
                    pending.add(task)
                    task.add_done_callback(request_finished)
        except ConnectionClosed:
            pass
        finally:
            log.info("page from %s disconnected", origin.origin)
            self._service.connection_closed(conn)
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


def _bind_loopback(port: int) -> list[socket.socket]:
    """Binds 127.0.0.1 (required) and ::1 (when the machine has IPv6) on one port."""
    sockets: list[socket.socket] = []
    try:
        for host in LOOPBACK_HOSTS:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError:
                if family == socket.AF_INET6:
                    continue  # no IPv6 on this machine
                raise
            try:
                if sys.platform == "win32":
                    # Without this, another program could bind the same port and steal pages.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
                else:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                # The port of the first socket is used for the second (port 0 in tests).
                sock.bind((host, sockets[0].getsockname()[1] if sockets else port))
                sock.listen(128)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
                    raise PortInUse(port) from exc
                if family == socket.AF_INET6 and exc.errno in (
                    errno.EADDRNOTAVAIL,
                    errno.EAFNOSUPPORT,
                ):
                    continue
                raise
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class ServerThread:
    """Runs the asyncio loop with the server in a background thread.

    The desktop app keeps Qt on the main thread; the headless front-end, the benchmark and the
    tests use the same arrangement so that they exercise what ships.
    """

    def __init__(
        self,
        config: AgentConfig,
        make_service: Callable[[], AgentService],
        port: int | None = None,
    ) -> None:
        self._config = config
        self._make_service = make_service
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self.server: AgentServer | None = None
        self.service: AgentService | None = None

    def start(self) -> int:
        """Starts serving; returns the port, or raises PortInUse / OSError."""
        started: Future[int] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="kyso-asyncio", daemon=True
        )
        self._thread.start()
        return started.result()

    def _run(self, started: Future[int]) -> None:
        asyncio.run(self._main(started))

    async def _main(self, started: Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            self.service = self._make_service()
            await self.service.start()
            self.server = AgentServer(self._config, self.service, self._port)
            port = await self.server.start()
        except BaseException as exc:
            if self.service is not None:
                await self.service.close()
            started.set_exception(exc)
            return
        started.set_result(port)
        await self._stopped.wait()
        await self.server.close()
        await self.service.close()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
