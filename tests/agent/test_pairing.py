"""Pairing a new origin against a real HTTPS server (test CA), a real keyring backend and the
real agent: threat 1 still holds for every refused handshake, and only what the officer
compared gets pinned."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from support.agent_harness import RunningAgent, start_agent
from support.memory_keyring import MemoryKeyring
from support.platform_keys import ManifestIssuer
from support.signing import collect, digests, sign_request, verify
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kyso.agent.config import AgentConfig, key_fingerprint, load_config
from kyso.agent.pairing import (
    COOLDOWN_SECONDS,
    KEYRING_ENTRY,
    KEYRING_SERVICE,
    PENDING_SECONDS,
    WELL_KNOWN_PATH,
    OriginStore,
    PairingError,
    PairingManager,
    PairingRequest,
    pairable,
)
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken

NEW = "https://tiemchung-moi.example.vn"
NEW_HOST = "tiemchung-moi.example.vn"
DRIBBLE_SECONDS = 0.4
ELSEWHERE_HOST = "elsewhere.example.vn"


# --- an HTTPS platform with a test CA ------------------------------------------------------


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Platform:
    """An HTTPS server on 127.0.0.1 answering for several names (SNI is not checked)."""

    port: int
    ca_pem: bytes
    issuer: ManifestIssuer
    routes: dict[tuple[str, str], Callable[[], tuple[int, dict[str, str], Any]]]
    hits: list[tuple[str, str]] = field(default_factory=list)

    def context(self) -> ssl.SSLContext:
        """The fetch's trust: the test CA only, given through the Python API."""
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))

    def resolve(self, host: str) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def serve_key(self, host: str, pem: bytes) -> None:
        self.routes[(host, WELL_KNOWN_PATH)] = lambda: (
            200,
            {"Content-Type": "application/x-pem-file"},
            pem,
        )


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kyso Pairing Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NEW_HOST)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(NEW_HOST), x509.DNSName(ELSEWHERE_HOST)]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    routes: dict[tuple[str, str], Callable[[], tuple[int, dict[str, str], Any]]] = {}
    hits: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").split(":")[0]
            hits.append((host, self.path))
            route = routes.get((host, self.path))
            status, headers, body = route() if route else (404, {}, b"not found")
            # A list of chunks is dribbled: one every DRIBBLE_SECONDS (a slow, hostile server).
            chunks = body if isinstance(body, list) else [body]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(sum(len(c) for c in chunks)))
            self.end_headers()
            for i, chunk in enumerate(chunks):
                if i:
                    time.sleep(DRIBBLE_SECONDS)
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except OSError:
                    return  # the client gave up

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    issuer = ManifestIssuer(NEW)
    result = Platform(httpd.server_address[1], ca_pem, issuer, routes, hits)
    result.serve_key(NEW_HOST, issuer.public_pem.encode("ascii"))
    try:
        yield result
    finally:
        httpd.shutdown()
        httpd.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def _manager(config: AgentConfig, platform: Platform, **kw: Any) -> PairingManager:
    return PairingManager(config, verify=platform.context(), resolve=platform.resolve, **kw)


@pytest.fixture
def agent(
    token: Pkcs11Token, tmp_path: Path, platform: Platform, memory_keyring: MemoryKeyring
) -> Iterator[RunningAgent]:
    running = start_agent(
        token, tmp_path / "state", pairing=lambda config: _manager(config, platform)
    )
    try:
        yield running
    finally:
        running.stop()


def _refused(agent: RunningAgent, origin: str) -> None:
    """The handshake is refused with 403 and reaches no token and no dialog (threat 1)."""
    stats = agent.token.stats
    with pytest.raises(InvalidStatus) as info:
        connect(agent.url, origin=origin, open_timeout=10)  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    after = agent.token.stats
    assert (after.sessions_opened, after.listings, after.logins, after.signatures) == (
        stats.sessions_opened,
        stats.listings,
        stats.logins,
        stats.signatures,
    )
    assert agent.ui.consents == []
    assert agent.ui.origin_requests == []


def _requests(manager: PairingManager) -> list[PairingRequest | None]:
    seen: list[PairingRequest | None] = []
    manager.add_pairing_listener(seen.append)
    return seen


# --- the whole flow ----------------------------------------------------------------------


def test_refused_then_paired_then_the_page_signs(
    agent: RunningAgent,
    platform: Platform,
    memory_keyring: MemoryKeyring,
    softhsm: ProvisionedToken,
) -> None:
    pairing = agent.service.pairing
    assert pairing is not None
    seen = _requests(pairing)

    _refused(agent, NEW)
    assert [r.origin if r else None for r in seen] == [NEW]
    assert pairing.pending is not None
    assert pairing.pending.origin == NEW
    _refused(agent, NEW)  # still refused, and not asked twice
    assert len(seen) == 1

    fetched = pairing.fetch_key(NEW)
    expected = key_fingerprint(platform.issuer.key.public_key())
    assert fetched.fingerprint == expected
    assert platform.hits == [(NEW_HOST, WELL_KNOWN_PATH)]
    _refused(agent, NEW)  # fetched is not pinned: the officer has not confirmed yet

    approved = pairing.approve(fetched)
    assert approved.machine is False
    assert approved.fingerprint == expected
    assert seen[-1] is None
    assert pairing.pending is None
    stored = json.loads(memory_keyring.passwords[(KEYRING_SERVICE, KEYRING_ENTRY)])
    assert stored["version"] == 1
    assert [(o["origin"], o["manifest_key"].strip()) for o in stored["origins"]] == [
        (NEW, platform.issuer.public_pem.strip())
    ]

    # The page retries and connects; its manifests verify with the pinned key. Pairing was the
    # officer's consent to this page: reading the certificates asks nothing more.
    page = agent.page(origin=NEW)
    assert page.hello()["state"] == "ready"
    listed = page.request({"type": "list_certificates", "id": "c1"})
    assert listed[-1]["type"] == "certificates"
    assert agent.ui.origin_requests == []
    cert = softhsm.certificates["p256"]
    items = digests(5)
    replies = page.request(
        sign_request(platform.issuer, cert.fingerprint_sha256, "ECDSA_SHA256", items)
    )
    assert replies[-1]["type"] == "result", replies[-1]
    for digest, signature in zip(items, collect(replies), strict=True):
        verify(cert.der, "ECDSA_SHA256", digest, signature)
    # A manifest signed by another key for that origin is still refused.
    forged = sign_request(
        ManifestIssuer(NEW), cert.fingerprint_sha256, "ECDSA_SHA256", items, request_id="s2"
    )
    assert page.request(forged)[-1]["code"] == "MANIFEST_INVALID"
    page.close()

    # The officer's origins survive a restart, are listed after the administrator's, and
    # can be removed; the administrator's cannot.
    again = _manager(agent.config, platform)
    listed = again.origins()
    assert [(o.origin, o.machine) for o in listed] == [
        (agent.config.origins[0].origin, True),
        (NEW, False),
    ]
    with pytest.raises(PairingError) as info:
        again.remove(agent.config.origins[0].origin)
    assert info.value.reason == "machine_origin"
    assert "quản trị viên" in info.value.text.vi
    again.remove(NEW)
    assert again.allowed_origin(NEW) is None
    assert json.loads(memory_keyring.passwords[(KEYRING_SERVICE, KEYRING_ENTRY)])["origins"] == []


def test_declined_origin_is_refused_and_not_asked_again_for_10_minutes(
    token: Pkcs11Token, tmp_path: Path, platform: Platform, memory_keyring: MemoryKeyring
) -> None:
    clock = Clock()
    managers: list[PairingManager] = []

    def make(config: AgentConfig) -> PairingManager:
        managers.append(_manager(config, platform, clock=clock))
        return managers[-1]

    agent = start_agent(token, tmp_path / "state", pairing=make)
    try:
        seen = _requests(managers[0])
        _refused(agent, NEW)
        assert len(seen) == 1
        managers[0].decline(NEW)
        assert seen[-1] is None
        clock.now += COOLDOWN_SECONDS - 1
        _refused(agent, NEW)
        assert len(seen) == 2  # nothing new: only the None that answered the first
        clock.now += 2
        _refused(agent, NEW)
        assert seen[-1] is not None
        assert seen[-1].origin == NEW
        assert platform.hits == []  # declining never fetched anything
    finally:
        agent.stop()


def test_ignored_request_expires_and_only_one_is_pending(
    platform: Platform, memory_keyring: MemoryKeyring
) -> None:
    clock = Clock()
    config = AgentConfig(port=0)
    manager = _manager(config, platform, clock=clock)
    seen = _requests(manager)
    manager.origin_refused(NEW)
    manager.origin_refused("https://other.example.vn")  # one pending at a time
    assert [r.origin if r else None for r in seen] == [NEW]
    clock.now += PENDING_SECONDS + 1
    assert manager.pending is None  # ignored
    manager.origin_refused("https://other.example.vn")
    assert manager.pending is not None
    assert manager.pending.origin == "https://other.example.vn"
    manager.decline("https://other.example.vn")
    manager.origin_refused(NEW)
    assert manager.pending is None  # the ignored one is in its 10 minutes too
    clock.now += COOLDOWN_SECONDS
    manager.origin_refused(NEW)
    assert manager.pending is not None
    assert manager.pending.origin == NEW


@pytest.mark.parametrize(
    "origin",
    [
        "http://tiemchung-moi.example.vn",
        "https://tiemchung-moi.example.vn/",
        "https://TIEMCHUNG-MOI.example.vn",
        "https://tiemchung-moi.example.vn:443",
        "https://xn--tiemchng-3ya.example.vn",
        "https://192.0.2.10",
        "https://[2001:db8::1]",
        "https://localhost",
        "https://intranet",
        "null",
        "",
    ],
)
def test_unpairable_origins_make_no_request(
    agent: RunningAgent, origin: str, platform: Platform
) -> None:
    pairing = agent.service.pairing
    assert pairing is not None
    assert pairable(origin) is None
    if origin:
        _refused(agent, origin)
    pairing.origin_refused(origin)
    assert pairing.pending is None
    with pytest.raises(PairingError) as info:
        pairing.fetch_key(origin)
    assert info.value.reason == "not_pairable"
    assert platform.hits == []


# --- what the fetch refuses ------------------------------------------------------------------


def test_redirect_to_another_host_is_refused(
    platform: Platform, memory_keyring: MemoryKeyring
) -> None:
    platform.routes[(NEW_HOST, WELL_KNOWN_PATH)] = lambda: (
        302,
        {"Location": f"https://{ELSEWHERE_HOST}{WELL_KNOWN_PATH}"},
        b"",
    )
    platform.serve_key(ELSEWHERE_HOST, _pem(ec.generate_private_key(ec.SECP256R1())))
    manager = _manager(AgentConfig(port=0), platform)
    with pytest.raises(PairingError) as info:
        manager.fetch_key(NEW)
    assert info.value.reason == "redirect"
    assert ELSEWHERE_HOST in info.value.text.en
    assert platform.hits == [(NEW_HOST, WELL_KNOWN_PATH)]  # never followed
    assert manager.allowed_origin(NEW) is None


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
    ],
)
def test_key_that_is_not_p256_is_refused(
    platform: Platform, memory_keyring: MemoryKeyring, key: Callable[[], Any], kind: str
) -> None:
    platform.serve_key(NEW_HOST, _pem(key()))
    manager = _manager(AgentConfig(port=0), platform)
    with pytest.raises(PairingError) as info:
        manager.fetch_key(NEW)
    assert info.value.reason == "key_not_p256"
    assert kind in info.value.text.en
    assert memory_keyring.passwords == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            b"-----BEGIN PUBLIC KEY-----\n" + b"A" * 20_000 + b"\n-----END PUBLIC KEY-----\n",
            "too_large",
        ),
        (b"<html>Maintenance</html>", "key_invalid"),
    ],
)
def test_oversized_or_garbled_key_is_refused(
    platform: Platform, memory_keyring: MemoryKeyring, body: bytes, reason: str
) -> None:
    platform.routes[(NEW_HOST, WELL_KNOWN_PATH)] = lambda: (200, {}, body)
    with pytest.raises(PairingError) as info:
        _manager(AgentConfig(port=0), platform).fetch_key(NEW)
    assert info.value.reason == reason


def test_http_error_status_is_refused(platform: Platform, memory_keyring: MemoryKeyring) -> None:
    platform.routes[(NEW_HOST, WELL_KNOWN_PATH)] = lambda: (503, {}, b"busy")
    with pytest.raises(PairingError) as info:
        _manager(AgentConfig(port=0), platform).fetch_key(NEW)
    assert info.value.reason == "status"
    assert "503" in info.value.text.vi


def test_certificate_not_trusted_without_the_injected_ca(
    platform: Platform, memory_keyring: MemoryKeyring
) -> None:
    """The system trust store does not know the test CA: TLS refused, nothing fetched."""
    manager = PairingManager(AgentConfig(port=0), resolve=platform.resolve)
    with pytest.raises(PairingError) as info:
        manager.fetch_key(NEW)
    assert info.value.reason == "tls"
    assert platform.hits == []


def test_damaged_keyring_entry_is_ignored(
    platform: Platform, memory_keyring: MemoryKeyring
) -> None:
    memory_keyring.passwords[(KEYRING_SERVICE, KEYRING_ENTRY)] = "{not json"
    assert OriginStore().load() == []
    good = ManifestIssuer(NEW)
    memory_keyring.passwords[(KEYRING_SERVICE, KEYRING_ENTRY)] = json.dumps(
        {
            "version": 1,
            "origins": [
                {
                    "origin": "http://evil.example",
                    "manifest_key": good.public_pem,
                    "approved_at": "2026-01-01T00:00:00+00:00",
                },
                {
                    "origin": NEW,
                    "manifest_key": good.public_pem,
                    "approved_at": "2026-01-01T00:00:00+00:00",
                },
            ],
        }
    )
    manager = _manager(AgentConfig(port=0), platform)
    assert [o.origin for o in manager.origins()] == [NEW]


def test_a_removed_origin_loses_the_connection_it_already_had(
    agent: RunningAgent, platform: Platform, memory_keyring: MemoryKeyring
) -> None:
    """Removing a page in Settings takes effect at once, also on its open tab."""
    pairing = agent.service.pairing
    assert pairing is not None
    _refused(agent, NEW)
    pairing.approve(pairing.fetch_key(NEW))
    page = agent.page(origin=NEW)
    assert page.hello()["state"] == "ready"
    assert page.request({"type": "list_certificates", "id": "c1"})[-1]["type"] == "certificates"
    pairing.remove(NEW)
    refused = page.request({"type": "list_certificates", "id": "c2"})[-1]
    assert refused["code"] == "ORIGIN_NOT_APPROVED"
    page.close()


def test_a_server_that_dribbles_its_key_hits_the_overall_deadline(
    platform: Platform, memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    """Each read arrives within the timeout, but the fetch as a whole may not outlast it: a
    hostile origin must not choose when its key lands (under a dialog opened for another)."""
    pem = platform.issuer.public_pem.encode("ascii")
    platform.routes[(NEW_HOST, WELL_KNOWN_PATH)] = lambda: (
        200,
        {"Content-Type": "application/x-pem-file"},
        [pem[i : i + 20] for i in range(0, len(pem), 20)],  # ~9 chunks, 0.4 s apart
    )
    config = load_config(None, tmp_path / "user.toml", env={"HOME": str(tmp_path)})
    manager = _manager(config, platform, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(PairingError) as info:
        manager.fetch_key(NEW)
    assert info.value.reason == "network"
    assert time.monotonic() - started < 2.5  # the deadline, plus at most one read


def test_a_compressed_key_answer_is_refused_without_inflating_it(
    platform: Platform, memory_keyring: MemoryKeyring
) -> None:
    """50 MB of gzip in 50 KB: httpx would inflate each 64 KB read whole before the size check."""
    bomb = gzip.compress(b"A" * (50 << 20), compresslevel=9)
    platform.routes[(NEW_HOST, WELL_KNOWN_PATH)] = lambda: (
        200,
        {"Content-Type": "application/x-pem-file", "Content-Encoding": "gzip"},
        bomb,
    )
    manager = _manager(AgentConfig(port=0), platform)
    tracemalloc.start()
    try:
        with pytest.raises(PairingError) as info:
            manager.fetch_key(NEW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak >> 20} MB allocated while fetching"
    assert info.value.reason == "key_invalid"
    assert memory_keyring.passwords == {}
