"""The central passport signing key on a PKCS#11 token: the platform's only PKCS#11 module.

The key is generated on the HSM (SoftHSM2 in development and tests, any PKCS#11 module in
production) and never leaves it: nothing here reads, writes or stores key material; the
database and files hold only the public certificate. Configuration (``HsmConfig``): the module
path, the token label, the key label, the PIN (from an environment variable or a file, never
from the database) and the algorithm:

- ``ES256``: an EC P-256 key, ``CKM_ECDSA`` over SHA-256 of the data (computed here); PKCS#11
  returns r‖s, exactly the COSE signature format;
- ``PS256``: an RSA key (2048 bits or more), ``CKM_SHA256_RSA_PKCS_PSS`` with MGF1-SHA-256 and
  a 32-byte salt.

The signer certificate is the token's certificate object with the key's ``CKA_ID`` (or
``certificate_path`` when the certificate is kept outside the token). On opening, a probe
signature is verified with the certificate's public key: a certificate that does not belong to
the key stops the run before anything is issued.

Sessions: one logged-in session for the signer's lifetime. python-pkcs11 initialises modules
without the locking arguments, so one thread at a time calls a module (``module_lock``):
within a process signing is serial, and the issuance scales with worker processes. If the
module was re-initialised or logged out underneath (another component of the process using the
same module), the session is reopened once and the call retried.

The PDF passport is signed by a key of its own, never by the DCC signer
(``HsmConfig.for_documents``, ``KYSO_PASSPORT_PDF_*``): a Document Signer Certificate's only
extended key usage is the DCC one, which PDF readers (Poppler, NSS) do not accept for a
document signature. The document key's certificate must allow emailProtection or
documentSigning (or name no extended key usage) and must not carry the DCC key usages;
``pdf_signer`` gives pyHanko's PKCS#11 signer on it for the PAdES signature.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import MGF, Attribute, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

__all__ = [
    "HsmConfig",
    "HsmError",
    "HsmSigner",
    "check_document_certificate",
    "verify_cose_signature",
]

PIN_VARIABLE: Final = "KYSO_PASSPORT_PIN"
PIN_FILE_VARIABLE: Final = "KYSO_PASSPORT_PIN_FILE"
SALT_LENGTH: Final = 32

# python-pkcs11 errors after which reopening the sessions may help (module re-initialised,
# logged out by another component, session closed).
_RETRYABLE: Final = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.UserNotLoggedIn,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
    p11.GeneralError,
    p11.DeviceError,
)


TOKEN_READ_TRIES = 6

# Extended key usages PDF readers accept on a document signature: emailProtection (NSS, so
# Poppler/Evince/Okular, and Adobe), documentSigning (RFC 9336), Adobe's authentic documents.
EKU_EMAIL_PROTECTION: Final = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.4")
EKU_DOCUMENT_SIGNING: Final = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
EKU_ADOBE_AUTHENTIC_DOCUMENTS: Final = x509.ObjectIdentifier("1.2.840.113583.1.1.5")
DOCUMENT_EKUS: Final = frozenset(
    {EKU_EMAIL_PROTECTION, EKU_DOCUMENT_SIGNING, EKU_ADOBE_AUTHENTIC_DOCUMENTS}
)
# The DCC Document Signer usages (eHealth network, Guidelines on DCC certificate governance):
# a certificate carrying them is a DSC and signs no PDF.
DCC_EKU_PREFIX: Final = "1.3.6.1.4.1.1847.2021.1."


class HsmError(RuntimeError):
    """The central signing key cannot be used. ``code`` names the passport text, ``values``
    fill it in (staff read the text in their language; the English detail is for the logs)."""

    def __init__(self, code: str, detail: str, **values: str) -> None:
        super().__init__(detail)
        self.code = code
        self.values = values


@dataclass(frozen=True)
class HsmConfig:
    module: str
    token_label: str
    key_label: str
    pin: str = field(repr=False)
    algorithm: str = "ES256"
    certificate_path: str | None = None
    # "dcc": the DCC signer (COSE); "document": the PDF passport's document-signing key.
    purpose: str = "dcc"

    @classmethod
    def for_documents(cls, settings: Mapping[str, Any], environ: Mapping[str, str]) -> HsmConfig:
        """The PDF passport's document-signing key: ``KYSO_PASSPORT_PDF_KEY_LABEL`` (required),
        ``KYSO_PASSPORT_PDF_TOKEN_LABEL`` (default: the DCC signer's token),
        ``KYSO_PASSPORT_PDF_ALGORITHM`` (ES256, default, or PS256) and
        ``KYSO_PASSPORT_PDF_CERTIFICATE``; module and PIN as for the DCC signer."""
        return cls.from_settings(settings, environ, prefix="PDF_")

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], environ: Mapping[str, str], *, prefix: str = ""
    ) -> HsmConfig:
        """From ``PASSPORT_*`` settings (``KYSO_PASSPORT_*`` variables); the PIN only from
        ``KYSO_PASSPORT_PIN`` or the file ``KYSO_PASSPORT_PIN_FILE`` names. ``prefix`` "PDF_":
        the key's own settings are ``PASSPORT_PDF_*`` (the token's falls back to the DCC one)."""

        def value(name: str) -> str | None:
            configured = settings.get(f"PASSPORT_{name}") or environ.get(f"KYSO_PASSPORT_{name}")
            return str(configured) if configured else None

        def own(name: str) -> str | None:
            return value(prefix + name)

        token_label = own("TOKEN_LABEL") or value("TOKEN_LABEL")
        missing = [
            f"KYSO_PASSPORT_{name}"
            for name, configured in (
                ("PKCS11_MODULE", value("PKCS11_MODULE")),
                ("TOKEN_LABEL", token_label),
                (prefix + "KEY_LABEL", own("KEY_LABEL")),
            )
            if configured is None
        ]
        pin = environ.get(PIN_VARIABLE)
        pin_file = environ.get(PIN_FILE_VARIABLE)
        if pin is None and pin_file:
            try:
                pin = Path(pin_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise HsmError(
                    "hsm_pin_file", f"cannot read the PIN file {pin_file}: {exc}", path=pin_file
                ) from exc
        if pin is None:
            missing.append(f"{PIN_VARIABLE}/{PIN_FILE_VARIABLE}")
        if missing:
            raise HsmError(
                "hsm_not_configured",
                "the passport signing key is not configured: set " + ", ".join(missing),
                missing=", ".join(missing),
            )
        algorithm = (own("ALGORITHM") or "ES256").upper()
        if algorithm not in ("ES256", "PS256"):
            raise HsmError(
                "hsm_algorithm",
                f"KYSO_PASSPORT_{prefix}ALGORITHM must be ES256 or PS256, not {algorithm}",
                value=algorithm,
            )
        assert pin is not None
        config = cls(
            module=str(value("PKCS11_MODULE")),
            token_label=str(token_label),
            key_label=str(own("KEY_LABEL")),
            pin=pin,
            algorithm=algorithm,
            certificate_path=own("CERTIFICATE"),
            purpose="document" if prefix else "dcc",
        )
        if prefix and (config.token_label, config.key_label) == (
            value("TOKEN_LABEL"),
            value("KEY_LABEL"),
        ):
            raise HsmError(
                "hsm_not_configured",
                "the PDF passport needs a document-signing key of its own: set "
                "KYSO_PASSPORT_PDF_KEY_LABEL to another key than KYSO_PASSPORT_KEY_LABEL",
            )
        return config


def _load_certificate(data: bytes) -> x509.Certificate:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_LENGTH)


def verify_cose_signature(
    public_key: object, algorithm: str, data: bytes, signature: bytes
) -> None:
    """Raises ``InvalidSignature`` unless ``signature`` is a COSE ``algorithm`` signature."""
    if algorithm == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
        if len(signature) != 64:
            raise InvalidSignature("an ES256 signature is 64 bytes (r‖s)")
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "PS256" and isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, _PSS, hashes.SHA256())
    else:
        raise InvalidSignature(f"{algorithm} does not fit the certificate's key")


def check_document_certificate(certificate: x509.Certificate, key_label: str) -> None:
    """Raises ``HsmError`` unless ``certificate`` may sign PDF documents: an extended key usage
    readers accept (or none), no DCC usage, digitalSignature or nonRepudiation."""
    try:
        usages = set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    dcc = sorted(u.dotted_string for u in usages if u.dotted_string.startswith(DCC_EKU_PREFIX))
    if dcc:
        raise HsmError(
            "hsm_certificate",
            f"the certificate of {key_label!r} is a DCC signer certificate ({', '.join(dcc)}): "
            "the PDF needs a document-signing certificate of its own",
        )
    if usages and not usages & DOCUMENT_EKUS:
        raise HsmError(
            "hsm_certificate",
            f"the certificate of {key_label!r} allows neither emailProtection nor "
            "documentSigning: PDF readers would not trust its signature",
        )
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (key_usage.digital_signature or key_usage.content_commitment):
        raise HsmError(
            "hsm_certificate",
            f"the certificate of {key_label!r} allows neither digitalSignature nor nonRepudiation",
        )


# python-pkcs11 initialises a module with C_Initialize(NULL): the module may then assume that
# no two threads call it at once (SoftHSM2 crashes if they do). Every call into a module goes
# through that module's lock; a process signs on one thread at a time, and several processes
# (each its own module instance) sign in parallel.
_MODULE_LOCKS: dict[str, threading.RLock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()


def module_lock(module: str) -> threading.RLock:
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(module, threading.RLock())


class HsmSigner:
    """Signs COSE Sig_structures with the central key; ``sign`` may be called from any thread."""

    def __init__(self, config: HsmConfig) -> None:
        self.config = config
        self.algorithm = config.algorithm
        self.lock = module_lock(config.module)
        self._generation = 0
        self._login: Any = None
        self._key: Any = None
        self._sessions: list[Any] = []
        self._pdf_signer: Any = None
        self._pdf_generation = -1
        self._pdf_chain: tuple[x509.Certificate, ...] = ()
        with self.lock:
            try:
                self._lib = pkcs11.lib(config.module)
            except (RuntimeError, OSError, p11.PKCS11Error) as exc:
                raise HsmError("hsm_unavailable", f"cannot load {config.module}: {exc}") from exc
            self._open()
            self.certificate = self._find_certificate()
        self.certificate_der = self.certificate.public_bytes(serialization.Encoding.DER)
        self._check_key_matches()

    # --- sessions ------------------------------------------------------------------------------

    def _token(self) -> Any:
        # SoftHSM rewrites a token's file when a process logs in; another process reading it
        # at that moment gets CKR_GENERAL_ERROR (seen with four workers starting together).
        # A short retry covers it; a token that stays unreadable is reported.
        for attempt in range(TOKEN_READ_TRIES):
            try:
                return self._lib.get_token(token_label=self.config.token_label)
            except (p11.NoSuchToken, p11.MultipleTokensReturned) as exc:
                raise HsmError(
                    "hsm_unavailable",
                    f"no single token labelled {self.config.token_label!r}: {exc}",
                ) from exc
            except p11.GeneralError as exc:
                if attempt == TOKEN_READ_TRIES - 1:
                    raise HsmError("hsm_unavailable", f"cannot read the tokens: {exc}") from exc
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _open(self) -> None:
        token = self._token()
        try:
            self._login = token.open(user_pin=self.config.pin)
        except p11.UserAlreadyLoggedIn:
            self._login = token.open()
        except p11.PinIncorrect as exc:
            raise HsmError("hsm_pin", "the token refused the configured PIN") from exc
        except p11.PKCS11Error as exc:
            raise HsmError("hsm_unavailable", f"cannot log in to the token: {exc}") from exc
        self._key = self._private_key(self._login)
        self._generation += 1

    def _reopen(self) -> None:
        for session in (*self._sessions, self._login):
            with contextlib.suppress(p11.PKCS11Error):
                session.close()
        self._sessions.clear()
        try:
            self._open()
        except (HsmError, p11.PKCS11Error):
            # The module itself was finalised underneath: initialise it again.
            self._lib.reinitialize()
            self._open()

    def _private_key(self, session: Any) -> Any:
        try:
            return session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, label=self.config.key_label
            )
        except (p11.NoSuchKey, p11.MultipleObjectsReturned) as exc:
            raise HsmError(
                "hsm_unavailable",
                f"no single private key labelled {self.config.key_label!r} on the token: {exc}",
            ) from exc

    # --- signing -------------------------------------------------------------------------------

    def _sign_once(self, key: Any, data: bytes) -> bytes:
        if self.algorithm == "ES256":
            return bytes(key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA))
        return bytes(
            key.sign(
                data,
                mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                mechanism_param=(Mechanism.SHA256, MGF.SHA256, SALT_LENGTH),
            )
        )

    def sign(self, data: bytes) -> bytes:
        """The COSE signature of ``data`` (raw r‖s for ES256, PSS for PS256)."""
        with self.lock:
            try:
                return self._sign_once(self._key, data)
            except _RETRYABLE:
                self._reopen()
                try:
                    return self._sign_once(self._key, data)
                except p11.PKCS11Error as exc:
                    raise HsmError("hsm_unavailable", f"the token cannot sign: {exc!r}") from exc
            except p11.PKCS11Error as exc:
                raise HsmError("hsm_unavailable", f"the token cannot sign: {exc!r}") from exc

    # --- certificate ---------------------------------------------------------------------------

    def _find_certificate(self) -> x509.Certificate:
        if self.config.certificate_path:
            try:
                return _load_certificate(Path(self.config.certificate_path).read_bytes())
            except (OSError, ValueError) as exc:
                raise HsmError(
                    "hsm_certificate",
                    f"cannot read the signer certificate {self.config.certificate_path}: {exc}",
                ) from exc
        session = self._login
        key = self._private_key(session)
        key_id = key[Attribute.ID]
        found = list(
            session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: key_id})
        ) or list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: self.config.key_label}
            )
        )
        if len(found) != 1:
            raise HsmError(
                "hsm_certificate",
                f"expected one certificate for key {self.config.key_label!r} on the token, "
                f"found {len(found)}: set KYSO_PASSPORT_CERTIFICATE",
            )
        return x509.load_der_x509_certificate(bytes(found[0][Attribute.VALUE]))

    def _check_key_matches(self) -> None:
        public_key = self.certificate.public_key()
        wants = ec.EllipticCurvePublicKey if self.algorithm == "ES256" else rsa.RSAPublicKey
        if not isinstance(public_key, wants):
            raise HsmError(
                "hsm_certificate",
                f"{self.algorithm} needs an {'EC P-256' if self.algorithm == 'ES256' else 'RSA'}"
                " key, the signer certificate has another kind",
            )
        if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name != (
            "secp256r1"
        ):
            raise HsmError("hsm_certificate", "ES256 needs a P-256 key")
        if self.config.purpose == "document":
            check_document_certificate(self.certificate, self.config.key_label)
        probe = b"kyso passport signer probe"
        try:
            verify_cose_signature(public_key, self.algorithm, probe, self.sign(probe))
        except InvalidSignature as exc:
            raise HsmError(
                "hsm_certificate",
                "the signer certificate does not belong to the token's key "
                f"{self.config.key_label!r}",
            ) from exc

    # --- PDF -------------------------------------------------------------------------------------

    def pdf_signer(self, chain: tuple[x509.Certificate, ...] = ()) -> Any:
        """pyHanko's PKCS#11 signer on this key, on a session of its own (PAdES); ``chain``:
        the certificate's issuers, carried in the signature.

        pyHanko signs from a worker thread of its own: hold ``lock`` while it signs."""
        from asn1crypto import x509 as asn1_x509

        with self.lock:
            if (
                self._pdf_signer is not None
                and self._pdf_generation == self._generation
                and self._pdf_chain == chain
            ):
                return self._pdf_signer
            session = self._token().open()
            self._sessions.append(session)
        self._pdf_generation = self._generation
        self._pdf_chain = chain
        self._pdf_signer = _template_pkcs11_signer()(
            session,
            key_label=self.config.key_label,
            signing_cert=asn1_x509.Certificate.load(self.certificate_der),
            ca_chain=[
                asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
                for c in chain
            ],
            prefer_pss=self.algorithm == "PS256",
            # CKM_ECDSA over a digest pyHanko computes: modules (SoftHSM2 among them) that
            # lack CKM_ECDSA_SHA256 sign with it too.
            use_raw_mechanism=self.algorithm == "ES256",
            other_certs_to_pull=(),
        )
        return self._pdf_signer

    def close(self) -> None:
        with self.lock:
            for session in (*self._sessions, self._login):
                try:
                    if session is not None:
                        session.close()
                except p11.PKCS11Error:
                    pass
            self._sessions.clear()
            self._login = None
            self._generation += 1


@functools.cache
def _template_pkcs11_signer() -> type:
    """pyHanko's PKCS#11 signer whose PAdES CMS structure is assembled from parts made once
    (``pdfcms``: 13 ms of CPU a signature otherwise)."""
    from pyhanko.sign.pkcs11 import PKCS11Signer

    from kyso.platform.passport.pdfcms import TemplateCmsSigner

    return type("TemplatePKCS11Signer", (TemplateCmsSigner, PKCS11Signer), {})
