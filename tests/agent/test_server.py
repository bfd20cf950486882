"""The real agent server on an ephemeral port, a real SoftHSM token, a page-like client."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.agent_harness import ORIGIN, RunningAgent, ScriptedUI, running_agent, start_agent
from support.signing import collect, digests, sign_request, verify

from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


@pytest.fixture
def agent(token: Pkcs11Token, tmp_path: Path) -> Iterator[RunningAgent]:
    yield from running_agent(token, tmp_path)


@pytest.mark.parametrize(
    ("cert", "algorithm"),
    [
        ("rsa", "RSA_PKCS1_SHA256"),
        ("rsa", "RSA_PSS_SHA256"),
        ("p256", "ECDSA_SHA256"),
        ("p384", "ECDSA_SHA256"),
    ],
)
def test_sign_batch_end_to_end(
    agent: RunningAgent, softhsm: ProvisionedToken, cert: str, algorithm: str
) -> None:
    certificate = softhsm.certificates[cert]
    items = digests(250)
    page = agent.page()
    assert page.hello()["state"] == "ready"
    replies = page.request(sign_request(agent, certificate.fingerprint_sha256, algorithm, items))
    assert replies[-1]["type"] == "result", replies[-1]
    assert replies[-1]["signed"] == 250
    signatures = collect(replies)
    assert len(signatures) == 250
    for digest, signature in zip(items, signatures, strict=True):
        verify(certificate.der, algorithm, digest, signature)
    # Progress at least every 100 signatures, and the stages in order.
    progress = [r for r in replies if r["type"] == "progress"]
    assert [p["stage"] for p in progress[:2]] == ["consent", "signing"]
    chunks = [r for r in replies if r["type"] == "signatures"]
    assert all(
        c["total"] == 250 and c["signed"] == c["offset"] + len(c["signatures"]) for c in chunks
    )
    counts = [0] + [c["signed"] for c in chunks]
    assert counts[-1] == 250
    assert all(b - a <= 100 for a, b in itertools.pairwise(counts))
    # The officer saw what the manifest says.
    consent = agent.ui.consents[-1]
    assert consent.origin == agent.issuer.origin
    assert consent.manifest.count == 250
    assert consent.certificate.fingerprint_sha256 == certificate.fingerprint_sha256
    assert agent.ui.outcomes[-1].signed == 250
    assert agent.ui.outcomes[-1].error is None


def test_list_certificates_after_origin_approval(
    agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    page = agent.page()
    page.hello()
    reply = page.request({"type": "list_certificates", "id": "c1"})[-1]
    assert reply["type"] == "certificates"
    by_fp = {c["fingerprint"]: c for c in reply["certificates"]}
    rsa_cert = softhsm.certificates["rsa"]
    entry = by_fp[rsa_cert.fingerprint_sha256]
    assert base64.b64decode(entry["der"]) == rsa_cert.der
    assert entry["serial"] == format(rsa_cert.certificate.serial_number, "X")
    assert "Trạm Y tế" in entry["subject"] or entry["subject"]
    assert entry["algorithms"] == ["RSA_PKCS1_SHA256", "RSA_PSS_SHA256"]
    assert agent.ui.origin_requests == [agent.issuer.origin]
    page.request({"type": "list_certificates", "id": "c2"})
    assert agent.ui.origin_requests == [agent.issuer.origin]  # asked once per run


def test_declined_origin_sees_no_certificates(agent: RunningAgent) -> None:
    agent.ui.approve = False
    page = agent.page()
    page.hello()
    reply = page.request({"type": "list_certificates", "id": "c1"})[-1]
    assert reply["code"] == "ORIGIN_NOT_APPROVED"
    assert "certificates" not in reply


def test_declined_consent_signs_nothing_and_keeps_the_batch_id(
    agent: RunningAgent, softhsm: ProvisionedToken, token: Pkcs11Token
) -> None:
    fp = softhsm.certificates["p256"].fingerprint_sha256
    request = sign_request(agent, fp, "ECDSA_SHA256", digests(3))
    page = agent.page()
    page.hello()
    agent.ui.pin = None
    before = token.stats
    reply = page.request(request)[-1]
    assert reply["code"] == "USER_DECLINED"
    assert token.stats.logins == before.logins
    assert token.stats.signatures == before.signatures
    agent.ui.pin = "123456"
    assert page.request(request)[-1]["type"] == "result"  # same manifest, not spent
    assert page.request(request)[-1]["code"] == "MANIFEST_REPLAYED"  # now it is


def test_cancel_mid_batch_keeps_what_was_delivered(
    agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    cert = softhsm.certificates["rsa"]
    items = digests(3000)
    page = agent.page()
    page.hello()
    page.send(sign_request(agent, cert.fingerprint_sha256, "RSA_PKCS1_SHA256", items))
    replies: list[dict[str, Any]] = []
    cancelled = False
    while True:
        message = page.recv()
        replies.append(message)
        if message["type"] == "signatures" and not cancelled:
            page.send({"type": "cancel", "id": "x1", "target": "s1"})
            cancelled = True
        if message["type"] in ("result", "error") and message["id"] == "s1":
            break
    final = replies[-1]
    assert final["code"] == "CANCELLED"
    assert any(r["type"] == "cancelled" and r["target"] == "s1" for r in replies)
    signatures = collect(replies)
    assert final["signed"] == len(signatures)
    assert 0 < len(signatures) < 3000
    for digest, signature in zip(items, signatures, strict=False):
        verify(cert.der, "RSA_PKCS1_SHA256", digest, signature)


def test_closing_the_page_cancels_the_batch(
    agent: RunningAgent, softhsm: ProvisionedToken, token: Pkcs11Token
) -> None:
    cert = softhsm.certificates["rsa"]
    page = agent.page()
    page.hello()
    page.send(sign_request(agent, cert.fingerprint_sha256, "RSA_PKCS1_SHA256", digests(3000)))
    while page.recv()["type"] != "signatures":
        pass
    page.close()
    # The agent stops soon after and is free for the next batch.
    other = agent.page()
    other.hello()
    for _ in range(100):
        if agent.ui.outcomes:
            break
        threading.Event().wait(0.1)
    assert agent.ui.outcomes[-1].error == "CANCELLED"
    assert agent.ui.outcomes[-1].signed < 3000
    reply = other.request(
        sign_request(
            agent, cert.fingerprint_sha256, "RSA_PKCS1_SHA256", digests(2), request_id="s2"
        )
    )[-1]
    assert reply["type"] == "result"


def test_wrong_pin_is_one_login_and_nothing_signed(
    agent: RunningAgent, softhsm: ProvisionedToken, token: Pkcs11Token
) -> None:
    fp = softhsm.certificates["p256"].fingerprint_sha256
    agent.ui.pin = "000000"
    page = agent.page()
    page.hello()
    before = token.stats
    reply = page.request(sign_request(agent, fp, "ECDSA_SHA256", digests(3)))[-1]
    assert reply["code"] == "PIN_INCORRECT"
    assert "retries_left" in reply
    assert reply["signed"] == 0
    assert token.stats.logins == before.logins + 1
    assert token.stats.signatures == before.signatures
    assert "Mã PIN không đúng" in reply["message"]["vi"]


def test_hello_reports_busy_during_a_dialog(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    hold = threading.Event()
    agent.ui.hold = hold
    fp = softhsm.certificates["p256"].fingerprint_sha256
    page = agent.page()
    page.hello()
    page.send(sign_request(agent, fp, "ECDSA_SHA256", digests(2)))
    assert agent.ui.dialog_open.wait(10)
    other = agent.page()
    assert other.hello()["state"] == "busy"
    hold.set()
    assert page.until_done("s1")[-1]["type"] == "result"


# --- golden exchanges (also replayed by the page client's tests) -----------------------------


def _matches(expected: Any, actual: Any) -> bool:
    if expected == "<text>":
        return isinstance(actual, dict) and set(actual) == {"vi", "en"}
    if expected in ("<signature>", "<batch_id>"):
        return isinstance(actual, str) and bool(actual)
    if expected == "<certificates>":
        return isinstance(actual, list) and bool(actual)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(expected) == set(actual)
            and all(_matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


# Exchanges with unsolicited events need a token removed and inserted: test_hotplug replays them.
UNSOLICITED = frozenset({"10-state"})


@pytest.mark.parametrize(
    "golden",
    sorted(p for p in GOLDEN.glob("*.json") if p.stem not in UNSOLICITED),
    ids=lambda p: p.stem,
)
def test_golden_exchange(golden: Path, agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    exchange = json.loads(golden.read_text(encoding="utf-8"))
    fp = softhsm.certificates["rsa"].fingerprint_sha256
    page = agent.page()
    for step in exchange["exchange"]:
        message = step["message"]
        if step["from"] == "page":
            outgoing = dict(message)
            if outgoing.get("certificate") == "<fingerprint>":
                outgoing["certificate"] = fp
            if outgoing.get("manifest") == "<manifest>":
                committed = exchange.get("manifest_digests", outgoing["digests"])
                outgoing["manifest"] = agent.issuer.issue(
                    fp, outgoing["algorithm"], [base64.b64decode(d) for d in committed]
                )
            page.send(outgoing)
        else:
            actual = page.recv()
            assert _matches(message, actual), (message, actual)


def test_token_pulled_mid_batch_keeps_what_was_delivered(
    agent: RunningAgent, fresh_softhsm: Any
) -> None:
    """softhsm2-util deletes the token from another process while the agent signs."""
    from kyso.agent.token.softhsm import KeySpec, delete_token

    pulled = fresh_softhsm(keys=(KeySpec("rsa", "RSA", 2048),))
    cert = pulled.certificates["rsa"]
    items = digests(3000)
    agent.ui.pin = pulled.user_pin
    page = agent.page()
    page.hello()
    page.send(sign_request(agent, cert.fingerprint_sha256, "RSA_PKCS1_SHA256", items))
    replies: list[dict[str, Any]] = []
    while True:
        message = page.recv()
        replies.append(message)
        if message["type"] == "signatures" and message["offset"] == 0:
            delete_token(pulled)
        if message["type"] in ("result", "error"):
            break
    final = replies[-1]
    assert final["code"] == "TOKEN_REMOVED"
    signatures = collect(replies)
    assert final["signed"] == len(signatures)
    assert 100 <= len(signatures) < 3000
    for digest, signature in zip(items, signatures, strict=False):
        verify(cert.der, "RSA_PKCS1_SHA256", digest, signature)
    assert "Hãy cắm lại USB token" in final["message"]["vi"]
    assert agent.ui.outcomes[-1].error == "TOKEN_REMOVED"
    assert page.hello()["state"] in ("ready", "no_token")  # the agent goes on


def test_cancel_withdraws_the_open_dialog(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    """protocol.md 2.4: cancel closes the dialog; the officer is not left answering for nobody."""
    hold = threading.Event()
    agent.ui.hold = hold  # the officer does not answer
    try:
        fp = softhsm.certificates["p256"].fingerprint_sha256
        page = agent.page()
        page.hello()
        page.send(sign_request(agent, fp, "ECDSA_SHA256", digests(2)))
        assert agent.ui.dialog_open.wait(10)
        page.send({"type": "cancel", "id": "x1", "target": "s1"})
        replies = []
        while not replies or replies[-1].get("id") != "s1" or replies[-1]["type"] != "error":
            replies.append(page.recv(timeout=5))
        assert replies[-1]["code"] == "CANCELLED"
        assert replies[-1]["signed"] == 0
        assert any(r["type"] == "cancelled" for r in replies)
        assert not agent.ui.dialog_open.is_set()
        assert agent.ui.outcomes[-1].error == "CANCELLED"
        assert agent.page().hello()["state"] == "ready"
    finally:
        hold.set()


def test_a_page_that_goes_away_withdraws_its_dialog(
    agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    """Its question is closed at once, so other pages are not kept BUSY by it."""
    hold = threading.Event()
    agent.ui.hold = hold
    try:
        fp = softhsm.certificates["p256"].fingerprint_sha256
        page = agent.page()
        page.hello()
        page.send(sign_request(agent, fp, "ECDSA_SHA256", digests(2)))
        assert agent.ui.dialog_open.wait(10)
        page.close()
        for _ in range(50):
            if not agent.ui.dialog_open.is_set():
                break
            threading.Event().wait(0.1)
        assert not agent.ui.dialog_open.is_set()
        other = agent.page()
        assert other.hello()["state"] == "ready"
        agent.ui.hold = None
        request = sign_request(agent, fp, "ECDSA_SHA256", digests(2), request_id="s2")
        assert other.request(request)[-1]["type"] == "result"
        assert [o.error for o in agent.ui.outcomes] == ["CANCELLED", None]
    finally:
        hold.set()


class _SlowOfficerUI(ScriptedUI):
    """The origin question stays open until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.origin_hold = threading.Event()
        self.origin_open = threading.Event()

    async def approve_origin(self, origin: str) -> bool:
        self.origin_requests.append(origin)
        self.origin_open.set()
        try:
            await asyncio.to_thread(self.origin_hold.wait, 30)
        finally:
            self.origin_open.clear()
        return self.approve


def test_a_page_that_goes_away_withdraws_its_origin_question(
    token: Pkcs11Token, tmp_path: Path
) -> None:
    ui = _SlowOfficerUI()
    agent = start_agent(token, tmp_path, ui=ui)
    try:
        page = agent.page()
        page.hello()
        page.send({"type": "list_certificates", "id": "c1"})
        assert ui.origin_open.wait(10)
        page.close()
        for _ in range(50):
            if not ui.origin_open.is_set():
                break
            threading.Event().wait(0.1)
        assert not ui.origin_open.is_set()  # withdrawn, not answered
        other = agent.page()
        other.hello()
        other.send({"type": "list_certificates", "id": "c2"})
        assert ui.origin_open.wait(10)  # asked again (the withdrawn question approved nothing)
        ui.origin_hold.set()
        assert other.until_done("c2")[-1]["type"] == "certificates"
        assert ui.origin_requests == [ORIGIN, ORIGIN]
    finally:
        ui.origin_hold.set()
        agent.stop()


class _LoopBlockedAfterFirstChunk:
    """The real token, except that when its first chunk is ready the event loop is kept busy
    for a while (a busy PC): the chunks signed meanwhile must go with one wake-up, in order."""

    def __init__(self, token: Pkcs11Token, loop: asyncio.AbstractEventLoop) -> None:
        self._token = token
        self._loop = loop
        self.blocked = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._token, name)

    def sign_batch(self, *args: Any, **kwargs: Any) -> int:
        certificate, algorithm, digests_, pin, on_chunk, cancel = args

        def chunk_after_blocking(offset: int, signatures: list[bytes]) -> None:
            if not self.blocked.is_set():
                self._loop.call_soon_threadsafe(self._block)
                assert self.blocked.wait(5)
            on_chunk(offset, signatures)

        return self._token.sign_batch(
            certificate, algorithm, digests_, pin, chunk_after_blocking, cancel, **kwargs
        )

    def _block(self) -> None:  # on the event loop
        self.blocked.set()
        threading.Event().wait(0.5)  # the loop does nothing else meanwhile


def test_chunks_signed_while_the_loop_is_busy_go_with_one_wake_up(
    token: Pkcs11Token, softhsm: ProvisionedToken, tmp_path: Path
) -> None:
    agent = start_agent(token, tmp_path)
    try:
        loop = agent.thread._loop
        assert loop is not None
        slow = _LoopBlockedAfterFirstChunk(token, loop)
        agent.service._token = slow  # type: ignore[assignment]
        wake_ups: list[str] = []
        real = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name.startswith("kyso-pkcs11"):
                wake_ups.append(getattr(callback, "__name__", ""))  # the worker wakes the loop
            return real(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        certificate = softhsm.certificates["p256"]
        items = digests(500)  # 5 chunks, signed in far less than the loop is kept busy
        page = agent.page()
        page.hello()
        replies = page.request(
            sign_request(agent, certificate.fingerprint_sha256, "ECDSA_SHA256", items)
        )
        assert replies[-1]["type"] == "result", replies[-1]
        chunks = [r for r in replies if r["type"] == "signatures"]
        assert [c["offset"] for c in chunks] == [0, 100, 200, 300, 400]  # in order, each ≤ 100
        signatures = collect(replies)
        for digest, signature in zip(items, signatures, strict=True):
            verify(certificate.der, "ECDSA_SHA256", digest, signature)
        assert slow.blocked.is_set()
        assert [w for w in wake_ups if w != "_block"] == ["take_chunks"]  # not one per chunk
    finally:
        agent.stop()
