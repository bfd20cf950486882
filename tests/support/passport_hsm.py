"""The central passport signing keys on SoftHSM2, for the passport tests and the bench.

A token "Kyso Passport" in the session's SoftHSM2 directory holds two keys generated on it:
``dsc-es256`` (EC P-256) and ``dsc-ps256`` (RSA-2048). A test Country Signing CA ("CSCA")
certifies each as a Document Signer Certificate with the DCC vaccination extended key usage,
stored on the token under the key's CKA_ID, as an HSM holds a DSC next to its key.

The PDF passport has a key of its own on the same token, ``pdf-es256`` (EC P-256), certified
by a test document-signing root ("Kyso Test Root (documents)") with the extended key usages
PDF readers accept (emailProtection, documentSigning), a CRL distribution point and a CRL
(``PassportKeys.document_crl``) for the validation data of PAdES B-LT.

    keys = provision_passport_token(directory, csca)
    signer = HsmSigner(keys.config("ES256"))
    pdf_signer = HsmSigner(keys.document_config())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.agent import devpki
from kyso.agent.token import softhsm as softhsm2
from kyso.agent.token.softhsm import KeySpec, ProvisionedToken
from kyso.platform.passport.hsm import HsmConfig
from kyso.platform.passport.testcerts import (
    create_csca,
    create_document_ca,
    issue_crl,
    issue_document_certificate,
    issue_dsc,
)

TOKEN_LABEL = "Kyso Passport"
PIN = "246810"
SO_PIN = "13579111"
KEY_LABELS = {"ES256": "dsc-es256", "PS256": "dsc-ps256"}
DOCUMENT_KEY_LABEL = "pdf-es256"


@dataclass(frozen=True)
class PassportKeys:
    token: ProvisionedToken
    csca: devpki.DevCA
    certificates: dict[str, x509.Certificate]  # by algorithm
    document_ca: devpki.DevCA
    document_certificate: x509.Certificate
    document_crl: x509.CertificateRevocationList

    def document_config(self, **overrides: Any) -> HsmConfig:
        values: dict[str, Any] = {
            "module": self.token.module_path,
            "token_label": TOKEN_LABEL,
            "key_label": DOCUMENT_KEY_LABEL,
            "pin": PIN,
            "algorithm": "ES256",
            "purpose": "document",
        }
        values.update(overrides)
        return HsmConfig(**values)

    def write_document_files(self, directory: Path) -> dict[str, str]:
        """The document root (PEM) and CRL (DER) as files; their ``PASSPORT_PDF_*`` settings."""
        directory.mkdir(parents=True, exist_ok=True)
        chain = devpki.write_pem(directory / "pdf-chain.pem", self.document_ca.certificate)
        crl = directory / "pdf-root.crl"
        crl.write_bytes(self.document_crl.public_bytes(serialization.Encoding.DER))
        return {"PASSPORT_PDF_CHAIN": str(chain), "PASSPORT_PDF_CRLS": str(crl)}

    def config(self, algorithm: str = "ES256", **overrides: Any) -> HsmConfig:
        values: dict[str, Any] = {
            "module": self.token.module_path,
            "token_label": TOKEN_LABEL,
            "key_label": KEY_LABELS[algorithm],
            "pin": PIN,
            "algorithm": algorithm,
        }
        values.update(overrides)
        return HsmConfig(**values)

    def environment(self, algorithm: str = "ES256") -> dict[str, str]:
        """The variables a ``kyso-platform issue-passports`` process needs."""
        return {
            "SOFTHSM2_CONF": str(self.token.conf_path),
            "KYSO_PASSPORT_PKCS11_MODULE": self.token.module_path,
            "KYSO_PASSPORT_TOKEN_LABEL": TOKEN_LABEL,
            "KYSO_PASSPORT_KEY_LABEL": KEY_LABELS[algorithm],
            "KYSO_PASSPORT_ALGORITHM": algorithm,
            "KYSO_PASSPORT_PIN": PIN,
            "KYSO_PASSPORT_PDF_KEY_LABEL": DOCUMENT_KEY_LABEL,
        }

    def dsc_pem(self) -> bytes:
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in self.certificates.values()
        )


def provision_passport_token(directory: Path, csca: devpki.DevCA | None = None) -> PassportKeys:
    csca = csca or create_csca()
    token = softhsm2.provision(
        directory,
        label=TOKEN_LABEL,
        user_pin=PIN,
        so_pin=SO_PIN,
        keys=(
            KeySpec(KEY_LABELS["ES256"], "EC", 256),
            KeySpec(KEY_LABELS["PS256"], "RSA", 2048),
            KeySpec(DOCUMENT_KEY_LABEL, "EC", 256),
        ),
        certificates=(),
        ca=csca,
    )
    certificates: dict[str, x509.Certificate] = {}
    for algorithm, label in KEY_LABELS.items():
        key = token.keys[label]
        certificate = issue_dsc(csca, key.public_key, name=f"Kyso Test DSC {algorithm}")
        softhsm2.store_certificate(token, certificate, key.key_id, label)
        certificates[algorithm] = certificate
    document_ca = create_document_ca()
    document_key = token.keys[DOCUMENT_KEY_LABEL]
    document_certificate = issue_document_certificate(document_ca, document_key.public_key)
    softhsm2.store_certificate(token, document_certificate, document_key.key_id, DOCUMENT_KEY_LABEL)
    return PassportKeys(
        token,
        csca,
        certificates,
        document_ca,
        document_certificate,
        issue_crl(document_ca),
    )


def software_dsc(
    csca: devpki.DevCA, **kw: Any
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A software P-256 DSC (verifier tests of certificates the HSM would never hold)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, issue_dsc(csca, key.public_key(), **kw)


_PROVISIONED: dict[Path, PassportKeys] = {}


def passport_keys_in(directory: Path) -> PassportKeys:
    """The passport token of this SoftHSM2 directory, provisioned once per process (several
    test modules share the session's directory, and a token label must stay unique)."""
    if directory not in _PROVISIONED:
        _PROVISIONED[directory] = provision_passport_token(directory)
    return _PROVISIONED[directory]
