"""The documents an officer signs, as canonical JSON (RFC 8785, JSON Canonicalization Scheme).

A verifier must be able to rebuild the exact signed bytes from the data, in any language, so
every document is the RFC 8785 serialisation of a JSON object: keys sorted, no whitespace,
strings escaped only where JSON requires it (``"``, ``\\`` and control characters), UTF-8.

``certificate_document`` is on the batch preparation's hot path (up to 3,000 per batch), so it
writes the fixed shape directly instead of walking a dict through ``rfc8785.dumps``; the tests
check the two are byte-identical on many generated records. ``certificate_fields`` gives the
same document as a plain object, for readers and for that comparison.

Certificate document (``"type": "kyso-vaccination-certificate"``, version 1)::

    {"batch": "KB…", "record": "dose-123-v2",
     "person": {"name", "birth_date", "gender", "identity_number"},
     "dose": {"id", "version", "number", "date", "disease", "vaccine", "product",
              "manufacturer", "lot", "facility": {"code", "name"}},
     "type": "kyso-vaccination-certificate", "version": 1}

``disease``, ``vaccine``, ``product`` and ``manufacturer`` are the EU DCC value sets ``tg``,
``vp``, ``mp`` and ``ma``; dates are ISO 8601 (``yyyy-mm-dd``); ``identity_number`` is ``null``
when the person has none.

Batch document (``"type": "kyso-batch"``, version 1)::

    {"batch": "KB…", "signer": {…}, "records": [{"id": "dose-123-v2", "sha256": HEX}, …],
     "type": "kyso-batch", "version": 1}

listing each record's id and the SHA-256 (lower-case hex) of its certificate document, in the
batch's order (the caller passes the digests it already has). One signature over it covers
every record in batch mode.
"""

from __future__ import annotations

import json.encoder
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import rfc8785

__all__ = [
    "BATCH_TYPE",
    "CERTIFICATE_TYPE",
    "DOCUMENT_VERSION",
    "GENDERS",
    "CertificateRecord",
    "batch_document",
    "batch_fields",
    "certificate_document",
    "certificate_fields",
    "record_id",
]

CERTIFICATE_TYPE: Final = "kyso-vaccination-certificate"
BATCH_TYPE: Final = "kyso-batch"
DOCUMENT_VERSION: Final = 1
GENDERS: Final = ("male", "female")
DIGEST_LENGTH: Final = 32

# JSON numbers are IEEE doubles: integers beyond 2**53 - 1 are not exact (RFC 8785 3.2.2.3).
_MAX_SAFE_INTEGER: Final = 2**53 - 1

# The C string escaper of the standard json module (ensure_ascii=False). It escapes exactly what
# RFC 8785 3.2.2.2 escapes, the same way: ``\"``, ``\\``, ``\b \f \n \r \t`` and ``\u00xx``
# (lower-case hex) for the other control characters; everything else is written as is.
_quote: Final[Callable[[str], str]] = json.encoder.encode_basestring


@dataclass(frozen=True)
class CertificateRecord:
    """One dose as it is certified: what the vaccination-certificate document says."""

    batch_id: str
    dose_id: int
    dose_version: int
    full_name: str
    birth_date: date
    gender: str  # "male" or "female"
    identity_number: str | None
    dose_number: int
    vaccinated_on: date
    disease: str  # DCC tg, e.g. "840539006" (COVID-19)
    vaccine: str  # DCC vp, e.g. "1119349007" (mRNA vaccine)
    product: str  # DCC mp, e.g. "EU/1/20/1528"
    manufacturer: str  # DCC ma, e.g. "ORG-100030215"
    lot: str
    facility_code: str
    facility_name: str


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 < value <= _MAX_SAFE_INTEGER:
        raise ValueError(f"{name} must be between 1 and 2**53 - 1, not {value}")
    return value


def _day(name: str, value: date) -> str:
    # datetime is a date too, but its isoformat() carries a time: not what the document says.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{name} must be a date, not {type(value).__name__}")
    return value.isoformat()


def record_id(dose_id: int, dose_version: int) -> str:
    """The record's id in documents and file names: ``dose-<id>-v<version>``."""
    return f"dose-{_positive('dose_id', dose_id)}-v{_positive('dose_version', dose_version)}"


def _checked(record: CertificateRecord) -> tuple[str, str, str]:
    if record.gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, not {record.gender!r}")
    _positive("dose_number", record.dose_number)
    return (
        record_id(record.dose_id, record.dose_version),
        _day("birth_date", record.birth_date),
        _day("vaccinated_on", record.vaccinated_on),
    )


def certificate_fields(record: CertificateRecord) -> dict[str, Any]:
    """The certificate document as a JSON object (``certificate_document`` serialises it)."""
    rid, birth, vaccinated = _checked(record)
    return {
        "type": CERTIFICATE_TYPE,
        "version": DOCUMENT_VERSION,
        "batch": record.batch_id,
        "record": rid,
        "person": {
            "name": record.full_name,
            "birth_date": birth,
            "gender": record.gender,
            "identity_number": record.identity_number,
        },
        "dose": {
            "id": record.dose_id,
            "version": record.dose_version,
            "number": record.dose_number,
            "date": vaccinated,
            "disease": record.disease,
            "vaccine": record.vaccine,
            "product": record.product,
            "manufacturer": record.manufacturer,
            "lot": record.lot,
            "facility": {"code": record.facility_code, "name": record.facility_name},
        },
    }


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: not text JSON can carry
        raise ValueError(f"the document contains text that is not valid Unicode: {exc}") from exc


def certificate_document(record: CertificateRecord) -> bytes:
    """The canonical JSON (RFC 8785) of ``certificate_fields(record)``, written directly.

    Keys appear in RFC 8785 order (all are ASCII, so UTF-16 order is plain sorting).
    """
    rid, birth, vaccinated = _checked(record)
    q = _quote
    identity = "null" if record.identity_number is None else q(record.identity_number)
    return _utf8(
        f'{{"batch":{q(record.batch_id)},'
        f'"dose":{{"date":"{vaccinated}","disease":{q(record.disease)},'
        f'"facility":{{"code":{q(record.facility_code)},"name":{q(record.facility_name)}}},'
        f'"id":{record.dose_id},"lot":{q(record.lot)},"manufacturer":{q(record.manufacturer)},'
        f'"number":{record.dose_number},"product":{q(record.product)},'
        f'"vaccine":{q(record.vaccine)},"version":{record.dose_version}}},'
        f'"person":{{"birth_date":"{birth}","gender":"{record.gender}",'
        f'"identity_number":{identity},"name":{q(record.full_name)}}},'
        f'"record":"{rid}","type":"{CERTIFICATE_TYPE}","version":{DOCUMENT_VERSION}}}'
    )


def _entries(entries: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
    listed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for rid, digest in entries:
        if rid in seen:
            raise ValueError(f"record {rid!r} is listed twice in the batch")
        if len(digest) != DIGEST_LENGTH:
            raise ValueError(
                f"record {rid!r}: give the SHA-256 digest of its document (32 bytes), "
                f"not {len(digest)} bytes"
            )
        seen.add(rid)
        listed.append((rid, digest.hex()))
    if not listed:
        raise ValueError("a batch document lists at least one record")
    return listed


def batch_fields(
    batch_id: str, signer: Mapping[str, str], entries: Sequence[tuple[str, bytes]]
) -> dict[str, Any]:
    """The batch document as a JSON object (``batch_document`` serialises it)."""
    return {
        "type": BATCH_TYPE,
        "version": DOCUMENT_VERSION,
        "batch": batch_id,
        "signer": dict(signer),
        "records": [{"id": rid, "sha256": digest} for rid, digest in _entries(entries)],
    }


def batch_document(
    batch_id: str, signer: Mapping[str, str], entries: Sequence[tuple[str, bytes]]
) -> bytes:
    """The canonical JSON of the batch document.

    ``signer`` says who signs (e.g. ``{"unit": "Trạm Y tế …", "certificate": FINGERPRINT}``);
    ``entries`` are ``(record id, SHA-256 digest of its certificate document)`` in the batch's
    order; the digests are written as lower-case hex. A record id listed twice, or a digest
    that is not 32 bytes (a document passed by mistake), is refused.
    """
    q = _quote
    records = ",".join(
        f'{{"id":{q(rid)},"sha256":"{digest}"}}' for rid, digest in _entries(entries)
    )
    head = _utf8(f'{{"batch":{q(batch_id)},"records":[{records}],"signer":')
    signer_json = rfc8785.dumps(dict(signer))
    return head + signer_json + f',"type":"{BATCH_TYPE}","version":{DOCUMENT_VERSION}}}'.encode()
