"""A keyring that does not answer (an unlock prompt nobody sees, a stuck daemon) must not hold
the lock every handshake takes (issue 18): other pages keep connecting while a pairing is saved."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from support.hanging_module import BlockingKeyring
from support.platform_keys import ManifestIssuer

from kyso.agent.config import AgentConfig, key_fingerprint, load_manifest_key
from kyso.agent.pairing import FetchedKey, OriginStore, PairingManager

NEW = "https://tiemchung-moi.example.vn"
OTHER = "https://other.example.vn"


def _fetched(origin: str) -> FetchedKey:
    pem = ManifestIssuer(origin).public_pem
    return FetchedKey(origin, pem, key_fingerprint(load_manifest_key(pem)))


def _answers_within(seconds: float, call: object) -> bool:
    assert callable(call)
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def test_handshake_checks_answer_while_the_keyring_write_waits(
    tmp_path: Path, blocking_keyring: BlockingKeyring
) -> None:
    pairing = PairingManager(
        AgentConfig(port=0, state_dir=tmp_path),
        store=OriginStore(service=f"kyso-test-{uuid.uuid4().hex}"),
    )
    approving = threading.Thread(target=pairing.approve, args=(_fetched(NEW),), daemon=True)
    approving.start()
    assert blocking_keyring.writing.wait(5)  # the approval now waits inside the keyring
    try:
        # What the server asks on every handshake, and what the window lists, still answer.
        assert _answers_within(2, lambda: pairing.allowed_origin(OTHER))
        assert _answers_within(2, lambda: pairing.origin_refused(OTHER))
        assert _answers_within(2, pairing.origins)
        assert pairing.allowed_origin(NEW) is None  # not allowed before it is stored
    finally:
        blocking_keyring.release()
    approving.join(5)
    assert not approving.is_alive()
    assert pairing.allowed_origin(NEW) is not None
    assert pairing.paired_in_this_run(NEW)


def test_removing_waits_for_the_keyring_without_blocking_handshakes(
    tmp_path: Path, blocking_keyring: BlockingKeyring
) -> None:
    pairing = PairingManager(
        AgentConfig(port=0, state_dir=tmp_path),
        store=OriginStore(service=f"kyso-test-{uuid.uuid4().hex}"),
    )
    blocking_keyring.release()
    pairing.approve(_fetched(NEW))
    blocking_keyring.released.clear()
    blocking_keyring.writing.clear()
    removing = threading.Thread(target=pairing.remove, args=(NEW,), daemon=True)
    removing.start()
    assert blocking_keyring.writing.wait(5)
    try:
        assert _answers_within(2, lambda: pairing.allowed_origin(OTHER))
        assert pairing.allowed_origin(NEW) is not None  # still allowed until it is stored
    finally:
        blocking_keyring.release()
    removing.join(5)
    assert not removing.is_alive()
    assert pairing.allowed_origin(NEW) is None
