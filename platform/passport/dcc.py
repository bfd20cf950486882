"""EU Digital COVID Certificate v1.3: the DCC JSON of a dose, and its ``HC1:`` encoding.

hcert_spec 1.0.8, as Vietnam issued it (``README.md`` of this folder):

- the DCC JSON (schema 1.3.0): ``ver``, ``nam`` (``fn``/``gn`` as recorded, ``fnt``/``gnt`` in
  ICAO 9303, see ``names``), ``dob``, and one ``v`` entry for the person's latest dose:
  ``tg``/``vp``/``mp``/``ma`` from the value sets, ``dn``/``sd``, ``dt``, ``co`` "VN", ``is``,
  ``ci`` (UVCI ``URN:UVCI:01:VN:`` + 32 upper-case hex);
- the CWT claims: ``iss`` (1) "VN", ``iat`` (6), ``exp`` (4) 12 months later (Decision
  5772/QĐ-BYT), ``hcert`` (-260) = {1: DCC};
- COSE_Sign1 (tag 18) with ``alg`` (ES256 = -7 or PS256 = -37) and ``kid`` (the first 8 bytes
  of SHA-256 of the signer certificate's DER) in the protected header; the signature over the
  ``Sig_structure`` ["Signature1", protected, h'', payload]: raw r‖s (64 bytes) for ES256,
  RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) for PS256;
- zlib (deflate, level 9), base45, prefix ``HC1:``.

Nothing here holds a key: ``Encoder`` takes a ``sign(data) -> signature`` callable, which the
central signer (``hsm.HsmSigner``) provides, so encoding and signing are measured apart.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

import cbor2

from kyso.platform.passport.names import icao, split_name
from kyso.platform.passport.valuesets import SINGLE_DOSE_PRODUCTS, VaccineCodes

__all__ = [
    "ALGORITHMS",
    "COUNTRY",
    "DCC_VERSION",
    "PREFIX",
    "Encoded",
    "Encoder",
    "Vaccination",
    "certificate",
    "expiry",
    "hc1",
    "key_id",
    "new_uvci",
    "series_doses",
    "sig_structure",
]

DCC_VERSION: Final = "1.3.0"
COUNTRY: Final = "VN"
PREFIX: Final = "HC1:"
UVCI_PREFIX: Final = "URN:UVCI:01:VN:"
VALIDITY_MONTHS: Final = 12  # Decision 5772/QĐ-BYT

# COSE algorithm identifiers (RFC 8152 / RFC 8230).
ALGORITHMS: Final[dict[str, int]] = {"ES256": -7, "PS256": -37}

# CWT claim keys and COSE header labels.
CWT_ISS, CWT_IAT, CWT_EXP, CWT_HCERT = 1, 6, 4, -260
HEADER_ALG, HEADER_KID = 1, 4
COSE_SIGN1_TAG: Final = 18
CWT_TAG: Final = 61


@dataclass(frozen=True)
class Vaccination:
    """One dose as the facility signed it (the fields of its certificate document)."""

    full_name: str
    birth_date: date
    dose_number: int
    vaccinated_on: date
    codes: VaccineCodes


def new_uvci() -> str:
    """``URN:UVCI:01:VN:`` + 32 upper-case hex digits (128 random bits), as Vietnam issued."""
    return UVCI_PREFIX + secrets.token_hex(16).upper()


def series_doses(product: str, dose_number: int) -> int:
    """``sd``: the primary series (1 or 2 doses), or the dose number for a booster (3/3)."""
    primary = 1 if product in SINGLE_DOSE_PRODUCTS else 2
    return max(primary, dose_number)


def certificate(vaccination: Vaccination, *, uvci: str, issuer: str) -> dict[str, Any]:
    """The DCC JSON of a vaccination (one ``v`` entry)."""
    surname, given = split_name(vaccination.full_name)
    name: dict[str, str] = {"fn": surname, "fnt": icao(surname)}
    if given:
        name["gn"] = given
        name["gnt"] = icao(given)
    codes = vaccination.codes
    return {
        "ver": DCC_VERSION,
        "nam": name,
        "dob": vaccination.birth_date.isoformat(),
        "v": [
            {
                "tg": codes.tg,
                "vp": codes.vp,
                "mp": codes.mp,
                "ma": codes.ma,
                "dn": vaccination.dose_number,
                "sd": series_doses(codes.mp, vaccination.dose_number),
                "dt": vaccination.vaccinated_on.isoformat(),
                "co": COUNTRY,
                "is": issuer,
                "ci": uvci,
            }
        ],
    }


def expiry(issued_at: datetime) -> datetime:
    """12 calendar months after ``issued_at`` (29 February becomes 28 February)."""
    year, month = (
        issued_at.year + (issued_at.month - 1 + VALIDITY_MONTHS) // 12,
        (issued_at.month - 1 + VALIDITY_MONTHS) % 12 + 1,
    )
    day = min(issued_at.day, calendar.monthrange(year, month)[1])
    return issued_at.replace(year=year, month=month, day=day)


def key_id(certificate_der: bytes) -> bytes:
    """The COSE ``kid``: the first 8 bytes of SHA-256 of the signer certificate's DER."""
    return hashlib.sha256(certificate_der).digest()[:8]


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """What a COSE_Sign1 signature is over (RFC 8152 4.4), with no external data."""
    return bytes(cbor2.dumps(["Signature1", protected, b"", payload]))


BASE45_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@functools.cache
def _base45_pairs() -> tuple[str, ...]:
    """The base45 text of every 2-byte value (RFC 9285: c + 45·d + 45²·e, written c d e)."""
    alphabet = BASE45_ALPHABET
    return tuple(
        alphabet[n % 45] + alphabet[n // 45 % 45] + alphabet[n // 2025] for n in range(65536)
    )


def base45_encode(data: bytes) -> str:
    """RFC 9285 base45, two bytes at a time from a table (tested equal to ``base45``)."""
    pairs = _base45_pairs()
    even = len(data) - len(data) % 2
    text = "".join([pairs[data[i] << 8 | data[i + 1]] for i in range(0, even, 2)])
    if even != len(data):
        last = data[-1]
        text += BASE45_ALPHABET[last % 45] + BASE45_ALPHABET[last // 45]
    return text


def hc1(cose: bytes) -> str:
    """``HC1:`` + base45(zlib(COSE_Sign1)): the text the QR code holds."""
    return PREFIX + base45_encode(zlib.compress(cose, 9))


@dataclass(frozen=True)
class Encoded:
    payload: str  # "HC1:…"
    cose: bytes
    issued_at: datetime
    expires_at: datetime


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("issuance times must be timezone-aware")
    return int(moment.astimezone(UTC).timestamp())


class Encoder:
    """Encodes and signs DCCs with one signer: the protected header is computed once.

    ``sign`` gets the Sig_structure bytes and returns the COSE signature (raw r‖s for ES256).
    """

    def __init__(
        self,
        sign: Callable[[bytes], bytes],
        algorithm: str,
        certificate_der: bytes,
        *,
        issuer_country: str = COUNTRY,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, not {algorithm!r}")
        self.algorithm = algorithm
        self.kid = key_id(certificate_der)
        self.protected = bytes(
            cbor2.dumps({HEADER_ALG: ALGORITHMS[algorithm], HEADER_KID: self.kid})
        )
        self.issuer_country = issuer_country
        self._sign = sign

    def claims(self, dcc: dict[str, Any], issued_at: datetime, expires_at: datetime) -> bytes:
        return bytes(
            cbor2.dumps(
                {
                    CWT_ISS: self.issuer_country,
                    CWT_IAT: _seconds(issued_at),
                    CWT_EXP: _seconds(expires_at),
                    CWT_HCERT: {1: dcc},
                }
            )
        )

    def encode(self, dcc: dict[str, Any], issued_at: datetime) -> Encoded:
        """Signs ``dcc`` as issued at ``issued_at`` (whole seconds), valid 12 months."""
        issued_at = issued_at.replace(microsecond=0)
        expires_at = expiry(issued_at)
        payload = self.claims(dcc, issued_at, expires_at)
        signature = self._sign(sig_structure(self.protected, payload))
        cose = bytes(
            cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [self.protected, {}, payload, signature]))
        )
        return Encoded(hc1(cose), cose, issued_at, expires_at)


def parse_cose(data: bytes) -> tuple[bytes, dict[Any, Any], dict[Any, Any], bytes, bytes]:
    """(protected bytes, protected map, unprotected map, payload, signature) or ValueError."""
    try:
        item = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several kinds for malformed input
        raise ValueError(f"not CBOR: {exc}") from exc
    if isinstance(item, cbor2.CBORTag) and item.tag == CWT_TAG:
        item = item.value
    if isinstance(item, cbor2.CBORTag):
        if item.tag != COSE_SIGN1_TAG:
            raise ValueError(f"CBOR tag {item.tag} is not COSE_Sign1 (18)")
        item = item.value
    if not isinstance(item, list) or len(item) != 4:
        raise ValueError("a COSE_Sign1 is an array of 4 items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict):
        raise ValueError("the COSE headers are malformed")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise ValueError("the COSE payload and signature must be byte strings")
    try:
        protected_map = cbor2.loads(protected) if protected else {}
    except Exception as exc:
        raise ValueError(f"the protected header is not CBOR: {exc}") from exc
    if not isinstance(protected_map, dict):
        raise ValueError("the protected header is not a map")
    return protected, protected_map, unprotected, payload, signature
