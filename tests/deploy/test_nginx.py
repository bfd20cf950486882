"""deploy/nginx/kyso.conf run by a real nginx in front of the platform: TLS, HSTS, the client's
address forwarded (never the client's own X-Forwarded-For), the request id, the upload limit,
static files, and the monitoring-only endpoints."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

from kyso.platform.app import create_app

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HOST = "kyso.example.vn"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is missing: scripts/system-deps.sh installs nginx-light")
    folder = tmp_path_factory.mktemp("nginx")
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'kyso.db'}",
            "SECRET_KEY": "nginx-test",
            "TRUSTED_PROXIES": 1,
            "REGISTRY_URL": "http://127.0.0.1:9",
        }
    )

    # What the platform believes the client's address is: read after the app's ProxyFix (every
    # Flask route is in the authorization table, so this answers below the routing).
    proxy = app.wsgi_app
    inner = proxy.app  # type: ignore[attr-defined]

    def address(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/_test/address":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [environ.get("REMOTE_ADDR", "").encode()]
        return inner(environ, start_response)

    proxy.app = address  # type: ignore[attr-defined]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    cert, key = _certificate(folder)
    http_port, https_port = _port(), _port()
    site = (ROOT / "deploy" / "nginx" / "kyso.conf").read_text()
    site = site.replace("server 127.0.0.1:8080", f"server 127.0.0.1:{server.server_port}")
    site = re.sub(r"\n\s*listen \[::\]:[^\n]*", "", site)  # the test host may lack IPv6
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl")
    site = site.replace("/etc/ssl/kyso/fullchain.pem", str(cert))
    site = site.replace("/etc/ssl/kyso/privkey.pem", str(key))
    site = re.sub(r"alias [^;]*static/;", f"alias {ROOT / 'platform' / 'static'}/;", site)
    (folder / "kyso.conf").write_text(site)
    (folder / "nginx.conf").write_text(
        f"""
user root;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    include {folder}/kyso.conf;
}}
"""
    )
    check = subprocess.run(
        [NGINX, "-t", "-p", str(folder), "-c", str(folder / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    base = f"https://127.0.0.1:{https_port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{base}/healthz", verify=False, headers={"Host": HOST}, timeout=2)
            break
        except httpx.TransportError:
            assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else b""
            assert time.monotonic() < deadline, "nginx did not come up"
            time.sleep(0.1)
    try:
        yield base, f"http://127.0.0.1:{http_port}"
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)
        server.shutdown()
        app.extensions["kyso.engine"].dispose()


def _get(url: str, **kwargs: object) -> httpx.Response:
    headers = {"Host": HOST, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.get(url, verify=False, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_plain_http_is_sent_to_https(proxied: tuple[str, str]) -> None:
    _, plain = proxied
    response = _get(f"{plain}/signing/")
    assert response.status_code == 301
    assert response.headers["location"] == f"https://{HOST}/signing/"


def test_pages_come_through_tls_with_hsts_and_a_request_id(proxied: tuple[str, str]) -> None:
    base, _ = proxied
    response = _get(f"{base}/healthz")
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    # nginx's $request_id reaches the platform, which answers with it.
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_the_platform_sees_the_client_address_never_a_forged_one(
    proxied: tuple[str, str],
) -> None:
    base, _ = proxied
    forged = _get(f"{base}/_test/address", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forged.text == "127.0.0.1"


def test_static_files_are_served_by_nginx(proxied: tuple[str, str]) -> None:
    base, _ = proxied
    response = _get(f"{base}/static/agent-client.js")
    assert response.status_code == 200
    assert response.content == (ROOT / "platform" / "static" / "agent-client.js").read_bytes()
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" in response.headers


def test_metrics_and_readiness_are_for_the_monitoring_network_only(
    proxied: tuple[str, str],
) -> None:
    base, _ = proxied
    assert _get(f"{base}/metrics").status_code == 403
    assert _get(f"{base}/readyz").status_code == 403


def test_an_upload_over_the_limit_is_refused_by_nginx(proxied: tuple[str, str]) -> None:
    base, _ = proxied
    response = httpx.post(
        f"{base}/records/import",
        content=b"x" * (21 * 1024 * 1024),
        headers={"Host": HOST, "Content-Type": "application/octet-stream"},
        verify=False,
        timeout=30,
    )
    assert response.status_code == 413
