"""A certificate as the officer compares it (issue 17): organisation, tax code, key type,
validity and serial, written as the platform's pages and its token picker write them (the
platform's formatting.certificate_facts; the two programs share no code, and
tests/platform/test_certificate_facts.py compares them). Two certificates with one subject,
say RSA and P-256 on one token, read differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from cryptography import x509
from cryptography.x509.oid import NameOID

from kyso.agent.i18n import day
from kyso.agent.token.model import CertificateInfo

__all__ = ["CertificateFacts", "certificate_facts"]

_VIETNAM = timezone(timedelta(hours=7), "ICT")  # the days people read are Vietnam's
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


@dataclass(frozen=True)
class CertificateFacts:
    organisation: str
    tax_code: str
    key_type: str
    valid: str
    serial: str


def _vietnam_day(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return day(moment.astimezone(_VIETNAM).date())


def _spaced(serial_hex: str) -> str:
    digits = serial_hex.upper().lstrip("0") or "0"
    padded = digits if len(digits) % 2 == 0 else "0" + digits
    return " ".join(padded[i : i + 2] for i in range(0, len(padded), 2))


def certificate_facts(cert: CertificateInfo) -> CertificateFacts:
    subject = x509.load_der_x509_certificate(cert.der).subject

    def values(oid: x509.ObjectIdentifier) -> list[str]:
        return [str(a.value) for a in subject.get_attributes_for_oid(oid)]

    tax_code = "—"
    for value in values(NameOID.USER_ID):
        head, sep, code = value.partition(":")
        if sep and head.strip().upper() == "MST" and code.strip():
            tax_code = code.strip()
            break
    if cert.key_type == "RSA":
        key_type = f"RSA-{cert.key_size}"
    elif cert.key_type == "EC":
        key_type = f"ECDSA {_CURVES.get(cert.curve or '', cert.curve or cert.key_size)}"
    else:
        key_type = cert.key_type
    names = values(NameOID.ORGANIZATION_NAME) or values(NameOID.COMMON_NAME) or [cert.subject]
    return CertificateFacts(
        organisation=names[0],
        tax_code=tax_code,
        key_type=key_type,
        valid=f"{_vietnam_day(cert.not_before)}–{_vietnam_day(cert.not_after)}",
        serial=_spaced(cert.serial_hex),
    )
