"""Every agent-side item of docs/threat-model.md (test_tN is item N), on the real server and token.

"No token operation" is checked with the token layer's own counters (Pkcs11Token.stats), and
"no dialog" with the scripted UI's record of what the officer would have seen.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.agent_harness import ORIGIN, RunningAgent, ScriptedUI, running_agent, start_agent
from support.platform_keys import ManifestIssuer, b64
from support.signing import collect, digests, sign_request, verify
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from kyso.agent.console import ConsoleUI
from kyso.agent.logs import log_path, remove_logging, setup_logging
from kyso.agent.service import ConsentRequest
from kyso.agent.token.model import PinStatus
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedCertificate, ProvisionedToken, user_logged_in

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def agent(token: Pkcs11Token, tmp_path: Path) -> Iterator[RunningAgent]:
    yield from running_agent(token, tmp_path)


class Unchanged:
    """Asserts that no token operation and no dialog happened inside the block.

    ``lookups=True`` allows reading the certificate list (a public-object session, no login),
    for checks that need to know which certificates the token holds.
    """

    def __init__(self, agent: RunningAgent, *, lookups: bool = False) -> None:
        self.agent = agent
        self.lookups = lookups

    def __enter__(self) -> None:
        self.stats = self.agent.token.stats
        self.dialogs = len(self.agent.ui.consents)

    def __exit__(self, *exc: object) -> None:
        after = self.agent.token.stats
        if not self.lookups:
            assert after.sessions_opened == self.stats.sessions_opened
            assert after.listings == self.stats.listings
        assert after.logins == self.stats.logins
        assert after.signatures == self.stats.signatures
        assert len(self.agent.ui.consents) == self.dialogs


def raw_handshake(port: int, headers: dict[str, str]) -> str:
    """Sends an upgrade request with exactly these headers; returns the status line."""
    lines = ["GET / HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    lines += [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096).decode("latin-1").split("\r\n")[0]


# 1 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        None,
        "null",
        "http://tiemchung.example.vn",
        "https://tiemchung.example.vn:8443",
        "https://tiemchung.example.vn.evil.example",
        "https://xn--tiemchng-3ya.example.vn",
        "https://TIEMCHUNG.example.vn",
        "https://tiemchung.example.vn/",
    ],
)
def test_t1_foreign_origins_are_refused_at_the_handshake(
    agent: RunningAgent, origin: str | None
) -> None:
    headers = {"Host": f"127.0.0.1:{agent.port}"}
    if origin is not None:
        headers["Origin"] = origin
    with Unchanged(agent):
        assert raw_handshake(agent.port, headers) == "HTTP/1.1 403 Forbidden"
        with pytest.raises(InvalidStatus) as info:
            connect(agent.url, origin=origin)  # type: ignore[arg-type]
        assert info.value.response.status_code == 403


def test_t1_origin_inside_the_payload_is_ignored(agent: RunningAgent) -> None:
    page = agent.page()
    reply = page.request({"type": "hello", "id": "h1", "versions": [1], "origin": ORIGIN})[-1]
    assert reply["code"] == "FIELD_NOT_ALLOWED"


def test_t1_two_origins_header_refused(agent: RunningAgent) -> None:
    line = raw_handshake(agent.port, {"Host": f"127.0.0.1:{agent.port}", "Origin": ORIGIN})
    assert line == "HTTP/1.1 101 Switching Protocols"
    lines = ["GET / HTTP/1.1", f"Host: 127.0.0.1:{agent.port}", f"Origin: {ORIGIN}"]
    lines += [f"Origin: {ORIGIN}", "Upgrade: websocket", "Connection: Upgrade"]
    lines += ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 403")


# 2 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["rebind.evil.example:{port}", "127.0.0.1:1", "10.0.0.1:{port}"])
def test_t2_dns_rebinding_host_refused(agent: RunningAgent, host: str) -> None:
    headers = {"Host": host.format(port=agent.port), "Origin": ORIGIN}
    with Unchanged(agent):
        assert raw_handshake(agent.port, headers) == "HTTP/1.1 403 Forbidden"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_t2_loopback_hosts_accepted(agent: RunningAgent, host: str) -> None:
    headers = {"Host": host.format(port=agent.port), "Origin": ORIGIN}
    assert raw_handshake(agent.port, headers) == "HTTP/1.1 101 Switching Protocols"


def _non_loopback_addresses() -> list[str]:
    found = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None, family):
                found.add(str(info[4][0]))
        except OSError:
            pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for UDP connect
            found.add(probe.getsockname()[0])
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith(("127.", "::1")) and a != "0.0.0.0")


def test_t2_bound_to_loopback_only(agent: RunningAgent) -> None:
    assert agent.thread.server is not None
    for server in agent.thread.server._servers:
        for sock in server.sockets:
            assert sock.getsockname()[0] in ("127.0.0.1", "::1")
    for address in _non_loopback_addresses():
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            assert sock.connect_ex((address, agent.port)) != 0, address


def test_t2_no_plain_http_endpoint(agent: RunningAgent) -> None:
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as sock:
        request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{agent.port}\r\nOrigin: {ORIGIN}\r\n\r\n"
        sock.sendall(request.encode())
        status = sock.recv(4096).decode("latin-1").split("\r\n")[0]
    assert not status.startswith("HTTP/1.1 2"), status


# 3 -------------------------------------------------------------------------------------------


def _children() -> set[str]:
    pid = os.getpid()
    found: set[str] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= set((task / "children").read_text().split())
    return found


@pytest.mark.parametrize(
    "kind", ["openUrl", "exec", "install", "setConfig", "loadModule", "update"]
)
def test_t3_command_surface(agent: RunningAgent, kind: str) -> None:
    page = agent.page()
    page.hello()
    children = _children()
    with Unchanged(agent):
        reply = page.request(
            {"type": kind, "id": "a1", "url": "https://evil.example", "path": "/bin/sh"}
        )[-1]
    assert reply["code"] == "UNKNOWN_TYPE"
    assert _children() == children
    assert page.hello()["type"] == "hello"  # still answering


def test_t3_unknown_field(agent: RunningAgent) -> None:
    page = agent.page()
    page.hello()
    reply = page.request({"type": "list_certificates", "id": "a1", "verbose": True})[-1]
    assert reply["code"] == "FIELD_NOT_ALLOWED"
    assert reply["field"] == "verbose"


# 4 -------------------------------------------------------------------------------------------


def test_t4_module_field_refused(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    page = agent.page()
    page.hello()
    request = sign_request(
        agent, softhsm.certificates["p256"].fingerprint_sha256, "ECDSA_SHA256", digests(1)
    )
    request["module"] = "/tmp/evil.so"
    with Unchanged(agent):
        reply = page.request(request)[-1]
    assert reply["code"] == "FIELD_NOT_ALLOWED"
    assert reply["field"] == "module"


def _run_cli(
    tmp_path: Path, config: str, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "agent.toml"
    path.write_text(config, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "kyso.agent.cli", "--headless", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("module", ["libsofthsm2.so", "relative/dir/x.so", "/tmp/evil-pkcs11.so"])
def test_t4_untrusted_module_path_stops_the_agent(tmp_path: Path, module: str) -> None:
    if module.startswith("/tmp"):
        Path(module).write_bytes(b"\x7fELF")
    result = _run_cli(tmp_path, f'pkcs11_module = "{module}"\nport = 47999\n')
    assert result.returncode == 2, result
    assert "PKCS#11" in result.stderr
    assert "Traceback" not in result.stderr


# 5 -------------------------------------------------------------------------------------------


def test_t5_hello_reveals_only_version_and_state(
    agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    page = agent.page()
    page.send({"type": "hello", "id": "h1", "versions": [1]})
    raw = page.ws.recv(timeout=10)
    assert isinstance(raw, str)
    assert set(json.loads(raw)) == {"type", "id", "version", "state"}
    for secret in [
        softhsm.label,
        softhsm.serial,
        softhsm.module_path,
        socket.gethostname(),
        *(c.fingerprint_sha256 for c in softhsm.certificates.values()),
        *(format(c.certificate.serial_number, "X") for c in softhsm.certificates.values()),
    ]:
        assert secret not in raw


def test_t5_certificate_list_only_after_approval(agent: RunningAgent) -> None:
    agent.ui.approve = False
    page = agent.page()
    page.hello()
    with Unchanged(agent):
        reply = page.request({"type": "list_certificates", "id": "c1"})[-1]
    assert reply["code"] == "ORIGIN_NOT_APPROVED"


# 6 -------------------------------------------------------------------------------------------

SECOND_ORIGIN = "https://other-platform.example.vn"


@pytest.fixture
def two_origin_agent(
    token: Pkcs11Token, tmp_path: Path
) -> Iterator[tuple[RunningAgent, ManifestIssuer]]:
    from kyso.agent.config import AgentConfig, AllowedOrigin
    from kyso.agent.manifest import ReplayGuard
    from kyso.agent.server import ServerThread
    from kyso.agent.service import AgentService

    issuer, other = ManifestIssuer(ORIGIN), ManifestIssuer(SECOND_ORIGIN)
    config = AgentConfig(
        port=0,
        origins=(
            AllowedOrigin.create(issuer.origin, issuer.public_pem),
            AllowedOrigin.create(other.origin, other.public_pem),
        ),
        state_dir=tmp_path,
    )
    ui = ScriptedUI()
    thread = ServerThread(
        config, lambda: AgentService(config, token, ui, ReplayGuard(tmp_path / "u.json")), port=0
    )
    port = thread.start()
    yield RunningAgent(port, thread, ui, issuer, token, config), other
    thread.stop()


def _manifest_cases(
    agent: RunningAgent, other: ManifestIssuer, fp: str
) -> dict[str, tuple[dict[str, Any], str]]:
    items = digests(5)
    good = sign_request(agent, fp, "ECDSA_SHA256", items)
    cases: dict[str, tuple[dict[str, Any], str]] = {}
    cases["missing"] = ({**good, "manifest": ""}, "MANIFEST_INVALID")
    forged = ManifestIssuer(ORIGIN).issue(fp, "ECDSA_SHA256", items)
    cases["forged"] = ({**good, "manifest": forged}, "MANIFEST_INVALID")
    expired = agent.issuer.issue(fp, "ECDSA_SHA256", items, now=time.time() - 4000)
    cases["expired"] = ({**good, "manifest": expired}, "MANIFEST_EXPIRED")
    swapped = [*good["digests"][:4], b64(b"\x01" * 32)]
    cases["digest_not_in_manifest"] = ({**good, "digests": swapped}, "MANIFEST_MISMATCH")
    cases["count_mismatch"] = ({**good, "digests": good["digests"][:4]}, "MANIFEST_MISMATCH")
    cases["other_origins_key"] = (
        {**good, "manifest": other.issue(fp, "ECDSA_SHA256", items)},
        "MANIFEST_INVALID",
    )
    claims = agent.issuer.claims(fp, "ECDSA_SHA256", items)
    claims["origin"] = SECOND_ORIGIN
    cases["other_origins_claim"] = (
        {**good, "manifest": agent.issuer.sign_claims(claims)},
        "MANIFEST_MISMATCH",
    )
    cases["other_certificate"] = ({**good, "certificate": "0" * 64}, "MANIFEST_MISMATCH")
    cases["other_algorithm"] = ({**good, "algorithm": "RSA_PSS_SHA256"}, "MANIFEST_MISMATCH")
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "forged",
        "expired",
        "digest_not_in_manifest",
        "count_mismatch",
        "other_origins_key",
        "other_origins_claim",
        "other_certificate",
        "other_algorithm",
    ],
)
def test_t6_manifest_refused_before_any_dialog_or_token_operation(
    two_origin_agent: tuple[RunningAgent, ManifestIssuer], softhsm: ProvisionedToken, case: str
) -> None:
    agent, other = two_origin_agent
    fp = softhsm.certificates["p256"].fingerprint_sha256
    request, code = _manifest_cases(agent, other, fp)[case]
    page = agent.page()
    page.hello()
    stats = agent.token.stats
    reply = page.request(request)[-1]
    assert reply["code"] == code
    after = agent.token.stats
    assert (after.sessions_opened, after.logins, after.signatures, after.listings) == (
        stats.sessions_opened,
        stats.logins,
        stats.signatures,
        stats.listings,
    )
    assert agent.ui.consents == []


def test_t6_replayed_batch_refused(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    fp = softhsm.certificates["p256"].fingerprint_sha256
    request = sign_request(agent, fp, "ECDSA_SHA256", digests(3))
    page = agent.page()
    page.hello()
    assert page.request(request)[-1]["type"] == "result"
    with Unchanged(agent):
        assert page.request(request)[-1]["code"] == "MANIFEST_REPLAYED"


def test_t6_replay_refused_after_agent_restart(
    token: Pkcs11Token, tmp_path: Path, softhsm: ProvisionedToken
) -> None:
    fp = softhsm.certificates["p256"].fingerprint_sha256
    issuer = ManifestIssuer(ORIGIN)
    first = start_agent(token, tmp_path, issuer=issuer)
    request = sign_request(first, fp, "ECDSA_SHA256", digests(2))
    page = first.page()
    page.hello()
    assert page.request(request)[-1]["type"] == "result"
    first.stop()
    second = start_agent(token, tmp_path, issuer=issuer)
    try:
        page = second.page()
        page.hello()
        assert page.request(request)[-1]["code"] == "MANIFEST_REPLAYED"
    finally:
        second.stop()


# 7 -------------------------------------------------------------------------------------------


def test_t7_second_request_during_a_dialog_is_busy(
    agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    hold = threading.Event()
    agent.ui.hold = hold
    fp = softhsm.certificates["p256"].fingerprint_sha256
    first, second = agent.page(), agent.page()
    first.hello()
    second.hello()
    first.send(sign_request(agent, fp, "ECDSA_SHA256", digests(2)))
    assert agent.ui.dialog_open.wait(10)
    reply = second.request(sign_request(agent, fp, "ECDSA_SHA256", digests(2), request_id="s2"))
    assert reply[-1]["code"] == "BUSY"
    assert len(agent.ui.consents) == 1  # one dialog at a time
    hold.set()
    assert first.until_done("s1")[-1]["type"] == "result"


def _consent(
    softhsm: ProvisionedToken, token: Pkcs11Token, pin_status: PinStatus
) -> ConsentRequest:
    from kyso.agent.manifest import verify_manifest

    issuer = ManifestIssuer(ORIGIN)
    cert = next(c for c in token.list_certificates())
    manifest = verify_manifest(
        issuer.issue(cert.fingerprint_sha256, "ECDSA_SHA256", digests(2)),
        key=issuer.key.public_key(),
        origin=ORIGIN,
        now=time.time(),
        max_lifetime=3600,
        request_id="s1",
    )
    return ConsentRequest(ORIGIN, cert, manifest, pin_status)


def test_t7_console_enter_alone_does_not_approve(
    softhsm: ProvisionedToken, token: Pkcs11Token
) -> None:
    import asyncio
    import io

    out = io.StringIO()
    secrets_asked: list[str] = []
    ui = ConsoleUI(
        "vi",
        out=out,
        read_line=lambda prompt: "",
        read_secret=lambda prompt: secrets_asked.append(prompt) or "123456",  # type: ignore[func-returns-value]
    )
    assert asyncio.run(ui.ask_consent_and_pin(_consent(softhsm, token, PinStatus()))) is None
    assert secrets_asked == []  # the PIN is not even asked
    text = out.getvalue()
    assert "Mã xác nhận: K7Q-4MZ" in text
    assert ORIGIN in text


def test_t7_console_question_stays_whole_while_other_lines_arrive(
    softhsm: ProvisionedToken, token: Pkcs11Token
) -> None:
    """Log lines wait until the question is answered; anything else printed meanwhile is
    followed by the whole question again, so the consent text is never scrolled away."""
    import asyncio
    import io

    out = io.StringIO()
    seen: list[str] = []

    def answer(prompt: str) -> str:
        for n in range(60):
            ui.log_line(f"refused a handshake #{n}")
        seen.append(out.getvalue())
        ui.signing_progress(10, 10)  # another line printed while the question is open
        return ""

    ui = ConsoleUI("vi", out=out, read_line=answer)
    assert asyncio.run(ui.ask_consent_and_pin(_consent(softhsm, token, PinStatus()))) is None
    (during,) = seen
    assert "refused a handshake" not in during
    text = out.getvalue()
    after_progress = text.split("Đang ký: 10/10", 1)[1]
    assert "Mã xác nhận: K7Q-4MZ" in after_progress  # the consent shown whole again
    assert "[c/K]" in after_progress
    held = text.split("Nhật ký ghi trong lúc chờ câu trả lời (60 dòng", 1)[1]
    assert [f"refused a handshake #{n}" for n in range(60)] == [
        line for line in held.splitlines() if line.startswith("refused")
    ]


# 8 -------------------------------------------------------------------------------------------


def test_t8_pin_field_refused(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    page = agent.page()
    page.hello()
    request = sign_request(
        agent, softhsm.certificates["p256"].fingerprint_sha256, "ECDSA_SHA256", digests(1)
    )
    request["pin"] = "123456"
    with Unchanged(agent):
        assert page.request(request)[-1]["code"] == "FIELD_NOT_ALLOWED"


def test_t8_final_try_warning_is_shown(softhsm: ProvisionedToken, token: Pkcs11Token) -> None:
    import io

    ui = ConsoleUI("vi", out=io.StringIO())
    lines = ui.consent_lines(_consent(softhsm, token, PinStatus(count_low=True, final_try=True)))
    assert any("chỉ còn MỘT lần thử" in line for line in lines)
    ui_en = ConsoleUI("en", out=io.StringIO())
    lines = ui_en.consent_lines(_consent(softhsm, token, PinStatus(final_try=True)))
    assert any("only ONE try left" in line for line in lines)


def test_t8_wrong_pin_exactly_one_login(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    agent.ui.pin = "999999"
    page = agent.page()
    page.hello()
    before = agent.token.stats
    fp = softhsm.certificates["rsa"].fingerprint_sha256
    reply = page.request(sign_request(agent, fp, "RSA_PKCS1_SHA256", digests(2)))[-1]
    assert reply["code"] == "PIN_INCORRECT"
    assert agent.token.stats.logins == before.logins + 1
    assert agent.token.stats.signatures == before.signatures
    assert len(agent.ui.consents) == 1  # no automatic retry


# 9 -------------------------------------------------------------------------------------------


def test_t9_logged_out_after_batch_and_pin_never_logged(
    agent: RunningAgent, softhsm: ProvisionedToken, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "975311"
    caplog.set_level(logging.DEBUG)
    handler = setup_logging(agent.config.state_dir, level=logging.DEBUG)
    fp = softhsm.certificates["rsa"].fingerprint_sha256
    page = agent.page()
    page.hello()
    items = digests(20)
    wire: list[str] = []
    agent.ui.pin = canary  # wrong PIN: the error paths must not leak it either
    request = sign_request(agent, fp, "RSA_PKCS1_SHA256", items)
    page.send(request)
    wire += [json.dumps(m) for m in page.until_done("s1")]
    agent.ui.pin = softhsm.user_pin
    page.send(request)
    replies = page.until_done("s1")
    wire += [json.dumps(m) for m in replies]
    assert replies[-1]["type"] == "result"
    assert not user_logged_in(softhsm)
    remove_logging(handler)
    log_file = log_path(agent.config.state_dir).read_text(encoding="utf-8")
    assert "page connected from" in log_file  # the file is written, at DEBUG
    logged = caplog.text + "".join(wire) + log_file
    assert canary not in logged
    assert softhsm.user_pin not in caplog.text + log_file
    for digest in items:
        for text in (caplog.text, log_file):
            assert digest.hex() not in text
            assert b64(digest) not in text


# 10 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [31, 33, 64])
def test_t10_wrong_digest_sizes_refused(
    agent: RunningAgent, softhsm: ProvisionedToken, size: int
) -> None:
    page = agent.page()
    page.hello()
    request = sign_request(
        agent, softhsm.certificates["rsa"].fingerprint_sha256, "RSA_PKCS1_SHA256", digests(1)
    )
    request["digests"] = [base64.b64encode(b"\x07" * size).decode()]
    with Unchanged(agent):
        assert page.request(request)[-1]["code"] == "DIGEST_INVALID"


@pytest.mark.parametrize("algorithm", ["MD5", "SHA1", "NONE", "RSA_X_509", "SHA512withRSA"])
def test_t10_weak_algorithms_refused(
    agent: RunningAgent, softhsm: ProvisionedToken, algorithm: str
) -> None:
    page = agent.page()
    page.hello()
    request = sign_request(
        agent, softhsm.certificates["rsa"].fingerprint_sha256, "RSA_PKCS1_SHA256", digests(1)
    )
    request["algorithm"] = algorithm
    with Unchanged(agent):
        assert page.request(request)[-1]["code"] == "ALGORITHM_UNSUPPORTED"


def test_t10_mechanism_field_refused(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    page = agent.page()
    page.hello()
    request = sign_request(
        agent, softhsm.certificates["rsa"].fingerprint_sha256, "RSA_PKCS1_SHA256", digests(1)
    )
    request["mechanism"] = "CKM_RSA_X_509"
    with Unchanged(agent):
        assert page.request(request)[-1]["code"] == "FIELD_NOT_ALLOWED"


# 11 ------------------------------------------------------------------------------------------


def test_t11_signature_made_by_the_requested_certificate_only(
    agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    wanted, other = softhsm.certificates["p256"], softhsm.certificates["p384"]
    items = digests(3)
    page = agent.page()
    page.hello()
    replies = page.request(sign_request(agent, wanted.fingerprint_sha256, "ECDSA_SHA256", items))
    signatures = collect(replies)
    for digest, signature in zip(items, signatures, strict=True):
        verify(wanted.der, "ECDSA_SHA256", digest, signature)
        with pytest.raises(Exception):  # noqa: B017, PT011 - InvalidSignature or key mismatch
            verify(other.der, "ECDSA_SHA256", digest, signature)


def test_t11_unknown_certificate_refused(agent: RunningAgent) -> None:
    page = agent.page()
    page.hello()
    with Unchanged(agent, lookups=True):
        reply = page.request(sign_request(agent, "ab" * 32, "ECDSA_SHA256", digests(2)))[-1]
    assert reply["code"] == "CERTIFICATE_NOT_FOUND"


def test_t11_expired_and_non_signing_certificates_refused(
    agent: RunningAgent, softhsm: ProvisionedToken
) -> None:
    page = agent.page()
    page.hello()
    for name in ("expired", "no_signing_usage"):
        cert = softhsm.certificates[name]
        request = sign_request(
            agent, cert.fingerprint_sha256, algorithm_for(cert), digests(2), request_id=name[:8]
        )
        with Unchanged(agent, lookups=True):
            reply = page.request(request)[-1]
        assert reply["code"] == "CERTIFICATE_UNUSABLE", name


def test_t11_key_mismatch_refused(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    cert = softhsm.certificates["mismatch"]
    page = agent.page()
    page.hello()
    replies = page.request(
        sign_request(agent, cert.fingerprint_sha256, algorithm_for(cert), digests(5))
    )
    assert replies[-1]["code"] == "KEY_MISMATCH"
    assert collect(replies) == []


def algorithm_for(cert: ProvisionedCertificate) -> str:
    key = cert.certificate.public_key()
    return "ECDSA_SHA256" if isinstance(key, ec.EllipticCurvePublicKey) else "RSA_PKCS1_SHA256"


# 12 ------------------------------------------------------------------------------------------


def test_t12_oversized_message_closes_1009(agent: RunningAgent) -> None:
    page = agent.page(max_size=None)
    page.hello()
    page.ws.send("x" * (10 * 1024 * 1024))
    with pytest.raises(ConnectionClosed) as info:
        page.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    assert agent.page().hello()["type"] == "hello"


def test_t12_deep_nesting_invalid_utf8_and_binary(agent: RunningAgent) -> None:
    page = agent.page()
    page.hello()
    page.send("[" * 200_000 + "]" * 200_000)
    assert page.recv()["code"] in ("BAD_MESSAGE", "BAD_ID")
    page.ws.send(b"\x01\x02binary")
    assert page.recv()["code"] == "BAD_MESSAGE"
    page.ws.send(b'{"type":"hello","id":"\xff\xfe","versions":[1]}', text=True)
    with pytest.raises(ConnectionClosed) as info:
        page.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1007
    assert agent.page().hello()["type"] == "hello"


def test_t12_connection_flood(agent: RunningAgent) -> None:
    opened, statuses = [], []
    for _ in range(300):
        try:
            opened.append(connect(agent.url, origin=ORIGIN, open_timeout=5, legacy=True))  # type: ignore[arg-type]
        except InvalidStatus as exc:
            statuses.append(exc.response.status_code)
    refused = statuses.count(503)
    assert len(statuses) == refused
    assert len(opened) == agent.config.max_connections
    assert refused == 300 - agent.config.max_connections
    opened.pop().close()
    time.sleep(0.2)
    started = time.monotonic()
    page = agent.page()
    assert page.hello()["type"] == "hello"
    assert time.monotonic() - started < 1.0
    for ws in opened:
        ws.close()


def test_t12_idle_tcp_connections_do_not_block(agent: RunningAgent) -> None:
    idle = [socket.create_connection(("127.0.0.1", agent.port)) for _ in range(50)]
    try:
        started = time.monotonic()
        assert agent.page().hello()["type"] == "hello"
        assert time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()


# 13 ------------------------------------------------------------------------------------------


def test_t13_injected_id_is_not_reflected(agent: RunningAgent) -> None:
    page = agent.page()
    page.send('{"type":"hello","id":"x\\",\\"status\\":\\"ok","versions":[1]}')
    raw = page.ws.recv(timeout=10)
    assert isinstance(raw, str)
    assert json.loads(raw)["id"] is None
    assert '"status"' not in raw


# 15 ------------------------------------------------------------------------------------------


def test_t15_no_update_command_and_old_versions_refused(agent: RunningAgent) -> None:
    page = agent.page()
    assert page.request({"type": "hello", "id": "h1", "versions": [0]})[-1]["code"] == (
        "VERSION_UNSUPPORTED"
    )
    assert page.request({"type": "update", "id": "u1"})[-1]["code"] == "UNKNOWN_TYPE"


# 16 ------------------------------------------------------------------------------------------


def test_t16_port_taken_fails_closed(tmp_path: Path, softhsm: ProvisionedToken) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        config = f'port = {port}\npkcs11_module = "{softhsm.module_path}"\n'
        result = _run_cli(tmp_path, config, "--state-dir", str(tmp_path / "state"))
    finally:
        squatter.close()
    assert result.returncode == 3, result
    assert str(port) in result.stderr
    assert "Traceback" not in result.stderr


def test_t16_other_connection_sees_nothing(agent: RunningAgent, softhsm: ProvisionedToken) -> None:
    a, b = agent.page(), agent.page()
    a.hello()
    b.hello()
    fp = softhsm.certificates["p256"].fingerprint_sha256
    assert a.request(sign_request(agent, fp, "ECDSA_SHA256", digests(150)))[-1]["type"] == "result"
    with pytest.raises(TimeoutError):
        b.recv(timeout=0.5)
    # and B cannot cancel A's batch
    assert b.request({"type": "cancel", "id": "x", "target": "s1"})[-1]["code"] == (
        "NOTHING_TO_CANCEL"
    )


# 17 ------------------------------------------------------------------------------------------


def _closed_with(ws: Any, timeout: float) -> int | None:
    """The close code the agent sent on ``ws`` within ``timeout`` (None: still open)."""
    try:
        while True:
            ws.recv(timeout=timeout)
    except TimeoutError:
        return None
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else -1


def test_t17_silent_connections_cannot_lock_the_officer_out(agent: RunningAgent) -> None:
    """A local program opens every allowed connection with the platform's Origin, then says
    nothing: the officer's page gets in once the hello bound has passed, not never."""
    bound = agent.config.hello_timeout_seconds
    silent = [
        connect(agent.url, origin=ORIGIN, open_timeout=5, legacy=True)  # type: ignore[arg-type]
        for _ in range(agent.config.max_connections)
    ]
    opened = time.monotonic()
    with pytest.raises(InvalidStatus) as info:
        agent.page()
    assert info.value.response.status_code == 503  # the cap is really held
    page = None
    statuses: list[int] = []
    while page is None:
        assert time.monotonic() - opened < bound + 3, "the officer's page never got in"
        try:
            page = agent.page()
        except InvalidStatus as exc:
            statuses.append(exc.response.status_code)
            time.sleep(0.2)
    assert page.hello()["type"] == "hello"
    reply = page.request({"type": "list_certificates", "id": "c1"})[-1]
    assert reply["type"] == "certificates"
    assert reply["certificates"]
    assert set(statuses) == {503}
    assert bound - 0.5 <= time.monotonic() - opened < bound + 3
    assert [_closed_with(ws, 5) for ws in silent] == [4001] * len(silent)
    # The officer's own connection is not closed for having said hello once.
    assert page.hello()["type"] == "hello"


def test_t17_hello_bound_counts_from_opening_not_from_the_last_message(
    token: Pkcs11Token, tmp_path: Path
) -> None:
    """Chatter that is not a successful hello does not keep a connection in."""
    agent = start_agent(token, tmp_path, hello_timeout_seconds=1.0)
    try:
        page = agent.page()
        started = time.monotonic()
        code = None
        while code is None and time.monotonic() - started < 5:
            try:
                page.send({"type": "list_certificates", "id": "c1"})
                page.send({"type": "hello", "id": "h1", "versions": [99]})
            except ConnectionClosed:
                break
            code = _closed_with(page.ws, 0.3)
        if code is None:
            code = _closed_with(page.ws, 1)
        assert code == 4001
        assert time.monotonic() - started < 2.5
    finally:
        agent.stop()


def test_t17_idle_connections_are_closed_but_never_one_mid_batch(
    token: Pkcs11Token, softhsm: ProvisionedToken, tmp_path: Path
) -> None:
    idle_bound = 1.0
    agent = start_agent(token, tmp_path, idle_timeout_seconds=idle_bound)
    try:
        hold = threading.Event()
        agent.ui.hold = hold
        idle, busy = agent.page(), agent.page()
        idle.hello()
        busy.hello()
        fp = softhsm.certificates["p256"].fingerprint_sha256
        busy.send(sign_request(agent, fp, "ECDSA_SHA256", digests(2)))
        assert agent.ui.dialog_open.wait(10)
        started = time.monotonic()
        assert _closed_with(idle.ws, 5) == 4002
        assert idle_bound - 0.2 <= time.monotonic() - started < idle_bound + 2
        # The page whose batch waits for the officer stays, however long the dialog is open.
        time.sleep(3 * idle_bound)
        hold.set()
        assert busy.until_done("s1")[-1]["type"] == "result"
        # Once its batch is over, that page too is idle and closed after the bound.
        finished = time.monotonic()
        assert _closed_with(busy.ws, 5) == 4002
        assert idle_bound - 0.2 <= time.monotonic() - finished < idle_bound + 2
    finally:
        hold.set()
        agent.stop()
