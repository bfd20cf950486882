"""The service's command handlers, called directly: no server, no network (issue 13).

hello, cancel and the state event are synchronous and do no I/O; the sign request's checks
(``check_sign``) too. ``handle`` is driven with a list as its ``send``. The token is the real
SoftHSM2 one (the service needs one), but none of these handlers asks it anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from support.agent_harness import ORIGIN, ScriptedUI
from support.platform_keys import ManifestIssuer

from kyso.agent.config import AgentConfig, AllowedOrigin
from kyso.agent.manifest import ReplayGuard
from kyso.agent.protocol import (
    AgentState,
    Cancel,
    Cancelled,
    ErrorCode,
    ErrorReply,
    Hello,
    HelloReply,
    ListCertificates,
    ProtocolError,
    Reply,
    Sign,
    StateEvent,
)
from kyso.agent.service import AgentService, CancelSignal, Connection
from kyso.agent.token.model import Algorithm, TokenInfo
from kyso.agent.token.monitor import TokenPresence
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken

NOW = float(int(time.time()))  # PyJWT checks "iat" against the real clock
TOKEN = TokenInfo(slot_id=1, label="Kyso Test", manufacturer="SoftHSM", model="x", serial="1")
PRESENT = TokenPresence(tokens=(TOKEN,))
ABSENT = TokenPresence()


@pytest.fixture
def issuer() -> ManifestIssuer:
    return ManifestIssuer(ORIGIN)


@pytest.fixture
def service(token: Pkcs11Token, issuer: ManifestIssuer, tmp_path: Path) -> AgentService:
    config = AgentConfig(
        origins=(AllowedOrigin.create(ORIGIN, issuer.public_pem),), state_dir=tmp_path
    )
    guard = ReplayGuard(tmp_path / "used.json")
    return AgentService(
        config, token, ScriptedUI(), guard, clock=lambda: NOW, hotplug_interval=None
    )


async def _notify(reply: Reply) -> None:
    raise AssertionError("handlers return events; they do not send them")


def connection(service: AgentService, *, notify: bool = True) -> Connection:
    origin = service.allowed_origin(ORIGIN)
    assert origin is not None
    return Connection(origin, notify=_notify if notify else None)


def handle(service: AgentService, conn: Connection, request: Any) -> list[Reply]:
    sent: list[Reply] = []

    async def send(reply: Reply) -> None:
        sent.append(reply)

    asyncio.run(service.handle(conn, request, send))
    return sent


# --- hello ---------------------------------------------------------------------------------


def test_hello_without_a_monitor_says_what_the_token_said(service: AgentService) -> None:
    conn = connection(service)
    assert service.hello(conn, Hello("h1", (1, 7)), token_present=True) == [
        HelloReply("h1", 1, AgentState.READY)
    ]
    assert conn.version == 1
    assert conn.told_state is AgentState.READY
    other = connection(service)
    assert service.hello(other, Hello("h2", (1,)), token_present=False) == [
        HelloReply("h2", 1, AgentState.NO_TOKEN)
    ]


def test_hello_with_an_unsupported_version_is_refused_and_registers_nothing(
    service: AgentService,
) -> None:
    conn = connection(service)
    with pytest.raises(ProtocolError) as info:
        service.hello(conn, Hello("h1", (2, 3)), token_present=True)
    assert info.value.code is ErrorCode.VERSION_UNSUPPORTED
    assert info.value.detail == {"supported": "1"}
    assert conn.version is None
    assert service.state_changed(ABSENT) == []  # the page never said hello: no event for it


def test_hello_with_a_monitor_uses_the_presence_not_the_argument(service: AgentService) -> None:
    service.state_changed(ABSENT)
    conn = connection(service)
    replies = service.hello(conn, Hello("h1", (1,)), token_present=True)
    assert replies == [HelloReply("h1", 1, AgentState.NO_TOKEN)]


def test_hello_while_busy_on_a_removed_token_adds_the_state_event(service: AgentService) -> None:
    async def busy_hello() -> list[Reply]:
        service.state_changed(ABSENT)
        async with service._batch_lock:  # another page's batch (the dialog, say) is running
            return service.hello(connection(service), Hello("h1", (1,)))

    assert asyncio.run(busy_hello()) == [
        HelloReply("h1", 1, AgentState.BUSY),
        StateEvent(AgentState.NO_TOKEN),
    ]


# --- state ---------------------------------------------------------------------------------


def test_state_events_go_to_pages_that_said_hello_once_per_change(service: AgentService) -> None:
    service.state_changed(PRESENT)
    page = connection(service)
    silent = connection(service, notify=False)  # no way to send it events
    stranger = connection(service)  # connected, no hello
    for conn in (page, silent):
        service.hello(conn, Hello("h1", (1,)))
    assert service.state_changed(PRESENT) == []  # nothing changed for the page
    assert service.state_changed(ABSENT) == [(page, StateEvent(AgentState.NO_TOKEN))]
    assert service.state_changed(ABSENT) == []  # told already
    assert service.state_changed(PRESENT) == [(page, StateEvent(AgentState.READY))]
    assert stranger.told_state is None
    assert service.status.state is AgentState.READY
    service.connection_closed(page)
    assert service.state_changed(ABSENT) == []


# --- cancel --------------------------------------------------------------------------------


def test_cancel_stops_this_pages_batch_and_only_one_it_runs(service: AgentService) -> None:
    conn = connection(service)
    signal = CancelSignal()
    conn.running["s1"] = signal
    with pytest.raises(ProtocolError) as info:
        service.cancel(conn, Cancel("c1", "s2"))
    assert info.value.code is ErrorCode.NOTHING_TO_CANCEL
    assert not signal.is_set()
    assert service.cancel(conn, Cancel("c2", "s1")) == Cancelled("c2", "s1")
    assert signal.is_set()
    with pytest.raises(ProtocolError):
        service.cancel(connection(service), Cancel("c3", "s1"))  # another page's batch


# --- the sign request's checks ---------------------------------------------------------------


def sign_request(
    issuer: ManifestIssuer, fingerprint: str, signed: list[bytes], **over: Any
) -> Sign:
    """A sign request whose manifest covers ``signed``; ``over`` replaces request fields."""
    manifest = issuer.issue(fingerprint, "ECDSA_SHA256", signed, now=int(NOW))
    fields: dict[str, Any] = {
        "id": "s1",
        "manifest": manifest,
        "certificate": fingerprint,
        "algorithm": Algorithm.ECDSA_SHA256,
        "digests": tuple(signed),
    }
    fields.update(over)
    return Sign(**fields)


def test_check_sign_verifies_the_manifest_against_the_request(
    service: AgentService, issuer: ManifestIssuer, softhsm: ProvisionedToken
) -> None:
    fingerprint = softhsm.certificates["p256"].fingerprint_sha256
    digests = [hashlib.sha256(b"%d" % i).digest() for i in range(3)]
    conn = connection(service)
    manifest = service.check_sign(conn, sign_request(issuer, fingerprint, digests))
    assert (manifest.certificate, manifest.count) == (fingerprint, 3)

    def refused(request: Sign) -> ProtocolError:
        with pytest.raises(ProtocolError) as info:
            service.check_sign(conn, request)
        return info.value

    fewer = sign_request(issuer, fingerprint, digests, digests=tuple(digests[:2]))
    assert refused(fewer).detail == {"field": "count"}
    swapped = sign_request(issuer, fingerprint, digests, digests=tuple(reversed(digests)))
    assert refused(swapped).detail == {"field": "digests"}
    other = sign_request(issuer, fingerprint, digests, certificate="0" * 64)
    assert refused(other).detail == {"field": "certificate"}
    spent = sign_request(issuer, fingerprint, digests)
    spent_manifest = service.check_sign(conn, spent)
    service._replays.consume(ORIGIN, spent_manifest.batch_id, spent_manifest.expires_at, NOW)
    assert refused(spent).code is ErrorCode.MANIFEST_REPLAYED


# --- handle ----------------------------------------------------------------------------------


def test_handle_requires_hello_first_and_sends_each_handlers_replies(
    service: AgentService,
) -> None:
    conn = connection(service)
    for request in (ListCertificates("l1"), Cancel("c1", "s1")):
        [reply] = handle(service, conn, request)
        assert isinstance(reply, ErrorReply)
        assert reply.code is ErrorCode.HELLO_REQUIRED
    service.state_changed(PRESENT)
    assert handle(service, conn, Hello("h1", (1,))) == [HelloReply("h1", 1, AgentState.READY)]
    [reply] = handle(service, conn, Cancel("c1", "s1"))
    assert isinstance(reply, ErrorReply)
    assert reply.code is ErrorCode.NOTHING_TO_CANCEL
