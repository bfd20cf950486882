"""Running the real agent server on an ephemeral port, and talking to it like a page does.

The scripted user interface here is the third implementation of the service's UserInterface
(after the Qt dialogs and the terminal prompts). It exists only in the tests and the benchmark,
reachable only through the Python API: nothing in the shipped agent can select it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from kyso.agent.config import AgentConfig, AllowedOrigin
from kyso.agent.manifest import ReplayGuard
from kyso.agent.pairing import ConsentMemory, PairingManager
from kyso.agent.server import ServerThread
from kyso.agent.service import AgentService, BatchOutcome, ConsentRequest
from kyso.agent.token.model import Token
from support.platform_keys import ManifestIssuer

ORIGIN = "https://tiemchung.example.vn"
TERMINAL = frozenset({"result", "error", "hello", "certificates", "cancelled"})


@dataclass
class ScriptedUI:
    """Answers dialogs as a test tells it to, and records what the officer would have seen."""

    pin: str | None = "123456"
    approve: bool = True
    hold: threading.Event | None = None  # while set and not released, the dialog stays open
    consents: list[ConsentRequest] = field(default_factory=list)
    origin_requests: list[str] = field(default_factory=list)
    outcomes: list[BatchOutcome] = field(default_factory=list)
    progress: list[tuple[int, int]] = field(default_factory=list)
    dialog_open: threading.Event = field(default_factory=threading.Event)

    async def approve_origin(self, origin: str) -> bool:
        self.origin_requests.append(origin)
        return self.approve

    async def ask_consent_and_pin(self, request: ConsentRequest) -> str | None:
        self.consents.append(request)
        self.dialog_open.set()
        try:
            if self.hold is not None:
                await asyncio.to_thread(self.hold.wait, 30)
        finally:
            self.dialog_open.clear()
        return self.pin

    def signing_progress(self, signed: int, total: int) -> None:
        self.progress.append((signed, total))

    def batch_finished(self, outcome: BatchOutcome) -> None:
        self.outcomes.append(outcome)


class Page:
    """A WebSocket client that behaves like the platform's page (JSON text frames)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def send(self, message: dict[str, Any] | str) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self, timeout: float = 30) -> dict[str, Any]:
        data = self.ws.recv(timeout=timeout)
        assert isinstance(data, str)
        message: dict[str, Any] = json.loads(data)
        return message

    def until_done(self, request_id: str, timeout: float = 120) -> list[dict[str, Any]]:
        """Every reply to ``request_id`` up to and including its terminal message."""
        replies = []
        while True:
            message = self.recv(timeout)
            if message.get("id") not in (request_id, None):
                continue
            replies.append(message)
            if message["type"] in TERMINAL:
                return replies

    def request(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self.send(message)
        return self.until_done(message["id"])

    def hello(self) -> dict[str, Any]:
        return self.request({"type": "hello", "id": "h1", "versions": [1]})[-1]

    def close(self) -> None:
        self.ws.close()


@dataclass
class RunningAgent:
    port: int
    thread: ServerThread
    ui: ScriptedUI
    issuer: ManifestIssuer
    token: Token
    config: AgentConfig

    @property
    def service(self) -> AgentService:
        assert self.thread.service is not None
        return self.thread.service

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def page(self, origin: str | None = ORIGIN, **kwargs: Any) -> Page:
        return Page(connect(self.url, origin=origin, open_timeout=10, legacy=True, **kwargs))  # type: ignore[arg-type]

    def stop(self) -> None:
        self.thread.stop()


def start_agent(
    token: Token,
    state_dir: Path,
    *,
    ui: ScriptedUI | None = None,
    issuer: ManifestIssuer | None = None,
    port: int = 0,
    hotplug: float | None = None,
    pairing: Callable[[AgentConfig], PairingManager] | None = None,
    consents: ConsentMemory | None = None,
    **settings: Any,
) -> RunningAgent:
    """``hotplug``: the hot-plug monitor's poll interval; None (the default) runs none, so
    that tests provisioning SoftHSM tokens in this process never race a poll. ``pairing``
    builds the service's PairingManager from the config (None: machine origins only)."""
    ui = ui or ScriptedUI()
    issuer = issuer or ManifestIssuer(ORIGIN)
    config = AgentConfig(
        port=port,
        origins=(AllowedOrigin.create(issuer.origin, issuer.public_pem),),
        state_dir=state_dir,
        **settings,
    )

    def make_service() -> AgentService:
        return AgentService(
            config,
            token,
            ui,
            ReplayGuard(state_dir / "used-batches.json"),
            hotplug_interval=hotplug,
            pairing=pairing(config) if pairing is not None else None,
            consents=consents,
        )

    thread = ServerThread(config, make_service, port=port)
    bound = thread.start()
    return RunningAgent(bound, thread, ui, issuer, token, config)


def running_agent(token: Token, state_dir: Path, **kw: Any) -> Iterator[RunningAgent]:
    agent = start_agent(token, state_dir, **kw)
    try:
        yield agent
    finally:
        agent.stop()
