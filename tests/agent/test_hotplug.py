"""Hot-plug: a SoftHSM token deleted by another process and created again by another process.

The agent runs on a SoftHSM2 directory of its own holding exactly one token, so that removing
it leaves no token at all (the session's shared directory always has several). The module is
switched to that directory for the test and back afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agent_harness import RunningAgent, start_agent

from kyso.agent.service import AgentStatus
from kyso.agent.token import softhsm as softhsm2
from kyso.agent.token.model import TokenInfo
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken

LABEL = "Kyso Hotplug"
GOLDEN = Path(__file__).resolve().parent.parent / "golden"

# Provisions a token in another process: a keyed certificate, as an officer's token has.
PROVISION = """
import sys
from pathlib import Path
from kyso.agent.token import softhsm
t = softhsm.provision(Path(sys.argv[1]), label=sys.argv[2])
print(t.serial)
"""


@pytest.fixture
def lonely(tmp_path: Path, softhsm: ProvisionedToken) -> Iterator[ProvisionedToken]:
    """A SoftHSM2 directory with one token, active in this process for the test."""
    try:
        yield softhsm2.provision(tmp_path / "hsm", label=LABEL)
    finally:
        softhsm2.activate(softhsm.conf_path)
        softhsm2.rescan(softhsm.module_path)


def _provision_elsewhere(staging: Path, label: str) -> Path:
    """A complete token made by another process in a directory of its own: moving its folder
    into the agent's directory is then what plugging in a ready token is to SoftHSM2."""
    subprocess.run(
        [sys.executable, "-c", PROVISION, str(staging), label],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (folder,) = (staging / "tokens").iterdir()
    return folder


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[tuple[float, AgentStatus]] = []
        self.changed = threading.Condition()

    def __call__(self, status: AgentStatus) -> None:
        with self.changed:
            self.statuses.append((time.monotonic(), status))
            self.changed.notify_all()

    def wait_for(self, state: str, since: float, timeout: float = 10) -> tuple[float, AgentStatus]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for at, status in self.statuses:
                    if at >= since and status.state == state:
                        return at, status
                left = deadline - time.monotonic()
                assert left > 0, f"no {state} status: {self.statuses}"
                self.changed.wait(left)


def test_removal_and_insertion_reach_the_page_and_the_ui_within_2_s(
    lonely: ProvisionedToken, token: Pkcs11Token, tmp_path: Path
) -> None:
    agent: RunningAgent = start_agent(token, tmp_path / "state", hotplug=0.5)
    try:
        recorder = Recorder()
        remove = agent.service.add_state_listener(recorder)
        _first_at, first = recorder.wait_for("ready", 0)
        assert [t.label for t in first.tokens] == [LABEL]
        assert {c.fingerprint_sha256 for c in first.certificates} == {
            c.fingerprint_sha256 for c in lonely.certificates.values()
        }
        page = agent.page()
        assert page.hello()["state"] == "ready"

        pulled = time.monotonic()
        softhsm2.delete_token(lonely)  # softhsm2-util, another process
        assert page.recv(timeout=2) == {"type": "state", "state": "no_token"}
        assert time.monotonic() - pulled < 2
        at, status = recorder.wait_for("no_token", pulled, timeout=2)
        assert at - pulled < 2
        assert status.tokens == ()
        assert status.certificates == ()
        assert page.hello()["state"] == "no_token"

        folder = _provision_elsewhere(tmp_path / "staging", "Kyso Again")
        inserted = time.monotonic()
        folder.rename(lonely.token_dir / folder.name)
        created = time.monotonic()
        assert page.recv(timeout=2) == {"type": "state", "state": "ready"}
        assert time.monotonic() - created < 2
        at, status = recorder.wait_for("ready", inserted, timeout=2)
        assert at - created < 2
        assert [t.label for t in status.tokens] == ["Kyso Again"]
        assert isinstance(status.tokens[0], TokenInfo)
        assert len(status.certificates) == 2  # provision's default: one RSA, one P-256
        # Nothing else was sent: one event per change.
        with pytest.raises(TimeoutError):
            page.recv(timeout=1.2)
        remove()
    finally:
        agent.stop()


def test_no_event_before_hello(
    lonely: ProvisionedToken, token: Pkcs11Token, tmp_path: Path
) -> None:
    agent = start_agent(token, tmp_path / "state", hotplug=0.5)
    try:
        page = agent.page()
        softhsm2.delete_token(lonely)
        with pytest.raises(TimeoutError):
            page.recv(timeout=2)
        assert page.hello()["state"] == "no_token"
    finally:
        agent.stop()


def test_golden_state_exchange(
    lonely: ProvisionedToken, token: Pkcs11Token, tmp_path: Path
) -> None:
    """tests/golden/10-state.json against the real agent: the token is removed before the
    no_token event is expected and inserted before the ready one."""
    golden = json.loads((GOLDEN / "10-state.json").read_text(encoding="utf-8"))
    agent = start_agent(token, tmp_path / "state", hotplug=0.5)
    staging = _provision_elsewhere(tmp_path / "staging", "Kyso Again")
    try:
        page = agent.page()
        for step in golden["exchange"]:
            message = step["message"]
            if step["from"] == "page":
                page.send(message)
                continue
            if message == {"type": "state", "state": "no_token"}:
                softhsm2.delete_token(lonely)
            elif message == {"type": "state", "state": "ready"}:
                staging.rename(lonely.token_dir / staging.name)
            assert page.recv(timeout=5) == message
    finally:
        agent.stop()


def test_busy_reaches_the_ui_but_no_page(
    token: Pkcs11Token, softhsm: ProvisionedToken, tmp_path: Path
) -> None:
    """A batch makes the UI show busy; another page hears nothing of it (threat 16)."""
    from support.signing import digests, sign_request

    agent = start_agent(token, tmp_path / "state", hotplug=0.5)
    try:
        recorder = Recorder()
        agent.service.add_state_listener(recorder)
        recorder.wait_for("ready", 0)
        hold = threading.Event()
        agent.ui.hold = hold
        signer, other = agent.page(), agent.page()
        signer.hello()
        other.hello()
        fp = softhsm.certificates["p256"].fingerprint_sha256
        started = time.monotonic()
        signer.send(sign_request(agent, fp, "ECDSA_SHA256", digests(3)))
        assert agent.ui.dialog_open.wait(10)
        recorder.wait_for("busy", started)
        assert agent.service.status.state == "busy"
        hold.set()
        replies = signer.until_done("s1")
        assert replies[-1]["type"] == "result"
        assert all(r["type"] != "state" for r in replies)
        recorder.wait_for("ready", started + 0.001)
        with pytest.raises(TimeoutError):
            other.recv(timeout=1)
    finally:
        agent.stop()
