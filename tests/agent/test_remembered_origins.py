"""Issue 17: the officer's yes to a page is remembered with the key the page had (pinned).

The headless run end to end (restart, ``--forget-origin``) is in test_cli.py; here the service
with a real SoftHSM token, a real websockets server and a real keyring backend (in memory).
"""

from __future__ import annotations

from pathlib import Path

from support.agent_harness import ORIGIN, ScriptedUI, start_agent
from support.memory_keyring import MemoryKeyring
from support.platform_keys import ManifestIssuer

from kyso.agent.config import AllowedOrigin
from kyso.agent.pairing import ConsentMemory
from kyso.agent.token.pkcs11_token import Pkcs11Token


def _list_once(token: Pkcs11Token, state: Path, issuer: ManifestIssuer) -> tuple[str, list[str]]:
    """One agent run: a page lists the certificates. Its reply type, and what was asked."""
    ui = ScriptedUI()
    agent = start_agent(token, state, ui=ui, issuer=issuer, consents=ConsentMemory())
    try:
        page = agent.page()
        page.hello()
        reply = page.request({"type": "list_certificates", "id": "c1"})[-1]
        page.close()
    finally:
        agent.stop()
    return str(reply["type"]), ui.origin_requests


def test_a_remembered_origin_is_asked_again_when_its_key_changes(
    token: Pkcs11Token, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    issuer = ManifestIssuer(ORIGIN)
    assert _list_once(token, tmp_path / "state", issuer) == ("certificates", [ORIGIN])
    assert _list_once(token, tmp_path / "state", issuer) == ("certificates", [])  # remembered
    # The administrator (or an attacker with the config) put another key for the same origin:
    # the earlier yes was for the other key, so the officer is asked again.
    other_key = ManifestIssuer(ORIGIN)
    assert _list_once(token, tmp_path / "state", other_key) == ("certificates", [ORIGIN])


def test_origins_a_browser_may_not_pair_are_not_remembered(memory_keyring: MemoryKeyring) -> None:
    consents = ConsentMemory()
    local = AllowedOrigin.create("http://localhost:5000", ManifestIssuer("x").public_pem)
    assert consents.remember(local) is False
    assert consents.remembered(local) is False
    assert memory_keyring.passwords == {}
