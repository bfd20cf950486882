"""`make demo`: a demo USB token (SoftHSM2), a demo platform key, and the agent, headless.

Everything lives in ./demo-data (kept between runs; delete it to start afresh). The token holds
an organisation certificate issued by a demo CA, like the ones Vietnamese CAs put on USB tokens.
Later stages of the project extend this to the whole system (platform, passports).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.agent import devpki
from kyso.agent.token import softhsm

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("KYSO_DEMO_DIR", ROOT / "demo-data"))
ORIGIN = "http://127.0.0.1:8080"  # the platform's address in the demo
PIN = "123456"
ORGANISATION = "Trạm Y tế Phường Bến Nghé"


def provision() -> dict[str, object]:
    """Creates the demo token, keys and config once; later runs reuse them."""
    info_path = DEMO / "demo.json"
    if info_path.exists():
        info: dict[str, object] = json.loads(info_path.read_text(encoding="utf-8"))
        softhsm.activate(Path(str(info["softhsm_conf"])))
        return info

    DEMO.mkdir(parents=True, exist_ok=True)
    subject = devpki.vn_organisation_subject(ORGANISATION, tax_code="0312345678")
    keys = [softhsm.KeySpec("org-rsa", "RSA", 2048), softhsm.KeySpec("org-p256", "EC", 256)]
    token = softhsm.provision(
        DEMO / "softhsm",
        label="Kyso Demo Token",
        user_pin=PIN,
        keys=keys,
        certificates=softhsm.standard_certificates(keys, subject=subject),
    )
    (DEMO / "demo-ca.pem").write_bytes(token.ca_pem)
    for name, cert in token.certificates.items():
        (DEMO / f"{name}.pem").write_bytes(cert.pem)

    platform_key = ec.generate_private_key(ec.SECP256R1())
    (DEMO / "platform-manifest-key.pem").write_bytes(
        platform_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_pem = (
        platform_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    (DEMO / "agent.toml").write_text(
        "# Demo machine config, written by scripts/demo.py\n"
        f'pkcs11_module = "{token.module_path}"\n'
        "port = 47321\n\n"
        "[[origins]]\n"
        f'origin = "{ORIGIN}"\n'
        f'manifest_key = """{public_pem}"""\n',
        encoding="utf-8",
    )
    info = {
        "softhsm_conf": str(token.conf_path),
        "origin": ORIGIN,
        "port": 47321,
        "pin": PIN,
        "token_label": token.label,
        "certificates": {n: c.fingerprint_sha256 for n, c in token.certificates.items()},
    }
    info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def main() -> int:
    info = provision()
    fingerprints = dict(info["certificates"])  # type: ignore[call-overload]
    certificates = ", ".join(f"{name}={fp[:16]}…" for name, fp in fingerprints.items())
    print(
        f"""
Kyso demo
  USB token (SoftHSM2): {info["token_label"]}   PIN: {info["pin"]}
  Certificates:         {certificates}
  Allowed page origin:  {info["origin"]}
  Agent:                ws://127.0.0.1:{info["port"]}/

Sign a demo batch as the platform's page would, from another terminal:
  .venv/bin/python scripts/demo_client.py --count 30
This terminal then shows the consent text and asks for the PIN ({info["pin"]}).
""",
        flush=True,
    )
    # A fresh process for the agent: this one has initialised SoftHSM to provision the token.
    os.execv(  # noqa: S606 - our own interpreter and module
        sys.executable,
        [
            sys.executable,
            "-m",
            "kyso.agent.cli",
            "--headless",
            "--config",
            str(DEMO / "agent.toml"),
            "--user-config",
            str(DEMO / "user.toml"),
            "--state-dir",
            str(DEMO / "state"),
            *sys.argv[1:],
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
