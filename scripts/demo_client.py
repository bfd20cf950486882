"""Plays the platform's page against the demo agent: hello, certificates, a signed batch.

It signs the batch manifest with the demo platform key from demo-data/ (as the platform will),
sends SHA-256 digests of demo documents, and verifies every signature it gets back.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("KYSO_DEMO_DIR", ROOT / "demo-data"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=30, help="digests to sign (1..3000)")
    parser.add_argument(
        "--algorithm", default=None, help="RSA_PKCS1_SHA256, RSA_PSS_SHA256, ECDSA_SHA256"
    )
    args = parser.parse_args()

    info = json.loads((DEMO / "demo.json").read_text(encoding="utf-8"))
    key = serialization.load_pem_private_key(
        (DEMO / "platform-manifest-key.pem").read_bytes(), password=None
    )
    digests = [
        hashlib.sha256(f"demo-dose-{uuid.uuid4()}".encode()).digest() for _ in range(args.count)
    ]
    with connect(f"ws://127.0.0.1:{info['port']}/", origin=info["origin"]) as ws:  # type: ignore[arg-type]

        def ask(message: dict[str, object]) -> dict[str, object]:
            ws.send(json.dumps(message))
            return json.loads(ws.recv())  # type: ignore[no-any-return]

        print("hello:", ask({"type": "hello", "id": "h1", "versions": [1]}))
        print("Approve the page in the agent's terminal if it asks …")
        reply = ask({"type": "list_certificates", "id": "c1"})
        if reply["type"] != "certificates":
            print(reply)
            return 1
        certs = reply["certificates"]
        assert isinstance(certs, list)
        # The demo token's certificates (PIN 123456), not the passport token's also plugged in.
        wanted = [info["certificates"][name] for name in ("org-rsa", "org-p256")]
        ours = [c for fp in wanted for c in certs if c["fingerprint"] == fp]
        if not ours:
            print("The agent does not list the demo token's certificates: restart make demo.")
            return 1
        cert = ours[0]
        algorithm = args.algorithm or cert["algorithms"][0]
        now = int(time.time())
        code = "DEMO-" + uuid.uuid4().hex[:4].upper()
        manifest = jwt.encode(
            {
                "aud": "kyso-agent",
                "jti": f"DEMO-{uuid.uuid4().hex[:12]}",
                "iat": now,
                "exp": now + 600,
                "origin": info["origin"],
                "certificate": cert["fingerprint"],
                "algorithm": algorithm,
                "count": len(digests),
                "digests": "sha256:" + hashlib.sha256(b"".join(digests)).hexdigest(),
                "summary": {
                    "facility": "Trạm Y tế Phường Bến Nghé",
                    "people": max(1, min(1000, len(digests) // 3 or 1)),
                    "doses": len(digests),
                    "first_date": "2022-03-01",
                    "last_date": "2022-03-31",
                },
                "code": code,
            },
            key,  # type: ignore[arg-type]
            algorithm="ES256",
            headers={"typ": "kyso-batch+jwt"},
        )
        print(f"Signing {len(digests)} digests with {cert['subject']} ({algorithm}).")
        print(f"Verification code: {code}")
        print(
            "The agent's terminal must show this same code: if it does, agree and type the PIN "
            "there; if not, refuse."
        )
        ws.send(
            json.dumps(
                {
                    "type": "sign",
                    "id": "s1",
                    "manifest": manifest,
                    "certificate": cert["fingerprint"],
                    "algorithm": algorithm,
                    "digests": [base64.b64encode(d).decode() for d in digests],
                }
            )
        )
        signatures: list[bytes] = []
        while True:
            message = json.loads(ws.recv())
            if message["type"] == "signatures":
                signatures += [base64.b64decode(s) for s in message["signatures"]]
                print(f"  signed {message['signed']}/{message['total']}")
            elif message["type"] == "progress":
                print(f"  {message['stage']}: {message['signed']}/{message['total']}")
            elif message["type"] in ("result", "error"):
                print(message)
                break

    public = x509.load_der_x509_certificate(base64.b64decode(cert["der"])).public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    for digest, signature in zip(digests, signatures, strict=False):
        if isinstance(public, rsa.RSAPublicKey):
            pad = (
                padding.PKCS1v15()
                if algorithm == "RSA_PKCS1_SHA256"
                else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            )
            public.verify(signature, digest, pad, prehashed)
        else:
            assert isinstance(public, ec.EllipticCurvePublicKey)
            half = len(signature) // 2  # the agent returns raw r || s
            r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            public.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(prehashed))
    print(f"{len(signatures)} signatures verified against the certificate.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
