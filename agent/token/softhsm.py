"""SoftHSM2 tokens for tests and the demo: a real PKCS#11 token without hardware.

``provision`` creates a token in a directory of its own, generates the key pairs ON the token
(non-extractable, as on an officer's USB token), has a development CA (``kyso.agent.devpki``)
certify each public key and stores every certificate next to its key under the same CKA_ID.

SoftHSM2 reads ``SOFTHSM2_CONF`` and scans its token directory only in ``C_Initialize``, and a
process holds one instance of the module. So: one SoftHSM2 configuration per process at a time
(``provision`` points ``SOFTHSM2_CONF`` at it), and a token added later is seen only after
``rescan`` (``provision`` does that itself). Call ``rescan``/``provision`` only while no
``Pkcs11Token`` is in the middle of an operation: re-initialising closes every session.

What SoftHSM2 2.6 does and does not do (checked with the module on Debian 12):

* wrong PINs: ``CKR_PIN_INCORRECT`` and ``CKF_USER_PIN_COUNT_LOW``, but it never sets
  ``CKF_USER_PIN_FINAL_TRY`` or ``CKF_USER_PIN_LOCKED`` and never locks. ``provision(...,
  pin_status=PinStatus(locked=True))`` writes those flags into the token's stored flags so that
  ``C_GetTokenInfo`` reports them (SoftHSM2 still accepts a correct PIN then: the lock exists
  only in the flags, which is exactly what an agent that must not call ``C_Login`` reads);
* ``CKA_ALWAYS_AUTHENTICATE`` is honoured: ``C_Sign`` fails with ``CKR_USER_NOT_LOGGED_IN``
  unless a context-specific ``C_Login`` follows ``C_SignInit``;
* removal: ``delete_token`` (``softhsm2-util --delete-token`` in another process) makes the next
  ``C_Sign`` fail with ``CKR_OBJECT_HANDLE_INVALID`` and ``C_GetTokenInfo`` with
  ``CKR_GENERAL_ERROR``, while the slot still claims a token is present;
* a private key with ``CKA_PRIVATE=FALSE`` can be used without login (so ``KeySpec.private``
  exists only to model tokens that show their private-key objects before login).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, CertificateType, KeyType, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from kyso.agent import devpki
from kyso.agent.errors import AgentError
from kyso.agent.token.library import reinitialize_module
from kyso.agent.token.model import PinStatus

__all__ = [
    "MODULE_CANDIDATES",
    "CertSpec",
    "KeySpec",
    "ProvisionedCertificate",
    "ProvisionedKey",
    "ProvisionedToken",
    "SoftHSMError",
    "activate",
    "delete_token",
    "expired_validity",
    "find_module",
    "private_key_attributes",
    "provision",
    "rescan",
    "standard_certificates",
    "store_certificate",
    "user_logged_in",
    "write_config",
]

MODULE_CANDIDATES: tuple[str, ...] = (
    "/usr/lib/softhsm/libsofthsm2.so",  # Debian, Ubuntu
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",  # Fedora
    "/usr/local/lib/softhsm/libsofthsm2.so",  # source builds
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",  # macOS
    r"C:\SoftHSM2\lib\softhsm2-x64.dll",  # Windows installer
)

_CURVES: dict[int, tuple[str, ec.EllipticCurve]] = {
    256: ("secp256r1", ec.SECP256R1()),
    384: ("secp384r1", ec.SECP384R1()),
}

# SoftHSM2 keeps the token flags as the vendor attribute CKA_OS_TOKENFLAGS (0x8000534B) in
# token.object; its file format stores each attribute as (type, kind, value) big-endian 64-bit
# words, kind 2 being an unsigned long. Used only to make the token report PIN flags.
_TOKEN_FLAGS_RECORD = bytes.fromhex("000000008000534b0000000000000002")

_FLAG_COUNT_LOW = 0x00010000
_FLAG_FINAL_TRY = 0x00020000
_FLAG_LOCKED = 0x00040000


class SoftHSMError(AgentError, RuntimeError):
    """SoftHSM2 is missing or refused to provision a token."""


@dataclass(frozen=True)
class KeySpec:
    """A key pair to generate on the token.

    ``key_type`` "RSA" with ``bits`` 2048/3072/4096, or "EC" with ``bits`` 256/384.
    ``public_key_object=False`` deletes the public-key object after the certificate is issued
    (some tokens keep none). ``private=False`` makes the private-key object visible before login
    (as some middleware shows it); see the module notes before using it.
    """

    name: str
    key_type: str = "EC"
    bits: int = 256
    always_authenticate: bool = False
    public_key_object: bool = True
    private: bool = True


@dataclass(frozen=True)
class CertSpec:
    """A certificate object to store on the token under the CKA_ID of key ``key``.

    ``public_key_of`` certifies another key's public key instead (a CKA_ID that points at the
    wrong key). ``key_usage=None`` leaves the extension out.
    """

    name: str
    key: str
    subject: x509.Name | None = None
    key_usage: tuple[str, ...] | None = devpki.SIGNING_KEY_USAGE
    not_before: datetime | None = None
    not_after: datetime | None = None
    public_key_of: str | None = None


@dataclass(frozen=True)
class ProvisionedKey:
    name: str
    key_id: bytes  # CKA_ID of both halves of the pair
    key_type: str  # "RSA" or "EC"
    bits: int
    curve: str | None
    public_key: devpki.SubjectPublicKey
    always_authenticate: bool
    public_key_object: bool


@dataclass(frozen=True)
class ProvisionedCertificate:
    name: str
    key: str  # name of the key whose CKA_ID the certificate object carries
    key_id: bytes
    certificate: x509.Certificate
    der: bytes
    pem: bytes
    fingerprint_sha256: str  # lower-case hex, as CertificateInfo has it
    certified_key_id: bytes  # CKA_ID of the key whose public key the certificate carries

    @property
    def matches_key(self) -> bool:
        """False for a certificate stored under another key's CKA_ID."""
        return self.key_id == self.certified_key_id


@dataclass(frozen=True)
class ProvisionedToken:
    """Everything a test or the demo needs to use (and check) a provisioned token."""

    label: str
    serial: str
    slot_id: int
    user_pin: str
    so_pin: str
    module_path: str
    conf_path: Path
    token_dir: Path
    ca: devpki.DevCA
    keys: Mapping[str, ProvisionedKey]
    certificates: Mapping[str, ProvisionedCertificate]
    pin_status: PinStatus = field(default_factory=PinStatus)

    @property
    def ca_pem(self) -> bytes:
        return self.ca.certificate.public_bytes(serialization.Encoding.PEM)


def find_module() -> str:
    """Path of libsofthsm2: ``$KYSO_SOFTHSM_MODULE`` or the first usual location that exists."""
    configured = os.environ.get("KYSO_SOFTHSM_MODULE")
    if configured:
        return configured
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).is_file():
            # The resolved path, as the agent's config check gives it: python-pkcs11 loads a
            # module once per path string, and SoftHSM refuses a second C_Initialize.
            return os.path.realpath(candidate)
    raise SoftHSMError("SoftHSM2 not found: install softhsm2 or set KYSO_SOFTHSM_MODULE")


def write_config(directory: Path) -> Path:
    """Writes ``directory/softhsm2.conf`` with its token store in ``directory/tokens``."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens = directory / "tokens"
    tokens.mkdir(exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        "# Written by kyso.agent.token.softhsm for tests and the demo.\n"
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n",
        encoding="utf-8",
    )
    return conf


def activate(conf: Path) -> None:
    """Points this process (and its children) at ``conf``; effective at the next C_Initialize."""
    os.environ["SOFTHSM2_CONF"] = str(conf)


def rescan(module_path: str | None = None) -> None:
    """Re-initialises the module so that it sees tokens and flags written since C_Initialize."""
    lib = pkcs11.lib(module_path or find_module())
    reinitialize_module(lib)


def _util(conf: Path, *args: str) -> str:
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise SoftHSMError("softhsm2-util not found: install softhsm2")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    done = subprocess.run(  # noqa: S603 - fixed tool, arguments from the test's own data
        [tool, *args], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    if done.returncode != 0:
        raise SoftHSMError(f"softhsm2-util {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def delete_token(token: ProvisionedToken) -> None:
    """Deletes the token from another process: what SoftHSM2 offers closest to pulling it out."""
    _util(token.conf_path, "--delete-token", "--serial", token.serial)


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    if len(body) >= 0x80:
        raise ValueError("serial too long")
    return b"\x02" + bytes([len(body)]) + body


def _unwrap_ec_point(value: bytes, field_bytes: int) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the X9.62 point (raw on some old tokens)."""
    if len(value) == 1 + 2 * field_bytes:
        return value
    if value[0] == 0x04 and value[1] < 0x80:
        return value[2:]
    if value[0] == 0x04 and value[1] == 0x81:
        return value[3:]
    raise SoftHSMError("unexpected CKA_EC_POINT encoding")


def _generate(session: Any, spec: KeySpec, key_id: bytes) -> ProvisionedKey:
    public_template: dict[Attribute, Any] = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.VERIFY: True,
        Attribute.ENCRYPT: False,
        Attribute.WRAP: False,
    }
    private_template: dict[Attribute, Any] = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: spec.private,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    if spec.always_authenticate:
        private_template[Attribute.ALWAYS_AUTHENTICATE] = True
    capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
    curve_name: str | None = None
    public_key: devpki.SubjectPublicKey
    if spec.key_type == "RSA":
        if spec.bits not in (2048, 3072, 4096):
            raise ValueError(f"RSA key size {spec.bits} not offered")
        public, _private = session.generate_keypair(
            KeyType.RSA,
            spec.bits,
            id=key_id,
            label=spec.name,
            store=True,
            capabilities=capabilities,
            public_template=public_template,
            private_template=private_template,
        )
        public_key = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        ).public_key()
    elif spec.key_type == "EC":
        if spec.bits not in _CURVES:
            raise ValueError(f"EC curve of {spec.bits} bits not offered")
        curve_name, curve = _CURVES[spec.bits]
        parameters = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(curve_name)},
            local=True,
        )
        public, _private = parameters.generate_keypair(
            id=key_id,
            label=spec.name,
            store=True,
            capabilities=capabilities,
            public_template=public_template,
            private_template=private_template,
        )
        point = _unwrap_ec_point(public[Attribute.EC_POINT], (spec.bits + 7) // 8)
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    else:
        raise ValueError(f"key_type must be 'RSA' or 'EC', not {spec.key_type!r}")
    return ProvisionedKey(
        name=spec.name,
        key_id=key_id,
        key_type=spec.key_type,
        bits=spec.bits,
        curve=curve_name,
        public_key=public_key,
        always_authenticate=spec.always_authenticate,
        public_key_object=spec.public_key_object,
    )


def _store_certificate(
    session: Any, certificate: x509.Certificate, key_id: bytes, label: str
) -> None:
    der = certificate.public_bytes(serialization.Encoding.DER)
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.ID: key_id,
            Attribute.LABEL: label,
            Attribute.SUBJECT: certificate.subject.public_bytes(),
            Attribute.ISSUER: certificate.issuer.public_bytes(),
            Attribute.SERIAL_NUMBER: _der_integer(certificate.serial_number),
            Attribute.VALUE: der,
        }
    )


def _token_object_file(token_dir: Path, serial: str) -> Path:
    candidates = sorted(token_dir.glob("*/token.object"))
    for candidate in candidates:
        # SoftHSM2 names the folder after a UUID that ends with the token's serial.
        if candidate.parent.name.replace("-", "").endswith(serial):
            return candidate
    for candidate in candidates:  # other versions: the serial is one of the stored attributes
        if serial.encode("ascii") in candidate.read_bytes():
            return candidate
    raise SoftHSMError(f"token {serial} not found in {token_dir}")


def _write_pin_flags(token_dir: Path, serial: str, status: PinStatus) -> None:
    path = _token_object_file(token_dir, serial)
    data = bytearray(path.read_bytes())
    at = data.find(_TOKEN_FLAGS_RECORD)
    if at < 0 or data.find(_TOKEN_FLAGS_RECORD, at + 1) >= 0:
        raise SoftHSMError("unexpected token.object layout; cannot set PIN flags")
    at += len(_TOKEN_FLAGS_RECORD)
    flags = int.from_bytes(data[at : at + 8], "big")
    flags &= ~(_FLAG_COUNT_LOW | _FLAG_FINAL_TRY | _FLAG_LOCKED)
    flags |= (
        (_FLAG_COUNT_LOW if status.count_low else 0)
        | (_FLAG_FINAL_TRY if status.final_try else 0)
        | (_FLAG_LOCKED if status.locked else 0)
    )
    data[at : at + 8] = flags.to_bytes(8, "big")
    path.write_bytes(bytes(data))


DEFAULT_SUBJECT_ORGANISATION = "Trạm Y tế Phường Bến Nghé"


def provision(
    directory: Path,
    *,
    label: str = "Kyso Test",
    user_pin: str = "123456",
    so_pin: str = "12345678",
    keys: Sequence[KeySpec] = (KeySpec("rsa", "RSA", 2048), KeySpec("p256", "EC", 256)),
    certificates: Sequence[CertSpec] | None = None,
    ca: devpki.DevCA | None = None,
    module_path: str | None = None,
    pin_status: PinStatus | None = None,
) -> ProvisionedToken:
    """Creates and fills a token; several calls with one ``directory`` add tokens to it.

    ``certificates=None`` issues one signing certificate per key, named after the key.
    ``pin_status`` makes the token report those PIN flags (SoftHSM2 never sets them itself).
    """
    module = module_path or find_module()
    conf = directory / "softhsm2.conf"
    if not conf.exists():
        conf = write_config(directory)
    activate(conf)
    token_dir = directory / "tokens"
    output = _util(
        conf, "--init-token", "--free", "--label", label, "--pin", user_pin, "--so-pin", so_pin
    )
    found = re.search(r"reassigned to slot (\d+)", output)
    if found is None:
        raise SoftHSMError(f"cannot tell which slot the new token went to: {output.strip()}")
    slot_id = int(found.group(1))

    lib = pkcs11.lib(module)
    reinitialize_module(lib)  # SoftHSM2 sees tokens initialised by softhsm2-util only after this
    slot = next((s for s in lib.get_slots(token_present=True) if s.slot_id == slot_id), None)
    if slot is None:
        raise SoftHSMError(f"slot {slot_id} did not appear after initialising the token")
    token = slot.get_token()
    serial = token.serial.decode("ascii")

    ca = ca or devpki.create_ca()
    specs = (
        list(certificates) if certificates is not None else [CertSpec(k.name, k.name) for k in keys]
    )
    generated: dict[str, ProvisionedKey] = {}
    issued: dict[str, ProvisionedCertificate] = {}
    with token.open(rw=True, user_pin=user_pin) as session:
        for key_spec in keys:
            if key_spec.name in generated:
                raise ValueError(f"duplicate key name {key_spec.name!r}")
            generated[key_spec.name] = _generate(session, key_spec, devpki.random_key_id())
        for cert_spec in specs:
            holder = generated[cert_spec.key]
            subject_key = generated[cert_spec.public_key_of or cert_spec.key]
            certificate = ca.issue(
                subject_key.public_key,
                cert_spec.subject or devpki.vn_organisation_subject(DEFAULT_SUBJECT_ORGANISATION),
                not_before=cert_spec.not_before,
                not_after=cert_spec.not_after,
                key_usage=cert_spec.key_usage,
            )
            _store_certificate(session, certificate, holder.key_id, cert_spec.name)
            der = certificate.public_bytes(serialization.Encoding.DER)
            issued[cert_spec.name] = ProvisionedCertificate(
                name=cert_spec.name,
                key=cert_spec.key,
                key_id=holder.key_id,
                certificate=certificate,
                der=der,
                pem=certificate.public_bytes(serialization.Encoding.PEM),
                fingerprint_sha256=hashlib.sha256(der).hexdigest(),
                certified_key_id=subject_key.key_id,
            )
        for key in generated.values():
            if not key.public_key_object:
                for public in session.get_objects(
                    {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key.key_id}
                ):
                    public.destroy()

    status = pin_status or PinStatus()
    if status != PinStatus():
        _write_pin_flags(token_dir, serial, status)
        reinitialize_module(lib)  # SoftHSM2 caches the flags; make it read ours
    return ProvisionedToken(
        label=label,
        serial=serial,
        slot_id=slot_id,
        user_pin=user_pin,
        so_pin=so_pin,
        module_path=module,
        conf_path=conf,
        token_dir=token_dir,
        ca=ca,
        keys=generated,
        certificates=issued,
        pin_status=status,
    )


def _open_token(token: ProvisionedToken) -> Any:
    lib = pkcs11.lib(token.module_path)
    for slot in lib.get_slots(token_present=True):
        if slot.slot_id == token.slot_id:
            return slot.get_token()
    raise SoftHSMError(f"token {token.label!r} is not present")


def store_certificate(
    token: ProvisionedToken, certificate: x509.Certificate, key_id: bytes, label: str
) -> None:
    """Adds a certificate object under ``key_id`` (e.g. one whose key is nowhere on the token)."""
    with _open_token(token).open(rw=True, user_pin=token.user_pin) as session:
        _store_certificate(session, certificate, key_id, label)


def add_key(
    module_path: str,
    token_label: str,
    user_pin: str,
    spec: KeySpec,
    certify: Callable[[ProvisionedKey], x509.Certificate],
) -> tuple[ProvisionedKey, x509.Certificate]:
    """Generates one more key on an existing token (a demo directory made before that key was
    needed) and stores the certificate ``certify`` issues for it under the key's CKA_ID."""
    token = pkcs11.lib(module_path).get_token(token_label=token_label)
    with token.open(rw=True, user_pin=user_pin) as session:
        key = _generate(session, spec, devpki.random_key_id())
        certificate = certify(key)
        _store_certificate(session, certificate, key.key_id, spec.name)
        if not key.public_key_object:
            for public in session.get_objects(
                {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key.key_id}
            ):
                public.destroy()
    return key, certificate


def private_key_attributes(token: ProvisionedToken, key_name: str) -> dict[str, bool]:
    """The protection attributes of a provisioned private key, as the token reports them."""
    wanted = {
        "private": Attribute.PRIVATE,
        "sensitive": Attribute.SENSITIVE,
        "extractable": Attribute.EXTRACTABLE,
        "always_authenticate": Attribute.ALWAYS_AUTHENTICATE,
        "sign": Attribute.SIGN,
        "decrypt": Attribute.DECRYPT,
    }
    key_id = token.keys[key_name].key_id
    with _open_token(token).open(user_pin=token.user_pin) as session:
        key = next(
            iter(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: key_id}
                )
            )
        )
        values = key.get_attributes(list(wanted.values()))
    return {name: bool(values.get(attribute, False)) for name, attribute in wanted.items()}


def user_logged_in(token: ProvisionedToken) -> bool:
    """Whether this process is logged in to the token (PKCS#11 login state is per application).

    A fresh public session sees private objects only while the user is logged in.
    """
    with _open_token(token).open() as session:
        hidden = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.PRIVATE: True}
        return next(iter(session.get_objects(hidden)), None) is not None


def standard_certificates(
    keys: Iterable[KeySpec], *, subject: x509.Name | None = None
) -> list[CertSpec]:
    """One valid signing certificate per key (what ``certificates=None`` gives)."""
    return [CertSpec(k.name, k.name, subject=subject) for k in keys]


def expired_validity(days_ago: int = 30) -> tuple[datetime, datetime]:
    """A validity window that ended ``days_ago`` days ago."""
    now = datetime.now(UTC)
    return now - timedelta(days=days_ago + 365), now - timedelta(days=days_ago)
