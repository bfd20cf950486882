"""kyso-agent as the officer runs it: --help, and --headless answering on a real terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.agent_harness import ORIGIN, Page
from support.platform_keys import ManifestIssuer
from support.signing import collect, digests, sign_request, verify
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kyso.agent.token.softhsm import ProvisionedToken


def test_help_documents_every_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kyso.agent.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in (
        "--headless",
        "--config",
        "--user-config",
        "--state-dir",
        "--language",
        "--list-modules",
        "--list-certificates",
        "--verbose",
        "--version",
    ):
        assert option in done.stdout
    assert "USB token" in done.stdout


def test_list_certificates(tmp_path: Path, softhsm: ProvisionedToken) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'pkcs11_module = "{softhsm.module_path}"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "kyso.agent.cli", "--list-certificates", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert softhsm.certificates["rsa"].fingerprint_sha256 in done.stdout
    assert "Trạm Y tế" in done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Terminal:
    """The agent in a pseudo-terminal, as in an officer's console window."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become kyso-agent
            argv = [sys.executable, "-m", "kyso.agent.cli", *argv]
            os.execve(sys.executable, argv, env if env is not None else os.environ.copy())
        self.output = ""

    def read_until(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} not shown; the terminal shows:\n{self.output}"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536).decode("utf-8", "replace")
                except OSError:
                    break
        return self.output

    def quiet_for(self, seconds: float) -> str:
        """What appears within ``seconds`` (to check that nothing new was asked)."""
        before = len(self.output)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                self.output += os.read(self.fd, 65536).decode("utf-8", "replace")
        return self.output[before:]

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode("utf-8"))

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL if the agent has not exited within ``timeout`` (a failure)."""
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                break
            time.sleep(0.1)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


@pytest.fixture
def headless(tmp_path: Path, softhsm: ProvisionedToken) -> Any:
    issuer = ManifestIssuer(ORIGIN)
    port = _free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'pkcs11_module = "{softhsm.module_path}"\nport = {port}\n\n[[origins]]\n'
        f'origin = "{ORIGIN}"\nmanifest_key = """{issuer.public_pem}"""\n',
        encoding="utf-8",
    )
    terminal = Terminal(
        ["--headless", "--config", str(config), "--state-dir", str(tmp_path / "state")]
    )
    terminal.read_until(f"ws://127.0.0.1:{port}/")
    yield terminal, issuer, port
    assert terminal.stop() == 0


def test_headless_consent_and_pin_on_the_terminal(headless: Any, softhsm: ProvisionedToken) -> None:
    terminal, issuer, port = headless
    cert = softhsm.certificates["p256"]
    items = digests(120)
    request = sign_request(issuer, cert.fingerprint_sha256, "ECDSA_SHA256", items)
    replies: list[dict[str, Any]] = []
    with connect(f"ws://127.0.0.1:{port}/", origin=ORIGIN) as ws:
        page = Page(ws)  # type: ignore[arg-type]
        page.hello()
        # Enter typed before the dialog appears must not approve it (threat 7).
        terminal.type("c\n")
        time.sleep(0.3)
        worker = threading.Thread(target=lambda: replies.extend(page.request(request)))
        worker.start()
        shown = terminal.read_until("[c/K]")
        for text in (
            ORIGIN,
            "Trạm Y tế Phường Bến Nghé",
            "Số chữ ký sẽ tạo: 120",
            "Mã xác nhận: K7Q-4MZ",
            "Nội dung do hệ thống tiêm chủng cung cấp",
        ):
            assert text in shown
        assert "Nhập mã PIN" not in terminal.quiet_for(0.6)  # still waiting for an answer
        terminal.type("c\n")
        terminal.read_until("Nhập mã PIN")
        terminal.type(softhsm.user_pin + "\n")
        worker.join(60)
        terminal.read_until("120/120")
    assert replies[-1]["type"] == "result"
    signatures = collect(replies)
    assert len(signatures) == 120
    for digest, signature in zip(items, signatures, strict=True):
        verify(cert.der, "ECDSA_SHA256", digest, signature)
    after_prompt = terminal.output.split("Nhập mã PIN", 1)[1]
    assert softhsm.user_pin not in after_prompt  # typed without echo


def test_headless_cancel_is_the_default(headless: Any, softhsm: ProvisionedToken) -> None:
    terminal, issuer, port = headless
    cert = softhsm.certificates["rsa"]
    items = digests(2)
    request = sign_request(issuer, cert.fingerprint_sha256, "RSA_PKCS1_SHA256", items)
    replies: list[dict[str, Any]] = []
    with connect(f"ws://127.0.0.1:{port}/", origin=ORIGIN) as ws:
        page = Page(ws)  # type: ignore[arg-type]
        page.hello()
        worker = threading.Thread(target=lambda: replies.extend(page.request(request)))
        worker.start()
        terminal.read_until("[c/K]")
        terminal.type("\n")
        worker.join(30)
    assert replies[-1]["code"] == "USER_DECLINED"
    terminal.read_until("Đã hủy")


def _wait_new(terminal: Terminal, text: str, since: int, timeout: float = 30) -> str:
    """Waits for ``text`` to appear after position ``since`` of the terminal's output."""
    deadline = time.monotonic() + timeout
    while text not in terminal.output[since:]:
        assert time.monotonic() < deadline, f"{text!r} not shown again:\n{terminal.output[since:]}"
        terminal.quiet_for(0.1)
    return terminal.output[since:]


def test_headless_prompt_of_a_disconnected_page_is_withdrawn(
    headless: Any, softhsm: ProvisionedToken
) -> None:
    """The page that asked goes away: its prompt closes, the console says so, and the next page
    is served (it used to stay open, and every other page got BUSY)."""
    terminal, issuer, port = headless
    cert = softhsm.certificates["p256"]
    items = digests(2)
    request = sign_request(issuer, cert.fingerprint_sha256, "ECDSA_SHA256", items)
    with connect(f"ws://127.0.0.1:{port}/", origin=ORIGIN) as ws:
        page = Page(ws)  # type: ignore[arg-type]
        page.hello()
        page.send(request)
        terminal.read_until("[c/K]")
    terminal.read_until("Câu hỏi trên đã được rút lại")
    mark = len(terminal.output)
    replies: list[dict[str, Any]] = []
    with connect(f"ws://127.0.0.1:{port}/", origin=ORIGIN) as ws:
        other = Page(ws)  # type: ignore[arg-type]
        assert other.hello()["state"] == "ready"
        worker = threading.Thread(target=lambda: replies.extend(other.request(request)))
        worker.start()
        _wait_new(terminal, "[c/K]", mark)
        terminal.type("c\n")
        _wait_new(terminal, "Nhập mã PIN", mark)
        terminal.type(softhsm.user_pin + "\n")
        worker.join(60)
    assert replies[-1]["type"] == "result"
    (signature,) = collect(replies)[:1]
    verify(cert.der, "ECDSA_SHA256", items[0], signature)


def test_headless_log_lines_wait_until_the_prompt_is_answered(
    headless: Any, softhsm: ProvisionedToken
) -> None:
    """60 refused handshakes while [c/K] waits: nothing is printed under the question (the
    consent text stays in view); the lines come after the answer, and are in the log file."""
    terminal, issuer, port = headless
    cert = softhsm.certificates["p256"]
    request = sign_request(issuer, cert.fingerprint_sha256, "ECDSA_SHA256", digests(2))
    replies: list[dict[str, Any]] = []
    with connect(f"ws://127.0.0.1:{port}/", origin=ORIGIN) as ws:
        page = Page(ws)  # type: ignore[arg-type]
        page.hello()
        worker = threading.Thread(target=lambda: replies.extend(page.request(request)))
        worker.start()
        terminal.read_until("[c/K]")
        for _ in range(60):
            with pytest.raises(InvalidStatus):
                connect(f"ws://127.0.0.1:{port}/", origin="https://evil.example.vn")
        during = terminal.quiet_for(1.0)
        assert "refused a handshake" not in during
        assert terminal.output.rstrip().endswith("[c/K]:")  # the question is still the last line
        terminal.type("c\n")
        terminal.read_until("Nhập mã PIN")
        terminal.type(softhsm.user_pin + "\n")
        worker.join(60)
        shown = terminal.read_until("https://evil.example.vn")
    assert replies[-1]["type"] == "result"
    after = shown.split("[c/K]", 1)[1]
    assert "Nhật ký ghi trong lúc chờ câu trả lời (60 dòng" in after
    terminal.read_until("2/2")
    assert terminal.output.count("refused a handshake from origin") >= 60


OTHER_ORIGIN = "https://tiemchung2.example.vn"


def test_headless_remembers_the_origins_the_officer_allowed(
    tmp_path: Path, softhsm: ProvisionedToken
) -> None:
    """Issue 17: a page allowed at the headless prompt reads the certificates after a restart
    without a question (it was asked again after every restart); a page never allowed is still
    asked; ``--forget-origin`` removes the answer and the officer is asked again."""
    port = _free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'pkcs11_module = "{softhsm.module_path}"\nport = {port}\n'
        f'\n[[origins]]\norigin = "{ORIGIN}"\n'
        f'manifest_key = """{ManifestIssuer(ORIGIN).public_pem}"""\n'
        f'\n[[origins]]\norigin = "{OTHER_ORIGIN}"\n'
        f'manifest_key = """{ManifestIssuer(OTHER_ORIGIN).public_pem}"""\n',
        encoding="utf-8",
    )
    tests_dir = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "support.file_keyring.FileKeyring",
        "KYSO_TEST_KEYRING": str(tmp_path / "keyring.json"),
        "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])),
    }
    argv = ["--headless", "--config", str(config), "--state-dir", str(tmp_path / "state")]

    def start() -> Terminal:
        terminal = Terminal(argv, env)
        terminal.read_until(f"ws://127.0.0.1:{port}/")
        return terminal

    def list_certificates(origin: str, terminal: Terminal, answer: str | None) -> str:
        """The page's reply type; ``answer`` is typed at the origin question (None: none)."""
        replies: list[dict[str, Any]] = []
        with connect(f"ws://127.0.0.1:{port}/", origin=origin) as ws:
            page = Page(ws)  # type: ignore[arg-type]
            page.hello()
            request = {"type": "list_certificates", "id": "c1"}
            worker = threading.Thread(target=lambda: replies.extend(page.request(request)))
            worker.start()
            if answer is not None:
                terminal.read_until("[c/K]")
                terminal.type(answer)
            worker.join(30)
        assert replies, terminal.output
        return str(replies[-1]["type"])

    first = start()
    try:
        assert list_certificates(ORIGIN, first, "c\n") == "certificates"
        assert f"kyso-agent --forget-origin {ORIGIN}" in first.output  # the prompt says so
    finally:
        assert first.stop() == 0

    second = start()
    try:
        assert list_certificates(ORIGIN, second, None) == "certificates"
        assert "[c/K]" not in second.output + second.quiet_for(0.5)
        # A page the officer never allowed is asked, and "no" is not remembered either.
        assert list_certificates(OTHER_ORIGIN, second, "\n") == "error"
        assert OTHER_ORIGIN in second.output.split("[c/K]")[0]
    finally:
        assert second.stop() == 0

    forget = [sys.executable, "-m", "kyso.agent.cli", "--forget-origin", ORIGIN]
    done = subprocess.run(forget, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "sẽ hỏi lại" in done.stdout
    again = subprocess.run(forget, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 2
    assert "không có trong danh sách" in again.stderr

    third = start()
    try:
        assert list_certificates(ORIGIN, third, "\n") == "error"  # asked again, and declined
        assert ORIGIN in third.output.split("[c/K]")[0]
    finally:
        assert third.stop() == 0
