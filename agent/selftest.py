"""``kyso-agent --self-test``: the installed agent checks itself end to end, then exits.

What it proves, on the PC where it runs (and in CI on the frozen bundle): the configuration
loads, the token driver loads, the real WebSocket server starts on loopback, a page-like client
connects, a page from an unknown origin is refused, the token's certificates are listed, a few
digests are signed under a manifest, and every signature verifies with the certificate's key.

It never widens what the installed agent trusts: the server it starts is its own, on a free
port, allowing one origin (``SELFTEST_ORIGIN``) whose manifest key is generated in memory for
this run; the installed origins and the officer's paired ones are not loaded, nothing is
written to the configuration, and the list of used batch ids goes to a temporary folder. The
token driver comes only from the machine config, the officer's file or discovery, exactly as
for the agent itself: nothing here takes a module path from a socket.

The PIN comes from the environment variable ``KYSO_SELFTEST_PIN`` (CI, SoftHSM), or is typed on
the terminal. ``KYSO_SELFTEST_CERTIFICATE`` (a SHA-256 fingerprint) limits the test to one
certificate; by default every certificate that can sign now is tested, with every algorithm its
key supports. A wrong PIN is never retried (it would count towards locking the token).

The client is a minimal RFC 6455 client written here on purpose: an implementation independent
of the server's library, as a browser is (and ``websockets`` stays in agent/server.py alone).

Exit codes: 0 passed; 2 configuration problem; 3 the server could not start; 4 the token driver
could not be loaded; 10 no token or no usable certificate; 11 no PIN; 12 connecting as a page
failed, or an unknown page was not refused; 13 signing failed (the agent's error code is
printed); 14 a signature did not verify.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import getpass
import hashlib
import json
import os
import socket
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509 import load_der_x509_certificate

from kyso.agent.config import (
    AgentConfig,
    AllowedOrigin,
    ConfigError,
    load_config,
    resolve_module,
)
from kyso.agent.errors import AgentError
from kyso.agent.i18n import tr
from kyso.agent.manifest import AUDIENCE, MANIFEST_TYPE, ReplayGuard, commitment
from kyso.agent.server import PortInUse, ServerThread
from kyso.agent.service import AgentService, BatchOutcome, ConsentRequest
from kyso.agent.token.model import Algorithm, ModuleLoadError
from kyso.agent.token.pkcs11_token import Pkcs11Token

EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
EXIT_SERVER: Final = 3
EXIT_MODULE: Final = 4
EXIT_NO_CERTIFICATE: Final = 10
EXIT_NO_PIN: Final = 11
EXIT_CONNECTION: Final = 12
EXIT_SIGNING: Final = 13
EXIT_VERIFY: Final = 14

PIN_ENV: Final = "KYSO_SELFTEST_PIN"
CERTIFICATE_ENV: Final = "KYSO_SELFTEST_CERTIFICATE"
SELFTEST_ORIGIN: Final = "https://self-test.kyso.invalid"
UNKNOWN_ORIGIN: Final = "https://not-allowed.kyso.invalid"
DIGEST_COUNT: Final = 5
TIMEOUT_SECONDS: Final = 60.0
_WS_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


class SelfTestFailed(AgentError):
    """A step failed: ``detail`` says what happened and what to do; ``code`` is the exit code."""

    def __init__(self, step: str, code: int, detail: str) -> None:
        super().__init__(detail)
        self.step = step
        self.code = code
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# A minimal WebSocket client (RFC 6455): what a browser page does, nothing more
# ---------------------------------------------------------------------------------------------


class HandshakeRefused(AgentError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _Closed(AgentError):
    pass


class WebSocketClient:
    """Text frames only, client-masked, no extensions; answers pings; blocking with a timeout."""

    def __init__(self, port: int, origin: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self._handshake(port, origin)
        except BaseException:
            self._sock.close()
            raise

    def _handshake(self, port: int, origin: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (
            "GET / HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Origin: {origin}\r\n\r\n"
        )
        self._sock.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._sock.recv(4096)
            if not chunk or len(head) > 65536:
                raise ConnectionError("the agent closed the connection during the handshake")
            head += chunk
        head, _, self._buffer = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        if status != 101:
            raise HandshakeRefused(status)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        accept = hashlib.sha1((key + _WS_GUID).encode())  # noqa: S324 - as RFC 6455 says
        expected = base64.b64encode(accept.digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ConnectionError("the agent's handshake answer is not a WebSocket one")

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise _Closed("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    def send(self, message: Mapping[str, Any]) -> None:
        self._send_frame(0x1, json.dumps(message).encode("utf-8"))

    def recv(self) -> dict[str, Any]:
        """The next JSON text message (fragments joined, pings answered)."""
        parts: list[bytes] = []
        while True:
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if second & 0x80:
                raise ConnectionError("the agent sent a masked frame")
            if length == 126:
                (length,) = struct.unpack("!H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read(8))
            payload = self._read(length)
            if opcode == 0x8:
                raise _Closed("the agent closed the connection")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x1, 0x0):
                parts.append(payload)
                if first & 0x80:
                    message: dict[str, Any] = json.loads(b"".join(parts).decode("utf-8"))
                    return message
                continue
            if opcode != 0xA:
                raise ConnectionError(f"unexpected WebSocket frame (opcode {opcode})")

    def request(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Sends a request; returns its replies up to the terminal one (events are skipped)."""
        self.send(message)
        replies: list[dict[str, Any]] = []
        while True:
            reply = self.recv()
            if reply.get("id") != message["id"]:
                continue
            replies.append(reply)
            if reply["type"] not in ("progress", "signatures"):
                return replies

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, struct.pack("!H", 1000))
        self._sock.close()


# ---------------------------------------------------------------------------------------------
# The platform's part (a manifest issuer whose key lives in memory for this run)
# ---------------------------------------------------------------------------------------------


class _Issuer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.issued: set[str] = set()

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def manifest(self, certificate: str, algorithm: str, digests: list[bytes]) -> str:
        now = int(time.time())
        batch_id = f"selftest-{uuid.uuid4().hex[:16]}"
        self.issued.add(batch_id)
        claims = {
            "aud": AUDIENCE,
            "jti": batch_id,
            "iat": now,
            "exp": now + 300,
            "origin": SELFTEST_ORIGIN,
            "certificate": certificate,
            "algorithm": algorithm,
            "count": len(digests),
            "digests": commitment(digests),
            "summary": {
                "facility": "Kyso self-test",
                "people": 1,
                "doses": len(digests),
                "first_date": "2022-01-01",
                "last_date": "2022-01-01",
            },
            "code": "SELF-TEST",
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"typ": MANIFEST_TYPE})


class SelfTestUI:
    """The officer's part: approves only this run's own origin and batches, with the given PIN."""

    def __init__(self, issuer: _Issuer, pin: Callable[[], str | None]) -> None:
        self._issuer = issuer
        self._pin = pin
        self.outcomes: list[BatchOutcome] = []

    async def approve_origin(self, origin: str) -> bool:
        return origin == SELFTEST_ORIGIN

    async def ask_consent_and_pin(self, request: ConsentRequest) -> str | None:
        if (
            request.origin != SELFTEST_ORIGIN
            or request.manifest.batch_id not in self._issuer.issued
        ):
            return None
        return self._pin()

    def signing_progress(self, signed: int, total: int) -> None:
        pass

    def batch_finished(self, outcome: BatchOutcome) -> None:
        self.outcomes.append(outcome)


# ---------------------------------------------------------------------------------------------
# Checking signatures as the platform does
# ---------------------------------------------------------------------------------------------


def verify_signature(cert_der: bytes, algorithm: str, digest: bytes, signature: bytes) -> bool:
    key = load_der_x509_certificate(cert_der).public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if algorithm == Algorithm.RSA_PKCS1_SHA256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, padding.PKCS1v15(), prehashed)
        elif algorithm == Algorithm.RSA_PSS_SHA256 and isinstance(key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            key.verify(signature, digest, pss, prehashed)
        elif algorithm == Algorithm.ECDSA_SHA256 and isinstance(key, ec.EllipticCurvePublicKey):
            half = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * half:
                return False
            r = int.from_bytes(signature[:half], "big")
            s = int.from_bytes(signature[half:], "big")
            key.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(prehashed))
        else:
            return False
    except InvalidSignature:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class _Report:
    def __init__(self, language: str, out: TextIO) -> None:
        self.language = language
        self.out = out

    def t(self, key: str, **values: object) -> str:
        return tr(f"selftest.{key}", self.language, **values)

    def ok(self, step: str, detail: str) -> None:
        print(self.t("ok", step=self.t(f"step_{step}"), detail=detail), file=self.out, flush=True)

    def fail(self, step: str, code: int, key: str, **values: object) -> SelfTestFailed:
        return SelfTestFailed(step, code, self.t(key, **values))


def run_self_test(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] = os.environ,
    out: TextIO | None = None,
    read_secret: Callable[[str], str] | None = None,
    stdin_is_terminal: bool | None = None,
) -> int:
    """Runs every step; prints one line per step; returns the exit code (see the docstring)."""
    language = args.language or "vi"
    report = _Report(language, out or sys.stdout)
    print(report.t("title"), file=report.out, flush=True)
    try:
        try:
            config = load_config(args.config, args.user_config, state_dir=args.state_dir)
        except ConfigError as exc:
            raise SelfTestFailed("config", EXIT_CONFIG, exc.text.get(language)) from None
        report.language = language = args.language or config.language
        report.ok("config", report.t("config_ok", config=config.machine_config_path))
        try:
            module = resolve_module(config)
        except ConfigError as exc:
            raise SelfTestFailed("module", EXIT_CONFIG, exc.text.get(language)) from None
        try:
            token = Pkcs11Token(module)
        except ModuleLoadError as exc:
            detail = tr("cli.module_load_failed", language, module=module, error=exc)
            raise SelfTestFailed("module", EXIT_MODULE, detail) from None
        report.ok("module", report.t("module_ok", module=module))
        try:
            terminal = sys.stdin.isatty() if stdin_is_terminal is None else stdin_is_terminal
            pin_source = _PinSource(report, env, read_secret or getpass.getpass, terminal)
            _exercise(config, token, report, env, pin_source)
        finally:
            token.close()
    except SelfTestFailed as failure:
        step = report.t(f"step_{failure.step}")
        print(report.t("failed", step=step, detail=failure.detail), file=report.out)
        print(report.t("failed_summary", step=step, code=failure.code), file=report.out)
        report.out.flush()
        return failure.code
    print(report.t("passed"), file=report.out, flush=True)
    return EXIT_OK


class _PinSource:
    """The PIN, asked once: from the environment, else typed on a terminal."""

    def __init__(
        self,
        report: _Report,
        env: Mapping[str, str],
        read_secret: Callable[[str], str],
        terminal: bool,
    ) -> None:
        self._report = report
        self._env = env
        self._read_secret = read_secret
        self._terminal = terminal
        self.pin: str | None = None

    def obtain(self) -> str:
        report = self._report
        pin = self._env.get(PIN_ENV)
        source = report.t("pin_from_env")
        if not pin and self._terminal:
            try:
                pin = self._read_secret(report.t("pin_prompt"))
            except (EOFError, KeyboardInterrupt):
                pin = ""
            source = report.t("pin_from_prompt")
        if not pin:
            raise report.fail("pin", EXIT_NO_PIN, "pin_missing")
        report.ok("pin", report.t("pin_ok", source=source))
        self.pin = pin
        return pin


def _exercise(
    installed: AgentConfig,
    token: Pkcs11Token,
    report: _Report,
    env: Mapping[str, str],
    pins: _PinSource,
) -> None:
    issuer = _Issuer()
    ui = SelfTestUI(issuer, lambda: pins.pin)
    with tempfile.TemporaryDirectory(prefix="kyso-selftest-") as state:
        # The installed limits, but only this run's origin, on a free port, no pairing.
        config = dataclasses.replace(
            installed,
            port=0,
            origins=(AllowedOrigin.create(SELFTEST_ORIGIN, issuer.public_pem),),
            state_dir=Path(state),
        )

        def make_service() -> AgentService:
            guard = ReplayGuard(Path(state) / "used-batches.json")
            return AgentService(config, token, ui, guard, hotplug_interval=None)

        thread = ServerThread(config, make_service, port=0)
        try:
            port = thread.start()
        except (PortInUse, OSError) as exc:
            raise report.fail("server", EXIT_SERVER, "server_failed", error=exc) from None
        try:
            report.ok("server", report.t("server_ok", port=port))
            _refuse_unknown(port, report)
            _as_a_page(port, report, issuer, env, pins)
        finally:
            thread.stop()


def _refuse_unknown(port: int, report: _Report) -> None:
    try:
        client = WebSocketClient(port, UNKNOWN_ORIGIN)
    except HandshakeRefused as refused:
        if refused.status == 403:
            report.ok("refuse", report.t("refuse_ok", origin=UNKNOWN_ORIGIN, status=403))
            return
        error: object = refused
    except (OSError, ValueError) as exc:
        error = exc
    else:
        client.close()
        error = "HTTP 101"
    raise report.fail(
        "refuse", EXIT_CONNECTION, "refuse_failed", origin=UNKNOWN_ORIGIN, error=error
    )


def _as_a_page(
    port: int, report: _Report, issuer: _Issuer, env: Mapping[str, str], pins: _PinSource
) -> None:
    try:
        client = WebSocketClient(port, SELFTEST_ORIGIN)
        hello = client.request({"type": "hello", "id": "h1", "versions": [1]})[-1]
    except (OSError, ValueError, HandshakeRefused, _Closed) as exc:
        raise report.fail("connect", EXIT_CONNECTION, "connect_failed", error=exc) from None
    try:
        if hello.get("type") != "hello":
            raise report.fail("connect", EXIT_CONNECTION, "connect_failed", error=hello)
        report.ok(
            "connect", report.t("connect_ok", origin=SELFTEST_ORIGIN, version=hello["version"])
        )
        if hello.get("state") == "no_token":
            raise report.fail("token", EXIT_NO_CERTIFICATE, "no_token")
        report.ok("token", report.t("token_ok"))
        for certificate, algorithm in _candidates(client, report, env):
            _sign_and_verify(client, report, issuer, pins, certificate, algorithm)
    except (OSError, ValueError, _Closed) as exc:
        raise report.fail("connect", EXIT_CONNECTION, "connect_failed", error=exc) from None
    finally:
        client.close()


def _candidates(
    client: WebSocketClient, report: _Report, env: Mapping[str, str]
) -> list[tuple[dict[str, Any], str]]:
    reply = client.request({"type": "list_certificates", "id": "c1"})[-1]
    if reply.get("type") != "certificates":
        raise report.fail("certificates", EXIT_CONNECTION, "connect_failed", error=reply)
    wanted = (env.get(CERTIFICATE_ENV) or "").strip().lower()
    now = datetime.now(UTC)
    usable = [
        c
        for c in reply["certificates"]
        if (not wanted or c["fingerprint"] == wanted) and _can_sign(c, now)
    ]
    if not usable:
        raise report.fail(
            "certificates", EXIT_NO_CERTIFICATE, "no_certificate", fingerprint=wanted or "—"
        )
    tokens = sorted({str(c.get("token", "")) for c in usable})
    if len(tokens) > 1:
        # One PIN is typed once: trying it on a second token would spend that token's tries.
        raise report.fail(
            "certificates",
            EXIT_NO_CERTIFICATE,
            "several_tokens",
            tokens=", ".join(tokens),
            fingerprints=", ".join(f"{c['fingerprint']} ({c['token']})" for c in usable),
        )
    report.ok(
        "certificates",
        report.t("certificates_ok", usable=len(usable), total=len(reply["certificates"])),
    )
    return [(c, algorithm) for c in usable for algorithm in c["algorithms"]]


def _can_sign(certificate: Mapping[str, Any], now: datetime) -> bool:
    def when(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    usage = {"digitalSignature", "nonRepudiation"} & set(certificate["key_usage"])
    return bool(usage) and when(certificate["not_before"]) <= now <= when(certificate["not_after"])


def _sign_and_verify(
    client: WebSocketClient,
    report: _Report,
    issuer: _Issuer,
    pins: _PinSource,
    certificate: Mapping[str, Any],
    algorithm: str,
) -> None:
    if pins.pin is None:
        pins.obtain()
    subject = certificate["subject"]
    digests = [hashlib.sha256(os.urandom(32)).digest() for _ in range(DIGEST_COUNT)]
    request = {
        "type": "sign",
        "id": f"s{uuid.uuid4().hex[:8]}",
        "manifest": issuer.manifest(certificate["fingerprint"], algorithm, digests),
        "certificate": certificate["fingerprint"],
        "algorithm": algorithm,
        "digests": [base64.b64encode(d).decode("ascii") for d in digests],
    }
    replies = client.request(request)
    final = replies[-1]
    if final.get("type") != "result":
        message = final.get("message", {})
        text = message.get(report.language, "") if isinstance(message, dict) else str(message)
        raise report.fail(
            "sign",
            EXIT_SIGNING,
            "sign_failed",
            algorithm=algorithm,
            subject=subject,
            error_code=str(final.get("code", final.get("type"))),
            message=text,
        )
    signatures: list[bytes] = []
    for reply in replies:
        if reply["type"] == "signatures":
            signatures += [base64.b64decode(s) for s in reply["signatures"]]
    report.ok(
        "sign", report.t("sign_ok", count=len(signatures), algorithm=algorithm, subject=subject)
    )
    der = base64.b64decode(certificate["der"])
    if len(signatures) != len(digests):
        raise report.fail(
            "verify", EXIT_VERIFY, "verify_failed", index=len(signatures) + 1, subject=subject
        )
    for index, (digest, signature) in enumerate(zip(digests, signatures, strict=True), start=1):
        if not verify_signature(der, algorithm, digest, signature):
            raise report.fail("verify", EXIT_VERIFY, "verify_failed", index=index, subject=subject)
    report.ok("verify", report.t("verify_ok", count=len(signatures), subject=subject))
