"""`make demo`: the whole system on its embedded defaults, on this machine.

- a test PKI shaped like Vietnam's (kyso.platform.testpki: root CA, issuing CA, OCSP responder,
  CRLs, time-stamping authority) served on http://127.0.0.1:8091;
- a demo USB token (SoftHSM2) holding an organisation certificate issued by that issuing CA, like
  the ones Vietnamese CAs put on USB tokens, and a demo platform manifest key;
- the central passport key on a SoftHSM2 token of its own ("Kyso Passport Demo", EC P-256),
  certified as a Document Signer Certificate by a demo CSCA, and the platform configured to
  use it (the issuer page's "Cấp ngay", the citizen lookup, the signed lists for verifiers);
  on the same token the PDF passport's document-signing key ("pdf-es256"), certified by a demo
  document root (demo-pdf-root.pem, its CRL demo-pdf-root.crl), so the citizen's PDF is signed,
  PAdES B-LTA with the test PKI's time-stamps (KYSO_TSA_URL, also the officers' CAdES-T);
- the reference population registry (http://127.0.0.1:8090) with its own dataset;
- the platform (http://127.0.0.1:8080, SQLite) with demo facilities, accounts and people,
  verified against the registry, and its time-stamping worker (``kyso-platform signing
  timestamp --follow``: every stored signature becomes CAdES-T with the test PKI's TSA);
- the signing agent, headless, in this terminal (consent and PIN are asked here); the other
  services write their output to demo-data/logs/, so nothing interleaves with the agent's
  questions.

Everything lives in ./demo-data (kept between runs; delete it to start afresh).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from kyso.agent import devpki
from kyso.agent.token import softhsm
from kyso.platform import formatting
from kyso.platform.models import Person, User, VerificationStatus
from kyso.platform.passport import testcerts
from kyso.platform.records.demo import DEMO_PASSWORD
from kyso.platform.records.reference_data import read_toml
from kyso.platform.testpki import TestPki

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("KYSO_DEMO_DIR", ROOT / "demo-data")).absolute()
LOGS = DEMO / "logs"  # the services' output: the terminal is the agent's
ORIGIN = "http://127.0.0.1:8080"  # the platform's address in the demo
PIN = "123456"
ORGANISATION = "Trạm Y tế Phường Bến Nghé"
PKI_PORT = int(os.environ.get("KYSO_DEMO_PKI_PORT", "8091"))  # another port for tests
PKI_URL = f"http://127.0.0.1:{PKI_PORT}"


PASSPORT_TOKEN = "Kyso Passport Demo"
PASSPORT_KEY = "dsc-es256"
PASSPORT_PDF_KEY = "pdf-es256"  # the PDF passport's document-signing key, same token
PASSPORT_PIN = "246810"
DEMO_ORGANISATION = "Cục Y tế dự phòng (demo)"


def provision_passport_key() -> dict[str, object]:
    """The central passport key on a token of its own in the demo's SoftHSM2 directory: its
    Document Signer Certificate (digitalSignature, nonRepudiation, the DCC vaccination extended
    key usage, two years) from a demo CSCA; and the PDF passport's key (``provision_pdf_key``)."""
    csca = testcerts.create_csca("Kyso Demo CSCA Viet Nam", organisation="Bộ Y tế (demo)")
    token = softhsm.provision(
        DEMO / "softhsm",
        label=PASSPORT_TOKEN,
        user_pin=PASSPORT_PIN,
        so_pin="13579111",
        keys=[softhsm.KeySpec(PASSPORT_KEY, "EC", 256)],
        certificates=(),
        ca=csca,
    )
    key = token.keys[PASSPORT_KEY]
    certificate = testcerts.issue_dsc(
        csca, key.public_key, name="Kyso Demo DSC", organisation=DEMO_ORGANISATION
    )
    softhsm.store_certificate(token, certificate, key.key_id, PASSPORT_KEY)
    (DEMO / "demo-csca.pem").write_bytes(csca.certificate.public_bytes(serialization.Encoding.PEM))
    pin_file = DEMO / "passport-pin"
    pin_file.write_text(PASSPORT_PIN + "\n", encoding="utf-8")
    pin_file.chmod(0o600)
    passport: dict[str, object] = {
        "module": token.module_path,
        "token_label": PASSPORT_TOKEN,
        "key_label": PASSPORT_KEY,
        "pin_file": str(pin_file),
        "csca": str(DEMO / "demo-csca.pem"),
    }
    passport.update(provision_pdf_key(token.module_path))
    return passport


def provision_pdf_key(module: str) -> dict[str, str]:
    """The PDF passport's document-signing key (EC P-256) on the demo passport token, with a
    certificate from a demo document root (emailProtection + documentSigning, digitalSignature
    + nonRepudiation, a CRL distribution point), the root and its CRL written into demo-data
    for the PDF's validation data. Also adds it to a demo directory made before it existed."""
    root = testcerts.create_document_ca("Kyso Demo Root (documents)", organisation="Bộ Y tế (demo)")

    def certify(key: softhsm.ProvisionedKey) -> x509.Certificate:
        return testcerts.issue_document_certificate(
            root, key.public_key, name="Kyso Demo PDF Signer", organisation=DEMO_ORGANISATION
        )

    softhsm.add_key(
        module, PASSPORT_TOKEN, PASSPORT_PIN, softhsm.KeySpec(PASSPORT_PDF_KEY, "EC", 256), certify
    )
    chain = DEMO / "demo-pdf-root.pem"
    chain.write_bytes(root.certificate.public_bytes(serialization.Encoding.PEM))
    crl = DEMO / "demo-pdf-root.crl"
    crl.write_bytes(testcerts.issue_crl(root, days=365).public_bytes(serialization.Encoding.DER))
    return {"pdf_key_label": PASSPORT_PDF_KEY, "pdf_chain": str(chain), "pdf_crls": str(crl)}


def provision() -> dict[str, object]:
    """Creates the demo token, keys and config once; later runs reuse them."""
    info_path = DEMO / "demo.json"
    if info_path.exists():
        info: dict[str, object] = json.loads(info_path.read_text(encoding="utf-8"))
        softhsm.activate(Path(str(info["softhsm_conf"])))
        passport = info.get("passport")
        if not isinstance(passport, dict):  # a demo directory made before the passport key
            info["passport"] = provision_passport_key()
            info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
        elif "pdf_key_label" not in passport:  # ... or before the PDF passport's key
            passport.update(provision_pdf_key(str(passport["module"])))
            info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
        return info

    DEMO.mkdir(parents=True, exist_ok=True)
    # The officers' CA: certificates with AIA (OCSP) and CRL distribution points on PKI_PORT.
    pki = TestPki.open(DEMO / "pki", PKI_URL)
    subject = devpki.vn_organisation_subject(ORGANISATION, tax_code="0312345678")
    keys = [softhsm.KeySpec("org-rsa", "RSA", 2048), softhsm.KeySpec("org-p256", "EC", 256)]
    token = softhsm.provision(
        DEMO / "softhsm",
        label="Kyso Demo Token",
        user_pin=PIN,
        keys=keys,
        certificates=softhsm.standard_certificates(keys, subject=subject),
        ca=pki.issuing,
    )
    (DEMO / "demo-ca.pem").write_bytes(pki.anchors_pem())  # root + issuing CA
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
    info["passport"] = provision_passport_key()
    info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


PLATFORM_PORT = 8080
REGISTRY_PORT = 8090
DEMO_PEOPLE = int(os.environ.get("KYSO_DEMO_PEOPLE", "3000"))
DEMO_OFFICER = "kyduyet.bennghe"  # signs for Trạm Y tế Phường Bến Nghé
SIGNING_KEY = "org-rsa"  # the demo officer's registered certificate


def passport_env() -> dict[str, str]:
    """The central passport key's settings (written by ``provision``), PIN from its file."""
    info = json.loads((DEMO / "demo.json").read_text(encoding="utf-8"))
    passport = info["passport"]
    return {
        "SOFTHSM2_CONF": str(info["softhsm_conf"]),
        "KYSO_PASSPORT_PKCS11_MODULE": passport["module"],
        "KYSO_PASSPORT_TOKEN_LABEL": passport["token_label"],
        "KYSO_PASSPORT_KEY_LABEL": passport["key_label"],
        "KYSO_PASSPORT_PIN_FILE": passport["pin_file"],
        "KYSO_PASSPORT_ALGORITHM": "ES256",
        "KYSO_PASSPORT_PDF_KEY_LABEL": passport["pdf_key_label"],
        "KYSO_PASSPORT_PDF_CHAIN": passport["pdf_chain"],
        "KYSO_PASSPORT_PDF_CRLS": passport["pdf_crls"],
        # Verifiers (kyso-platform dcc verify) check the signed lists against the demo CSCA.
        "KYSO_PASSPORT_LIST_ANCHORS": passport["csca"],
    }


def platform_env() -> dict[str, str]:
    instance = DEMO / "platform"
    return dict(
        os.environ,
        **passport_env(),
        DATABASE_URL=f"sqlite:///{instance / 'kyso.db'}",
        KYSO_INSTANCE_PATH=str(instance),
        KYSO_REGISTRY_URL=f"http://127.0.0.1:{REGISTRY_PORT}",
        KYSO_SECURE_COOKIES="0",  # plain http on loopback in the demo
        # The demo CA issued the token's certificates; the agent pins this manifest key.
        KYSO_TRUST_ANCHORS=str(DEMO / "demo-ca.pem"),
        KYSO_MANIFEST_KEY=str(DEMO / "platform-manifest-key.pem"),
        # The test PKI's TSA time-stamps the officers' signatures (CAdES-T, by the worker
        # started below) and the PDF passports (PAdES B-LTA; its root is in demo-ca.pem, its CRL
        # fetched from the PKI).
        KYSO_TSA_URL=f"{PKI_URL}/tsa",
        KYSO_PASSPORT_PDF_FETCH_REVOCATION="1",
    )


def platform_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kyso.platform.cli", *args]


def prepare_platform() -> None:
    """Schema and demo data once (the generator's report goes to logs/demo-data.log)."""
    (DEMO / "platform").mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    done_marker = DEMO / "platform" / "accounts.txt"  # written once the demo data is complete
    env = platform_env()
    subprocess.run(platform_command("db", "upgrade"), env=env, check=True)  # noqa: S603
    if not done_marker.exists():
        print(f"Generating {DEMO_PEOPLE} demo people …", flush=True)
        done = subprocess.run(  # noqa: S603
            platform_command(
                "demo-data",
                "--people",
                str(DEMO_PEOPLE),
                "--seed",
                "1",
                "--registry-dataset",
                str(DEMO / "registry.db"),
            ),
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        (LOGS / "demo-data.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        # The procedure's first step: the officer's certificate serial is registered.
        serial = x509.load_pem_x509_certificate((DEMO / f"{SIGNING_KEY}.pem").read_bytes())
        subprocess.run(  # noqa: S603
            platform_command(
                "register-certificate",
                DEMO_OFFICER,
                f"{serial.serial_number:X}",
                "--by",
                "admin",
            ),
            env=env,
            check=True,
        )
        done_marker.write_text(done.stdout, encoding="utf-8")


@dataclass(frozen=True)
class DemoAccount:
    username: str
    full_name: str
    role: str


@dataclass(frozen=True)
class DemoSummary:
    """What the banner shows, read from the demo database each start (cold or warm)."""

    accounts: list[DemoAccount]
    people: dict[VerificationStatus, int]


def read_summary(database_url: str) -> DemoSummary:
    """The demo accounts present in the database and its people by verification status."""
    wanted = [entry["username"] for entry in read_toml("demo-org.toml")["user"]]
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            users = {u.username: u for u in session.scalars(select(User))}
            counts = session.execute(
                select(Person.verification_status, func.count()).group_by(
                    Person.verification_status
                )
            ).all()
    finally:
        engine.dispose()
    accounts = [
        DemoAccount(name, users[name].full_name, users[name].role.value)
        for name in wanted
        if name in users
    ]
    return DemoSummary(accounts, {VerificationStatus(s): n for s, n in counts})


def serial_of(certificate_pem: Path) -> str:
    return f"{x509.load_pem_x509_certificate(certificate_pem.read_bytes()).serial_number:X}"


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"{name} stopped (exit {process.returncode}): read {log}, correct what it says "
                "(a port in use: stop the other program), then run make demo again"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(
        f"{name} did not start on port {port} within 30 s: read {log}, then run make demo again"
    )


def main() -> int:
    info = provision()
    prepare_platform()
    env = platform_env()
    children: list[subprocess.Popen[bytes]] = []
    logs: list[BinaryIO] = []

    def log(name: str) -> tuple[Path, BinaryIO]:
        path = LOGS / f"{name}.log"
        handle = path.open("ab")
        logs.append(handle)
        return path, handle

    try:
        pki_log, pki_out = log("pki")
        pki = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "kyso.platform.testpki",
                "serve",
                "--dir",
                str(DEMO / "pki"),
                "--port",
                str(PKI_PORT),
            ],
            env=env,
            stdout=pki_out,
            stderr=subprocess.STDOUT,
        )
        children.append(pki)
        wait_for_port(PKI_PORT, pki, "the test PKI (OCSP, CRLs, TSA)", pki_log)
        registry_log, registry_out = log("registry")
        registry = subprocess.Popen(  # noqa: S603
            platform_command(
                "registry",
                "serve",
                "--port",
                str(REGISTRY_PORT),
                "--dataset",
                str(DEMO / "registry.db"),
            ),
            env=env,
            stdout=registry_out,
            stderr=subprocess.STDOUT,
        )
        children.append(registry)
        wait_for_port(REGISTRY_PORT, registry, "the reference population registry", registry_log)
        print("Verifying the demo people against the registry …", flush=True)
        verify_log, verify_out = log("verify-population")
        verified = subprocess.run(  # noqa: S603
            platform_command("verify-population"), env=env, stdout=verify_out, stderr=verify_out
        )
        if verified.returncode != 0:
            print(
                f"Population verification did not finish (see {verify_log}); the platform still "
                "starts, and unverified people cannot be signed for.",
                flush=True,
            )
        web_log, web_out = log("platform")
        web = subprocess.Popen(  # noqa: S603
            platform_command("run", "--port", str(PLATFORM_PORT)),
            env=env,
            stdout=web_out,
            stderr=subprocess.STDOUT,
        )
        children.append(web)
        wait_for_port(PLATFORM_PORT, web, "the platform", web_log)
        _, stamps_out = log("timestamps")
        children.append(
            subprocess.Popen(  # noqa: S603
                platform_command("signing", "timestamp", "--follow"),
                env=env,
                stdout=stamps_out,
                stderr=subprocess.STDOUT,
            )
        )
        summary = read_summary(env["DATABASE_URL"])
        print(banner(info, summary, serial_of(DEMO / f"{SIGNING_KEY}.pem")), flush=True)
        agent = subprocess.Popen(agent_command(), env=os.environ)  # noqa: S603
        children.append(agent)
        return agent.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        for handle in logs:
            handle.close()


def agent_command() -> list[str]:
    return [
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
    ]


STATUS_LABELS = {  # how the banner names each verification status
    VerificationStatus.VERIFIED: "verified (can be signed)",
    VerificationStatus.PENDING: "not checked yet",
    VerificationStatus.NO_IDENTITY: "no identity number",
    VerificationStatus.OLD_ID_ONLY: "old 9-digit CMND only",
    VerificationStatus.WRONG_FORMAT: "malformed identity number",
    VerificationStatus.MISMATCH: "registry disagrees",
    VerificationStatus.UNAVAILABLE: "registry did not answer",
}


def shown(path: Path) -> str:
    """A path as typed from the current directory (the repository, under make demo)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def banner(info: dict[str, object], summary: DemoSummary, serial: str) -> str:
    """The text printed once everything is up, from what the demo directory holds now."""
    fingerprints = dict(info["certificates"])  # type: ignore[call-overload]
    certificates = ", ".join(f"{name}={fp[:16]}…" for name, fp in fingerprints.items())
    accounts = "\n".join(f"  {a.username:<20} {a.role:<16} {a.full_name}" for a in summary.accounts)
    total = sum(summary.people.values())
    spaced = formatting.serial(serial)  # as the platform's pages write it
    people = "\n".join(
        f"  {count:>7,}  {STATUS_LABELS[status]}"
        for status, count in sorted(summary.people.items(), key=lambda item: -item[1])
    )
    return f"""
==============================================================================
Kyso demo
  Platform:             http://127.0.0.1:{PLATFORM_PORT}/   (open it in a browser)
  Population registry:  http://127.0.0.1:{REGISTRY_PORT}/   (reference implementation)
  Test PKI:             {PKI_URL}/ocsp, /crl/issuing.crl, /tsa   (folder demo-data/pki)
  Signing agent:        ws://127.0.0.1:{info["port"]}/     (this terminal)
  USB token (SoftHSM2): {info["token_label"]}   PIN: {info["pin"]}
  Officer certificate:  serial {spaced} ({SIGNING_KEY}, registered for {DEMO_OFFICER})
  Passport key:         {PASSPORT_TOKEN} (SoftHSM2), configured: log in as cucduphong,
                        /passports/issuer, "Cấp ngay"; verifiers download the signed lists:
                        http://127.0.0.1:{PLATFORM_PORT}/.well-known/kyso/dcc/trust-list
  Certificates:         {certificates}
  Logs:                 {shown(LOGS)}/ (platform, registry, pki, verify-population)

Demo accounts (every one has the password {DEMO_PASSWORD}):
  {"username":<20} {"role":<16} name
{accounts}

Demo people: {total:,}, by identity check against the registry:
{people}

Sign a first batch in the browser: open http://127.0.0.1:{PLATFORM_PORT}/, log in as
{DEMO_OFFICER} (password {DEMO_PASSWORD}), search, tick, "Xem danh sách", then "Ký số".
This terminal then asks three things, in order: may {ORIGIN} see the token's
certificates ("c" then Enter; "y" with --language en), sign this batch (count, summary and
the verification code: compare it with the page's; "c" again), then the PIN ({info["pin"]}).
Revoke the token's certificate (then signing is refused with the revocation date):
  .venv/bin/python -m kyso.platform.testpki revoke --dir {shown(DEMO / "pki")} "{spaced}"
Without a browser, play the page from another terminal:
  .venv/bin/python scripts/demo_client.py --count 30
Press Ctrl+C to stop everything.
==============================================================================
"""


if __name__ == "__main__":
    sys.exit(main())
