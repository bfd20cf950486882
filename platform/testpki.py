"""A real test PKI shaped like Vietnam's, served over HTTP: for the tests and the demo only.

- a root CA (playing the national root CA) whose CRL is served at ``/crl/root.crl``;
- an issuing CA (playing a commercial CA that issues organisation tokens), certified by the root,
  whose certificates carry AIA (OCSP at ``/ocsp``, CA issuers at ``/certs/issuing.crt``) and a CRL
  distribution point (``/crl/issuing.crl``);
- a delegated OCSP responder (id-kp-OCSPSigning, id-pkix-ocsp-nocheck) for the issuing CA;
- an RFC 3161 time-stamping authority at ``/tsa`` (certificate issued by the root, critical
  id-kp-timeStamping).

Officers' certificates are issued by ``TestPki.issuing.issue`` (the same call as
``kyso.agent.devpki.DevCA.issue``, so SoftHSM tokens are provisioned with it), for keys that may
live on a token. The OCSP answers, CRLs and time-stamps are built by certomancer's services (the
PKI-testing tool pyHanko is tested with); this module keeps the state: the keys, the issued
certificates and the revocations, in one folder, so that the demo keeps its PKI between runs and a
revocation made by one process (``python -m kyso.platform.testpki revoke``) is seen at once by the
running service.

Nothing here is used in production.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from certomancer import crypto_utils
from certomancer.services import (
    CRLBuilder,
    RevocationInfoInterface,
    SimpleOCSPResponder,
    TimeStamper,
    choose_signed_digest,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from kyso.agent.devpki import (
    SIGNING_KEY_USAGE,
    DevCA,
    IssuerPrivateKey,
    SubjectPublicKey,
    issue_certificate,
)

__all__ = ["IssuingCA", "RunningPki", "TestPki", "main", "start"]

DEFAULT_PORT: Final = 8091
CRL_VALIDITY: Final = timedelta(hours=1)
OCSP_VALIDITY: Final = timedelta(minutes=10)
REASONS: Final = (
    "unspecified",
    "key_compromise",
    "ca_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
)


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: IssuerPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> IssuerPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


class _LoadedKeys(crypto_utils.PycaCryptographyBackend):
    """certomancer's signing with each private key parsed once.

    certomancer parses the issuer's key for every OCSP answer, CRL and time-stamp; for an
    RSA-2048 key OpenSSL 3's checks make that ~130 ms, which capped the TSA at a few tokens per
    second per core. The signature is the same; only the parse is kept."""

    def __init__(self) -> None:
        self._keys: dict[bytes, Any] = {}
        self._lock = threading.Lock()

    def generic_sign(self, private_key: Any, tbs_bytes: bytes, sd_algo: Any) -> bytes:
        algorithm = sd_algo.signature_algo
        if algorithm not in ("rsassa_pkcs1v15", "ecdsa"):
            signature: bytes = super().generic_sign(private_key, tbs_bytes, sd_algo)
            return signature
        der = private_key.dump()
        with self._lock:
            key = self._keys.get(der)
        if key is None:
            key = serialization.load_der_private_key(der, password=None)
            with self._lock:
                self._keys[der] = key
        digest = getattr(hashes, sd_algo.hash_algo.upper())()
        if algorithm == "ecdsa":
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key.sign(tbs_bytes, ec.ECDSA(digest))
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(tbs_bytes, padding.PKCS1v15(), digest)


# Test PKI only (this module is never imported in production): every certomancer service of
# the process signs with keys parsed once.
if not isinstance(crypto_utils.CRYPTO_BACKEND, _LoadedKeys):
    crypto_utils.CRYPTO_BACKEND = _LoadedKeys()


def _asn1_cert(certificate: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _asn1_key(key: IssuerPrivateKey) -> Any:
    return asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class Revocation:
    serial: int
    at: datetime
    reason: str


@dataclass(frozen=True)
class IssuingCA(DevCA):
    """The issuing CA: ``issue`` adds AIA and the CRL distribution point, and records the
    certificate so that the OCSP responder answers "good" for it (and "unknown" for others)."""

    base_url: str = ""
    issued_dir: Path | None = None

    def issue(
        self,
        public_key: SubjectPublicKey,
        subject: x509.Name,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        key_usage: Iterable[str] | None = SIGNING_KEY_USAGE,
        serial_number: int | None = None,
        extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    ) -> x509.Certificate:
        certificate = super().issue(
            public_key,
            subject,
            not_before=not_before,
            not_after=not_after,
            key_usage=key_usage,
            serial_number=serial_number,
            extensions=[
                *extensions,
                (_aia(self.base_url, "issuing"), False),
                (_crl_dp(self.base_url, "issuing"), False),
            ],
        )
        if self.issued_dir is not None:
            self.issued_dir.mkdir(parents=True, exist_ok=True)
            (self.issued_dir / f"{certificate.serial_number:X}.pem").write_bytes(_pem(certificate))
        return certificate


def _aia(base_url: str, ca: str, *, ocsp: bool = True) -> x509.AuthorityInformationAccess:
    descriptions = [
        x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier(f"{base_url}/certs/{ca}.crt"),
        )
    ]
    if ocsp:
        descriptions.insert(
            0,
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(f"{base_url}/ocsp"),
            ),
        )
    return x509.AuthorityInformationAccess(descriptions)


def _crl_dp(base_url: str, ca: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(f"{base_url}/crl/{ca}.crl")],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def _ca_certificate(
    key: IssuerPrivateKey,
    name: x509.Name,
    issuer: DevCA | None,
    base_url: str,
    *,
    path_length: int | None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    extensions: list[tuple[x509.ExtensionType, bool]] = []
    if issuer is not None:
        extensions = [
            (_aia(base_url, "root", ocsp=False), False),
            (_crl_dp(base_url, "root"), False),
        ]
    return issue_certificate(
        issuer.key if issuer else key,
        issuer.certificate if issuer else None,
        key.public_key(),
        name,
        ca=True,
        path_length=path_length,
        key_usage=("keyCertSign", "cRLSign"),
        extensions=extensions,
        not_before=now - timedelta(days=30),
        valid_days=3650 if issuer is None else 1825,
        hash_algorithm=hashes.SHA256(),
    )


def _service_certificate(
    issuer: DevCA,
    key: IssuerPrivateKey,
    common_name: str,
    usage: x509.ObjectIdentifier,
    base_url: str,
    issuer_label: str,
) -> x509.Certificate:
    now = datetime.now(UTC)
    last: x509.ExtensionType = (
        x509.OCSPNoCheck()
        if usage == ExtendedKeyUsageOID.OCSP_SIGNING
        else _crl_dp(base_url, issuer_label)
    )
    return issue_certificate(
        issuer.key,
        issuer.certificate,
        key.public_key(),
        _name(common_name, "Kyso Test PKI"),
        key_usage=("digitalSignature",),
        extended_key_usage=(usage,),
        extended_key_usage_critical=usage == ExtendedKeyUsageOID.TIME_STAMPING,
        extensions=[(last, False)],
        not_before=now - timedelta(days=30),
        valid_days=1825,
        hash_algorithm=hashes.SHA256(),
    )


_FILES: Final = ("root", "issuing", "ocsp", "tsa")


@dataclass
class TestPki:
    """The PKI's keys and certificates, kept in ``directory`` (see the module's docstring)."""

    __test__ = False  # not a pytest test class

    directory: Path
    base_url: str
    root: DevCA
    issuing: IssuingCA
    ocsp: DevCA  # the delegated OCSP responder (its "certificate" and "key")
    tsa: DevCA  # the time-stamping authority
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Requests served, by path ("/ocsp", "/crl/issuing.crl", ...): tests count OCSP requests.
    hits: Counter[str] = field(default_factory=Counter, repr=False)
    _stamper: TimeStamper | None = field(default=None, repr=False)

    # ---- creating and loading ---------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_url: str) -> TestPki:
        """A new PKI whose certificates point at ``base_url`` (``http://127.0.0.1:PORT``)."""
        base_url = base_url.rstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        root_key = _rsa_key()
        root = DevCA(
            root_key,
            _ca_certificate(
                root_key,
                _name("Kyso Test Root CA (như Root CA quốc gia)", "Kyso Test PKI"),
                None,
                base_url,
                path_length=1,
            ),
        )
        issuing_key = _rsa_key()
        issuing_cert = _ca_certificate(
            issuing_key,
            _name("Kyso Test Issuing CA (như CA công cộng)", "Kyso Test CA JSC"),
            root,
            base_url,
            path_length=0,
        )
        issuing = IssuingCA(issuing_key, issuing_cert, base_url, directory / "issued")
        # The TSA signs with EC P-256: each token is a signature, and the background time-stamping
        # of a 3,000-dose batch asks for 3,000 of them.
        ocsp_key, tsa_key = _rsa_key(), ec.generate_private_key(ec.SECP256R1())
        ocsp = DevCA(
            ocsp_key,
            _service_certificate(
                issuing,
                ocsp_key,
                "Kyso Test OCSP Responder",
                ExtendedKeyUsageOID.OCSP_SIGNING,
                base_url,
                "issuing",
            ),
        )
        tsa = DevCA(
            tsa_key,
            _service_certificate(
                root, tsa_key, "Kyso Test TSA", ExtendedKeyUsageOID.TIME_STAMPING, base_url, "root"
            ),
        )
        for label, ca in zip(_FILES, (root, issuing, ocsp, tsa), strict=True):
            (directory / f"{label}.pem").write_bytes(_pem(ca.certificate))
            key_path = directory / f"{label}.key.pem"
            key_path.write_bytes(_key_pem(ca.key))
            key_path.chmod(0o600)
        (directory / "pki.json").write_text(json.dumps({"base_url": base_url}), encoding="utf-8")
        (directory / "revoked.json").write_text("{}", encoding="utf-8")
        return cls(directory, base_url, root, issuing, ocsp, tsa)

    @classmethod
    def load(cls, directory: Path) -> TestPki:
        base_url = json.loads((directory / "pki.json").read_text(encoding="utf-8"))["base_url"]
        loaded = {
            label: (
                _load_key(directory / f"{label}.key.pem"),
                x509.load_pem_x509_certificate((directory / f"{label}.pem").read_bytes()),
            )
            for label in _FILES
        }
        root = DevCA(*loaded["root"])
        issuing = IssuingCA(*loaded["issuing"], base_url, directory / "issued")
        return cls(
            directory, base_url, root, issuing, DevCA(*loaded["ocsp"]), DevCA(*loaded["tsa"])
        )

    @classmethod
    def open(cls, directory: Path, base_url: str) -> TestPki:
        """The PKI kept in ``directory`` if it serves ``base_url``, else a new one there."""
        if (directory / "pki.json").exists():
            pki = cls.load(directory)
            if pki.base_url == base_url.rstrip("/"):
                return pki
        return cls.create(directory, base_url)

    # ---- what the platform is configured with -----------------------------------------------

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/ocsp"

    @property
    def tsa_url(self) -> str:
        return f"{self.base_url}/tsa"

    def anchors_pem(self) -> bytes:
        """The trust bundle: the root (anchor) and the issuing CA (an intermediate)."""
        return _pem(self.root.certificate) + _pem(self.issuing.certificate)

    def write_anchors(self, path: Path) -> Path:
        path.write_bytes(self.anchors_pem())
        return path

    # ---- revocation -------------------------------------------------------------------------

    def revoke(
        self, serial: int, at: datetime | None = None, reason: str = "key_compromise"
    ) -> Revocation:
        """Revokes the issuing CA's certificate ``serial`` from ``at`` (now by default)."""
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {', '.join(REASONS)}")
        at = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        with self._lock:
            state = self._revoked_state()
            state[format(serial, "X")] = {"at": at.isoformat(), "reason": reason}
            path = self.directory / "revoked.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
            temporary.replace(path)
        return Revocation(serial, at, reason)

    def reinstate(self, serial: int) -> None:
        """Takes a revocation back (as a released certificateHold would): for tests that must
        not leave a certificate the whole session shares revoked."""
        with self._lock:
            state = self._revoked_state()
            state.pop(format(serial, "X"), None)
            path = self.directory / "revoked.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
            temporary.replace(path)

    def _revoked_state(self) -> dict[str, dict[str, str]]:
        path = self.directory / "revoked.json"
        if not path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def revocations(self) -> dict[int, Revocation]:
        return {
            int(serial, 16): Revocation(
                int(serial, 16), datetime.fromisoformat(entry["at"]), entry["reason"]
            )
            for serial, entry in self._revoked_state().items()
        }

    def issued(self, serial: int) -> bool:
        return (self.directory / "issued" / f"{serial:X}.pem").exists()

    # ---- the HTTP service -------------------------------------------------------------------

    def wsgi(self) -> Callable[..., Any]:
        """The WSGI application serving OCSP, CRLs, CA certificates and time-stamps."""

        @Request.application
        def application(request: Request) -> Response:
            return self._dispatch(request)

        return application

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        with self._lock:
            self.hits[path] += 1
        now = datetime.now(UTC).replace(microsecond=0)
        if path == "/ocsp" and request.method == "POST":
            return Response(
                self._ocsp(request.get_data(), now), mimetype="application/ocsp-response"
            )
        if path == "/tsa" and request.method == "POST":
            return Response(
                self._timestamp(request.get_data()), mimetype="application/timestamp-reply"
            )
        if path in ("/crl/root.crl", "/crl/issuing.crl"):
            ca = self.root if path == "/crl/root.crl" else self.issuing
            return Response(self._crl(ca, now), mimetype="application/pkix-crl")
        if path in ("/certs/root.crt", "/certs/issuing.crt"):
            ca = self.root if path == "/certs/root.crt" else self.issuing
            der = ca.certificate.public_bytes(serialization.Encoding.DER)
            return Response(der, mimetype="application/pkix-cert")
        if path == "/healthz":
            return Response("ok\n", mimetype="text/plain")
        return Response("not found\n", status=404, mimetype="text/plain")

    def _ocsp(self, request_der: bytes, now: datetime) -> bytes:
        pki = self

        class _Revinfo(RevocationInfoInterface):
            def get_issuer_cert(self) -> Any:
                return _asn1_cert(pki.issuing.certificate)

            def check_revocation_status(self, cid: Any, at_time: datetime) -> Any:
                serial = int(cid["serial_number"].native)
                revoked = pki.revocations().get(serial)
                if revoked is not None and revoked.at <= at_time:
                    return (
                        asn1_ocsp.CertStatus(
                            name="revoked",
                            value={
                                "revocation_time": revoked.at,
                                "revocation_reason": revoked.reason,
                            },
                        ),
                        [],
                    )
                if pki.issued(serial):
                    return asn1_ocsp.CertStatus(name="good", value=None), []
                return asn1_ocsp.CertStatus(name="unknown", value=None), []

        responder_cert = _asn1_cert(self.ocsp.certificate)
        responder = SimpleOCSPResponder(
            responder_cert=responder_cert,
            responder_key=_asn1_key(self.ocsp.key),
            signature_algo=choose_signed_digest("sha256", responder_cert.public_key),
            at_time=now,
            revinfo_interface=_Revinfo(),
            validity=OCSP_VALIDITY,
        )
        try:
            parsed = asn1_ocsp.OCSPRequest.load(request_der)
            parsed.native  # noqa: B018  (parsed lazily: malformed input raises here)
        except (ValueError, TypeError):
            malformed = asn1_ocsp.OCSPResponse({"response_status": "malformed_request"})
            return bytes(malformed.dump())
        return bytes(responder.build_ocsp_response(parsed).dump())

    def _crl(self, ca: DevCA, now: datetime) -> bytes:
        certificate = _asn1_cert(ca.certificate)
        builder = CRLBuilder(
            issuer_name=certificate.subject,
            issuer_key=_asn1_key(ca.key),
            signature_algo=choose_signed_digest("sha256", certificate.public_key),
            authority_key_identifier=asn1_core.OctetString(certificate.key_identifier),
        )
        revoked = (
            [
                CRLBuilder.format_revoked_cert(r.serial, asn1_crl.CRLReason(r.reason), r.at)
                for r in self.revocations().values()
                if r.at <= now and self.issued(r.serial)
            ]
            if ca is self.issuing
            else []
        )
        number = int(now.timestamp())
        return bytes(builder.build_crl(number, now, now + CRL_VALIDITY, revoked).dump())

    def _timestamp(self, request_der: bytes) -> bytes:
        stamper = self._stamper
        if stamper is None:  # made once: the TSA's certificate and key do not change
            tsa_cert = _asn1_cert(self.tsa.certificate)
            stamper = self._stamper = TimeStamper(
                tsa_cert=tsa_cert,
                tsa_key=_asn1_key(self.tsa.key),
                certs_to_embed=[tsa_cert, _asn1_cert(self.root.certificate)],
            )
        request = asn1_tsp.TimeStampReq.load(request_der)
        return bytes(stamper.request_tsa_response(request).dump())


@dataclass
class RunningPki:
    """A PKI served on a thread; ``stop()`` shuts the server down."""

    pki: TestPki
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.pki.base_url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per OCSP request would drown the demo's terminal


class _Dispatcher:
    """Binds the port first (port 0: any free one), the PKI that names it comes after."""

    def __init__(self) -> None:
        self.application: Callable[..., Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.application is not None
        return self.application(environ, start_response)


def start(directory: Path, host: str = "127.0.0.1", port: int = 0) -> RunningPki:
    """Serves the PKI of ``directory`` (created, or re-created for another port) on a thread."""
    dispatcher = _Dispatcher()
    server = make_server(host, port, dispatcher, threaded=True, request_handler=_QuietHandler)
    pki = TestPki.open(directory, f"http://{host}:{server.server_port}")
    dispatcher.application = pki.wsgi()
    thread = threading.Thread(target=server.serve_forever, name="kyso-test-pki", daemon=True)
    thread.start()
    return RunningPki(pki, server, thread)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kyso.platform.testpki",
        description="Kyso's test PKI (root, issuing CA, OCSP, CRLs, TSA): for tests and the demo.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve OCSP, CRLs and the TSA (creates the PKI)")
    serve.add_argument("--dir", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    revoke = commands.add_parser("revoke", help="revoke a certificate of the issuing CA")
    revoke.add_argument("--dir", type=Path, required=True)
    revoke.add_argument("serial", help="the certificate's serial, hexadecimal (spaces allowed)")
    revoke.add_argument("--at", help="revoked from (ISO 8601 with offset; default now)")
    revoke.add_argument("--reason", default="key_compromise", choices=REASONS)
    arguments = parser.parse_args(argv)
    if arguments.command == "revoke":
        pki = TestPki.load(arguments.dir)
        serial = int("".join(arguments.serial.replace(":", " ").split()), 16)
        at = datetime.fromisoformat(arguments.at) if arguments.at else None
        done = pki.revoke(serial, at, arguments.reason)
        print(f"revoked {serial:X} from {done.at.isoformat()} ({done.reason})")
        return 0
    running = start(arguments.dir, arguments.host, arguments.port)
    print(f"test PKI on {running.url}: OCSP {running.pki.ocsp_url}, TSA {running.pki.tsa_url}")
    try:
        running.thread.join()
    except KeyboardInterrupt:
        running.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
