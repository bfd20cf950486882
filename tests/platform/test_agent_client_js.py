"""The page's agent client (platform/static/agent-client.js) in real Chromium.

(a) Every golden exchange of tests/golden is replayed against the client through a scripted
    WebSocket injected into it: the client must send exactly the golden requests and read the
    replies as protocol.md says (errors become AgentError with the code and detail fields).
(b) The client against the REAL agent server (SoftHSM token, scripted dialogs): the page is
    served at the agent's allowed origin ``https://tiemchung.example.vn`` by Playwright routes,
    with the platform's Content-Security-Policy, and Chromium's Local Network Access permission
    granted (or not: then the client must say LNA_DENIED).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from support.agent_harness import ORIGIN, RunningAgent, running_agent
from support.signing import digests, verify

from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken
from kyso.platform.app import CONTENT_SECURITY_POLICY
from kyso.platform.signing.texts import sign_page_texts

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
STATIC = ROOT / "platform" / "static"
HARNESS = ROOT / "tests" / "support" / "js_harness"
INSTALLER = "https://tiemchung.example.vn/tai/kyso-agent.msi"
CONTENT_TYPES = {".js": "text/javascript", ".html": "text/html", ".css": "text/css"}

# Values the test supplies for the golden files' placeholders.
MANIFEST = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJLQjEuMSJ9.c2lnbmF0dXJl"
FINGERPRINT = "3f" * 32
SIGNATURE = base64.b64encode(b"\x01" * 256).decode()
BATCH_ID = "KB42.1"
CERTIFICATES = [
    {
        "fingerprint": FINGERPRINT,
        "subject": "CN=Trạm Y tế Phường Bến Nghé,O=Sở Y tế TP.HCM,C=VN",
        "issuer": "CN=Kyso Test Root CA",
        "serial": "1A2B3C",
        "not_before": "2024-01-01T00:00:00Z",
        "not_after": "2027-01-01T00:00:00Z",
        "key_usage": ["digitalSignature", "nonRepudiation"],
        "key_type": "RSA",
        "key_size": 2048,
        "algorithms": ["RSA_PKCS1_SHA256", "RSA_PSS_SHA256"],
        "token": "Kyso Test",
        "der": base64.b64encode(b"0\x82").decode(),
    }
]
# The page's own texts for the client's codes (the real ones come from signpage.toml).
CLIENT_TEXTS = {
    "AGENT_NOT_RUNNING": "Không kết nối được (cổng {port}).",
    "LNA_DENIED": "Trình duyệt chặn truy cập mạng cục bộ.",
    "AGENT_TOO_OLD": "Công cụ ký phiên bản {version}, cần {min_version}.",
    "CONNECTION_LOST": "Mất kết nối sau {signed} chữ ký.",
    "TIMEOUT": "Hết thời gian chờ.",
    "UNEXPECTED": "Lỗi: {reason}",
}

# How each golden exchange is driven: client options, then one step per page message
# ("open" opens the socket without hello; "raw" sends the golden message as it is, for
# requests the public methods never make: a PIN, a bad id, a request before hello).
DRIVERS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "01-hello": ({}, ["connect"]),
    "02-version-unsupported": ({"versions": [7, 8]}, ["connect"]),
    "03-list-certificates": ({}, ["connect", "listCertificates"]),
    "04-sign": ({}, ["connect", "sign"]),
    "05-field-not-allowed": ({}, ["connect", "raw"]),
    "06-manifest-mismatch": ({}, ["connect", "sign"]),
    "07-bad-id": ({}, ["open", "raw"]),
    "08-hello-required": ({}, ["open", "raw"]),
    "09-nothing-to-cancel": ({}, ["connect", "raw"]),
    "10-state": ({}, ["connect", "settle"]),
}


def _substitute(value: Any, code: str | None = None) -> Any:
    if value == "<manifest>":
        return MANIFEST
    if value == "<fingerprint>":
        return FINGERPRINT
    if value == "<signature>":
        return SIGNATURE
    if value == "<batch_id>":
        return BATCH_ID
    if value == "<certificates>":
        return CERTIFICATES
    if value == "<text>":
        return {"vi": f"Lỗi {code} (tiếng Việt).", "en": f"Error {code} (English)."}
    if isinstance(value, dict):
        inner = value.get("code", code)
        return {k: _substitute(v, inner) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, code) for v in value]
    return value


def _serve(route: Any) -> None:
    """The test origin: the platform's static files and the harness, with the platform's CSP."""
    path = urlsplit(route.request.url).path
    if path.startswith("/static/"):
        file = STATIC / path.removeprefix("/static/")
    elif path.startswith("/harness/"):
        file = HARNESS / path.removeprefix("/harness/")
    elif path == "/":
        file = HARNESS / "index.html"
    else:
        route.fulfill(status=404, body="not found")
        return
    route.fulfill(
        status=200,
        body=file.read_bytes(),
        headers={
            "Content-Type": CONTENT_TYPES.get(file.suffix, "application/octet-stream"),
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        },
    )


class Harness:
    """A page at the test origin running tests/support/js_harness/harness.js."""

    def __init__(self, browser: Any, *, allow_loopback: bool = True) -> None:
        self.problems: list[str] = []
        self.context = browser.new_context(locale="vi-VN")
        if allow_loopback:
            # What the officer's "Allow" (or the LocalNetworkAccessAllowedForUrls policy) does.
            self.context.grant_permissions(["local-network-access"], origin=ORIGIN)
        self.page = self.context.new_page()
        self.page.route(f"{ORIGIN}/**", _serve)
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on("console", self._console)
        self.page.goto(f"{ORIGIN}/")
        self.page.wait_for_selector("#ready[data-ready='1']", state="attached")
        self.page.evaluate("texts => { window.kysoTexts = texts; }", CLIENT_TEXTS)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.problems.append(message.text)

    def run(self, script: str, *args: Any) -> Any:
        return self.page.evaluate(script, list(args))

    def wait(self, predicate: str, timeout: float = 15) -> None:
        """Polls ``predicate``: wait_for_function would need the 'unsafe-eval' the CSP refuses."""
        deadline = time.monotonic() + timeout
        while not self.page.evaluate(predicate):
            assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
            time.sleep(0.005)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def harness(browser: Any) -> Iterator[Harness]:
    h = Harness(browser)
    yield h
    h.close()
    assert h.problems == [], h.problems


REPLAY = "([script, steps, options]) => window.harness.replay(script, steps, options)"


def _replay(h: Harness, exchange: list[dict[str, Any]], steps: list[Any], **options: Any) -> Any:
    return h.run(REPLAY, exchange, steps, options)


# --- (a) golden exchanges through a scripted socket ------------------------------------------


def test_every_golden_file_has_a_driver() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(DRIVERS)


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden_exchange(golden: Path, harness: Harness) -> None:
    exchange = _substitute(json.loads(golden.read_text(encoding="utf-8"))["exchange"])
    options, methods = DRIVERS[golden.stem]
    requests = [step["message"] for step in exchange if step["from"] == "page"]
    steps: list[list[Any]] = []
    queue = iter(requests)
    for method in methods:
        if method in ("open", "settle"):  # no request: open the socket, or let events arrive
            steps.append([method, None])
            continue
        message = next(queue)
        if method == "sign":
            fields = ("manifest", "certificate", "algorithm", "digests")
            steps.append(["sign", {k: message[k] for k in fields}])
        elif method == "raw":
            steps.append(["raw", message])
        else:
            steps.append([method, None])
    assert next(queue, None) is None

    outcome = _replay(harness, exchange, steps, **options)

    # Exactly the golden requests, on the default port of loopback.
    assert outcome["sent"] == requests
    assert outcome["urls"] == ["ws://127.0.0.1:47321/"]
    # The last reply is read as protocol.md says.
    final = exchange[-1]["message"]
    last = outcome["outcomes"][-1]
    if final["type"] == "error":
        detail = {k: v for k, v in final.items() if k not in ("type", "id", "code", "message")}
        assert last["error"] == final["code"]
        assert last["fromAgent"] is True
        assert last["detail"] == detail
        assert last["agentMessage"] == final["message"]
        assert last["vi"] == final["message"]["vi"]
        assert last["en"] == final["message"]["en"]
        for key, value in detail.items():
            assert last["detail"][key] == value
    elif final["type"] == "hello":
        assert last == {"ok": {"version": final["version"], "state": final["state"]}}
    elif final["type"] == "certificates":
        assert last == {"ok": CERTIFICATES}
    elif final["type"] == "result":
        assert last == {"ok": {"batchId": BATCH_ID, "signed": final["signed"]}}
    elif final["type"] == "state":
        # Unsolicited: nothing was pending; the client's state follows the last event.
        assert last == {"ok": None}
        assert outcome["state"] == final["state"]
    else:
        pytest.fail(f"no check for a final {final['type']}")
    # Every step before the last succeeded (hello first where there is one).
    assert all("error" not in o for o in outcome["outcomes"][:-1]), outcome["outcomes"]
    # Progress and signatures reach the callbacks, in order.
    expected_callbacks: list[list[Any]] = []
    for step in exchange:
        m = step["message"]
        if step["from"] == "agent" and m["type"] == "progress":
            expected_callbacks.append(["progress", m["stage"], m["signed"], m["total"]])
        elif step["from"] == "agent" and m["type"] == "signatures":
            expected_callbacks.append(
                ["signatures", m["offset"], m["signatures"], m["signed"], m["total"]]
            )
            expected_callbacks.append(["progress", "signing", m["signed"], m["total"]])
        elif step["from"] == "agent" and m["type"] == "state":
            expected_callbacks.append(["state", m["state"]])
    assert outcome["callbacks"] == expected_callbacks


def _golden(stem: str) -> list[dict[str, Any]]:
    path = GOLDEN / f"{stem}.json"
    exchange: list[dict[str, Any]] = _substitute(json.loads(path.read_text("utf-8"))["exchange"])
    return exchange


def test_sign_sends_only_the_protocol_fields(harness: Harness) -> None:
    """A PIN (or anything else) handed to sign() never reaches the socket."""
    exchange = _golden("04-sign")
    request = {
        "manifest": MANIFEST,
        "certificate": FINGERPRINT,
        "algorithm": "RSA_PKCS1_SHA256",
        "digests": exchange[2]["message"]["digests"],
        "pin": "123456",
        "module": "C:/evil.dll",
    }
    outcome = _replay(harness, exchange, [["connect", None], ["sign", request]])
    sign = outcome["sent"][1]
    assert set(sign) == {"type", "id", "manifest", "certificate", "algorithm", "digests"}
    assert outcome["outcomes"][-1] == {"ok": {"batchId": BATCH_ID, "signed": 2}}


def test_request_ids_follow_the_protocol(harness: Harness) -> None:
    """Ids are ^[A-Za-z0-9_-]{1,64}$, unique on a connection, and replies are matched by id."""
    cert_reply = {"type": "certificates", "certificates": CERTIFICATES}
    exchange = [
        {"from": "page", "message": {}},
        {"from": "agent", "message": {"type": "hello", "id": "h1", "version": 1, "state": "ready"}},
        {"from": "page", "message": {}},
        # A reply to someone else's id is ignored; the client waits for its own.
        {"from": "agent", "message": {**cert_reply, "id": "c9", "certificates": []}},
        {"from": "agent", "message": {**cert_reply, "id": "c1"}},
        {"from": "page", "message": {}},
        {"from": "agent", "message": {**cert_reply, "id": "c2"}},
    ]
    steps = [["connect", None], ["listCertificates", None], ["listCertificates", None]]
    outcome = _replay(harness, exchange, steps)
    assert [m["id"] for m in outcome["sent"]] == ["h1", "c1", "c2"]
    assert outcome["outcomes"][1:] == [{"ok": CERTIFICATES}, {"ok": CERTIFICATES}]


def test_agent_below_the_minimum_version_is_refused(harness: Harness) -> None:
    exchange = _golden("01-hello")
    outcome = _replay(harness, exchange, [["connect", None]], versions=[1, 2], minVersion=2)
    last = outcome["outcomes"][-1]
    assert last["error"] == "AGENT_TOO_OLD"
    assert last["fromAgent"] is False
    assert last["detail"] == {"version": 1, "min_version": 2}
    assert last["vi"] == "Công cụ ký phiên bản 1, cần 2."  # the page's text, filled in
    assert outcome["sent"][0]["versions"] == [1, 2]
    assert outcome["closed"] == [1000]  # the client hangs up on a too-old agent


def test_silent_agent_times_out(harness: Harness) -> None:
    exchange = [{"from": "page", "message": {}}]  # the agent never answers hello
    outcome = _replay(harness, exchange, [["connect", None]], helloTimeout=200)
    assert outcome["outcomes"][-1]["error"] == "TIMEOUT"
    assert outcome["outcomes"][-1]["vi"] == "Hết thời gian chờ."


def test_silent_agent_mid_batch_times_out_and_is_told_to_stop(harness: Harness) -> None:
    exchange = _golden("04-sign")[:5]  # hello, sign, consent, signing, then one chunk only
    first = {"type": "signatures", "id": "s1", "offset": 0, "signatures": [SIGNATURE]}
    exchange.append({"from": "agent", "message": {**first, "signed": 1, "total": 2}})
    sign = exchange[2]["message"]
    request = {k: sign[k] for k in ("manifest", "certificate", "algorithm", "digests")}
    steps = [["connect", None], ["sign", request]]
    outcome = _replay(harness, exchange, steps, signIdleTimeout=300)
    last = outcome["outcomes"][-1]
    assert last["error"] == "TIMEOUT"
    assert last["detail"] == {"signed": 1, "stage": "sign"}
    assert outcome["callbacks"][2] == ["signatures", 0, [SIGNATURE], 1, 2]
    # The client told the agent to stop the batch it no longer waits for.
    assert outcome["sent"][-1] == {"type": "cancel", "id": "x1", "target": "s1"}


# --- Local Network Access: telling a denied permission from an agent that is not running ----


PERMISSIONS = """async ([state, port]) => {
  const { AgentClient, errorText } = window.harness.client;
  const queried = [];
  const permissions = state === null ? null : {
    query: async (descriptor) => {
      queried.push(descriptor.name);
      if (state === "throws") throw new TypeError("unknown permission");
      return { state };
    },
  };
  const agent = new AgentClient({ port, permissions });
  try { await agent.connect(); return { ok: true }; }
  catch (e) { return { code: e.code, queried, text: errorText(e, { texts: window.kysoTexts }) }; }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("denied", "LNA_DENIED"),
        ("granted", "AGENT_NOT_RUNNING"),
        ("prompt", "AGENT_NOT_RUNNING"),
        ("throws", "AGENT_NOT_RUNNING"),  # a browser without Local Network Access
        (None, "AGENT_NOT_RUNNING"),  # no navigator.permissions at all
    ],
)
def test_failed_connection_is_diagnosed_from_the_permission(
    harness: Harness, state: str | None, code: str
) -> None:
    port = _free_port()  # nothing listens there: a real refused connection
    result = harness.run(PERMISSIONS, state, port)
    assert result["code"] == code
    assert result["queried"] == ([] if state is None else ["loopback-network"])
    if code == "AGENT_NOT_RUNNING":
        assert result["text"] == f"Không kết nối được (cổng {port})."


# --- (b) the real agent -------------------------------------------------------------------


@pytest.fixture
def agent(token: Pkcs11Token, tmp_path: Path) -> Iterator[RunningAgent]:
    yield from running_agent(token, tmp_path)


def _sign_request(agent: RunningAgent, fp: str, algorithm: str, items: list[bytes]) -> Any:
    return {
        "manifest": agent.issuer.issue(fp, algorithm, items),
        "certificate": fp,
        "algorithm": algorithm,
        "digests": [base64.b64encode(d).decode() for d in items],
    }


REAL_SIGN = "([options, request, extra]) => window.harness.realSign(options, request, extra)"
REAL_CONNECT = "([options, extra]) => window.harness.realConnect(options, extra)"


def test_real_agent_hello_list_and_sign(
    harness: Harness, agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    cert = softhsm.certificates["p256"]
    items = digests(150)
    request = _sign_request(agent, cert.fingerprint_sha256, "ECDSA_SHA256", items)
    run = harness.run(REAL_SIGN, {"port": agent.port}, request, {})
    assert run["outcome"]["ok"]["signed"] == 150, run["outcome"]
    assert run["hello"] == {"version": 1, "state": "ready"}
    listed = {c["fingerprint"]: c for c in run["certificates"]}
    serial = x509.load_der_x509_certificate(cert.der).serial_number
    assert listed[cert.fingerprint_sha256]["serial"] == format(serial, "X")
    assert base64.b64decode(listed[cert.fingerprint_sha256]["der"]) == cert.der
    assert agent.ui.origin_requests == [ORIGIN]  # the officer approved this page once
    # Two chunks (100 + 50), in order; every signature verifies against the certificate.
    assert [(c["offset"], len(c["signatures"])) for c in run["chunks"]] == [(0, 100), (100, 50)]
    signatures = [base64.b64decode(s) for c in run["chunks"] for s in c["signatures"]]
    for digest, signature in zip(items, signatures, strict=True):
        verify(cert.der, "ECDSA_SHA256", digest, signature)
    assert run["progress"][:2] == [["consent", 0, 150], ["signing", 0, 150]]
    assert run["progress"][-1] == ["signing", 150, 150]
    assert agent.ui.consents[-1].manifest.count == 150


def test_real_agent_not_running(harness: Harness) -> None:
    port = _free_port()
    result = harness.run(REAL_CONNECT, {"port": port}, {})
    assert result["outcome"]["error"] == "AGENT_NOT_RUNNING"
    assert result["outcome"]["vi"] == f"Không kết nối được (cổng {port})."


def test_real_agent_too_old(harness: Harness, agent: RunningAgent) -> None:
    """A platform whose minimum is version 2 refuses the version-1 agent (threat 15)."""
    options = {"port": agent.port, "versions": [1, 2], "minVersion": 2}
    result = harness.run(REAL_CONNECT, options, {"list": False})
    assert result["outcome"]["error"] == "AGENT_TOO_OLD"
    assert result["outcome"]["detail"] == {"version": 1, "min_version": 2}


def test_real_agent_nothing_to_cancel(harness: Harness, agent: RunningAgent) -> None:
    result = harness.run(REAL_CONNECT, {"port": agent.port}, {"list": False})
    assert result == {"hello": {"version": 1, "state": "ready"}, "cancel": False, "ok": True}


def test_real_agent_cancel_mid_batch(
    harness: Harness, agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    cert = softhsm.certificates["rsa"]
    items = digests(3000)
    request = _sign_request(agent, cert.fingerprint_sha256, "RSA_PKCS1_SHA256", items)
    run = harness.run(REAL_SIGN, {"port": agent.port}, request, {"cancelAfter": 1})
    outcome = run["outcome"]
    assert outcome["error"] == "CANCELLED", outcome
    assert outcome["fromAgent"] is True
    assert 0 < outcome["detail"]["signed"] < 3000
    assert outcome["detail"]["signed"] == run["delivered"]
    assert outcome["vi"].startswith("Đã hủy ký;")
    assert run["cancelled"] is True


def test_real_agent_killed_mid_batch(
    harness: Harness, agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    cert = softhsm.certificates["rsa"]
    items = digests(3000)
    request = _sign_request(agent, cert.fingerprint_sha256, "RSA_PKCS1_SHA256", items)
    harness.run("([o, r]) => { window.harness.realSign(o, r, {}); }", {"port": agent.port}, request)
    harness.wait("() => Boolean(window.run && window.run.delivered > 0)")
    agent.stop()
    harness.wait("() => window.run.outcome !== null")
    run = harness.run("() => window.run")
    outcome = run["outcome"]
    assert outcome["error"] == "CONNECTION_LOST", outcome
    delivered = run["delivered"]
    assert 0 < delivered < 3000
    assert outcome["detail"] == {"signed": delivered}
    assert outcome["vi"] == f"Mất kết nối sau {delivered} chữ ký."
    # What was delivered is kept, and valid.
    signatures = [base64.b64decode(s) for c in run["chunks"] for s in c["signatures"]]
    assert len(signatures) == delivered
    for digest, signature in zip(items, signatures[:5], strict=False):
        verify(cert.der, "RSA_PKCS1_SHA256", digest, signature)


def test_real_lna_denied(browser: Any, agent: RunningAgent) -> None:
    """Chromium 156 blocks a public origin's ws://127.0.0.1 until the officer allows it.

    Headless Chromium answers the permission prompt with "deny", so this is the real check:
    the connection is blocked (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS) even though the
    agent is listening, and the permission then reads "denied".
    """
    h = Harness(browser, allow_loopback=False)
    try:
        before = h.run(
            "async () => (await navigator.permissions.query({name: 'loopback-network'})).state"
        )
        assert before == "prompt"
        result = h.run(REAL_CONNECT, {"port": agent.port}, {"list": False})
        assert result["outcome"]["error"] == "LNA_DENIED"
        assert result["outcome"]["vi"] == "Trình duyệt chặn truy cập mạng cục bộ."
        assert agent.ui.origin_requests == []
    finally:
        h.close()


def test_csp_allows_the_config_block_and_the_modules(harness: Harness) -> None:
    """A JSON data block is not script: under the platform's CSP (no 'unsafe-inline') the
    modules run, the block is read, and no violation is reported (the fixture checks)."""
    value = harness.run(
        "() => JSON.parse(document.getElementById('kyso-signing-config').textContent)"
    )
    assert value == {"mode": "prepare", "texts": {"sign": "Ký số"}}
    violations = harness.run("() => window.cspViolations")
    assert violations == []


def test_every_text_the_scripts_use_is_in_the_catalogue() -> None:
    """signing-page.js and read-certificate.js read texts by key from the page configuration:
    each key must be in signpage.toml, in both languages, and the catalogue has no stray key."""
    used: set[str] = set()
    for name in ("signing-page.js", "read-certificate.js"):
        source = (STATIC / name).read_text(encoding="utf-8")
        used |= set(re.findall(r"\bT\.([a-z_]+)", source))
        used |= set(re.findall(r"\bfill\(\"([a-z_]+)\"", source))
        # Keys chosen in code (const key = done ? "signed_batch" : "signing_batch"; T[key]).
        if "T[" in source:
            used |= set(re.findall(r"\"([a-z]+_[a-z_]+)\"", source)) & set(sign_page_texts("vi"))
    template = (ROOT / "platform/templates/users/certificate.html").read_text(encoding="utf-8")
    keys = re.search(r"set read_keys = \[(.*?)\]", template, re.S)
    assert keys is not None
    read_keys = set(re.findall(r'"([a-z_]+)"', keys.group(1)))
    # The certificate page's own versions of some texts (signpage.read_<key>).
    own = re.search(r"set read_own = \[(.*?)\]", template, re.S)
    assert own is not None
    read_keys |= {f"read_{key}" for key in re.findall(r'"([a-z_]+)"', own.group(1))}
    vi, en = sign_page_texts("vi"), sign_page_texts("en")
    assert set(vi) == set(en)
    assert used - set(vi) == set()
    assert read_keys - set(vi) == set()
    # The templates use the rest (note, buttons, labels).
    templates = template + (ROOT / "platform/templates/signing/_sign_box.html").read_text("utf-8")
    in_templates = set(re.findall(r"signpage\.([a-z_]+)", templates))
    assert set(vi) - used - read_keys - in_templates == set()
    assert all(vi[k] != en[k] for k in vi)
