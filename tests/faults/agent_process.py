"""The agent's WebSocket server on a SoftHSM token, as a process of its own for the fault suite
(killed with SIGKILL mid-batch or during consent). Not a test module.

    python tests/faults/agent_process.py MODULE STATE_DIR ORIGIN MANIFEST_KEY_PEM [--hold]

Prints the port it listens on, then serves until killed. ``--hold`` keeps the consent dialog
open (the scripted officer never answers).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from support.agent_harness import ScriptedUI, start_agent
from support.platform_keys import ManifestIssuer

from kyso.agent.token.pkcs11_token import Pkcs11Token


def main() -> None:
    module, state, origin, key_path = sys.argv[1:5]
    key = load_pem_private_key(Path(key_path).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ui = ScriptedUI(hold=threading.Event() if "--hold" in sys.argv else None)
    agent = start_agent(Pkcs11Token(module), Path(state), ui=ui, issuer=ManifestIssuer(origin, key))
    print(agent.port, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
