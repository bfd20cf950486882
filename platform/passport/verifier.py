"""Verifying an EU DCC (``HC1:`` text or a QR image), step by step, as any verifier app does.

The steps, each a ``Check`` with a stable name (the page and ``kyso-platform dcc verify`` show
each with its text from ``locales/passport.toml``):

=============  ===============================================================================
``qr``         (images only) the picture holds one QR code, read as text
``prefix``     the text starts with the context identifier ``HC1:``
``base45``     the rest is valid base45
``zlib``       which inflates (zlib) to
``cose``       a COSE_Sign1 (tag 18, optionally inside the CWT tag 61): protected header
               (``alg``, ``kid``), unprotected header, payload, signature
``cwt``        whose payload is a CWT with ``iss``, ``iat``, ``exp`` and the ``hcert`` claim
               (-260) holding a DCC at key 1
``signature``  signed by a certificate of the signer list: found by ``kid`` (the protected
               header's, the unprotected one's only when the protected header has none), with
               ES256 (raw r‖s) or PS256 over the Sig_structure
``schema``     the DCC validates against the combined schema of the release its ``ver`` names
               (1.0.0 … 1.3.3, shipped in ``data/schema-history``; see "Schema versions")
               and holds exactly one of ``v``, ``t``, ``r``
``valuesets``  the coded fields are codes of the EU value sets, as EU verifiers' business rules
               require: ``tg``, ``vp``, ``mp``, ``ma``, ``co`` of a vaccination; ``tg``,
               ``tt``, ``tr``, ``co`` of a test (not the rapid test's ``ma``: that value set
               is not shipped); ``tg``, ``co`` of a recovery
``expiry``     the time of the check lies between ``iat`` and ``exp``
``key_usage``  the signer certificate may sign this kind of certificate: when its extended key
               usage extension is present it must name this one (1.3.6.1.4.1.1847.2021.1.1
               test, .2 vaccination, .3 recovery; also read under the early arc
               1.3.6.1.4.1.0.1847…), as the conformance vectors require; a key usage
               extension must allow digitalSignature
``revocation`` (only with a revocation list) the certificate's ``SIGNATURE``, ``UCI`` and
               ``COUNTRYCODEUCI`` hashes are not on the list for its ``kid`` (``revocation``)
=============  ===============================================================================

ES256 means ECDSA on P-256 with SHA-256 (RFC 8152 and the DCC specification): a signer
certificate with a P-384 (or other) key is refused for ES256 with that reason, never tried.

A certificate is valid when every step passed. A step that cannot run because an earlier one
failed is left out (``Verification.checks`` holds the steps that ran, in order).

Schema versions: a certificate is checked against the schema of the release its ``ver``
names (shipped in ``data/schema-history``): a 1.0.0 certificate must give a full birth date, one
of 1.1.0 may give a partial one, one of 1.3.0 an empty one, and the 1.3 rules (anchored patterns)
are not applied to certificates issued before them. A ``ver`` that names no released version
(missing, not text, ``1.3.4``, ``2.0.0``) is checked against the latest schema, 1.3.3, rather
than refused, as EU verifiers do, and the step's detail then says so: a later release passes
when its data keeps 1.3.3's shape, and a missing ``ver`` fails (1.3.3 requires it). Whatever the
version, the DCC must hold exactly one of ``v``, ``t``, ``r`` (hcert specification; written into
the schema itself only from 1.3.0). Each schema is compiled once per process
(``schema_validator_for``).

Signer certificates come from a ``SignerList``: a PEM bundle, the EU gateway's JSON trust list
(``[{"kid": B64, "rawData": B64 DER, ...}]``), DER files, or the platform's own signers.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import base45  # type: ignore[import-untyped]
import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from kyso.platform.passport import pictures
from kyso.platform.passport.dcc import (
    CWT_EXP,
    CWT_HCERT,
    CWT_IAT,
    CWT_ISS,
    HEADER_ALG,
    HEADER_KID,
    PREFIX,
    key_id,
    parse_cose,
    sig_structure,
)
from kyso.platform.passport.hsm import verify_cose_signature
from kyso.platform.passport.revocation import Revocations, revocation_hashes
from kyso.platform.passport.valuesets import (
    historical_schema,
    schema,
    schema_versions,
    value_sets,
)

__all__ = [
    "CHECKS",
    "OPTIONAL_CHECKS",
    "TEST_RESULTS",
    "TEST_TYPES",
    "Check",
    "SignerList",
    "Verification",
    "decode_qr_image",
    "schema_validator",
    "schema_validator_for",
    "verify",
    "verify_image",
]

CHECKS: Final = (
    "qr",
    "prefix",
    "base45",
    "zlib",
    "cose",
    "cwt",
    "signature",
    "schema",
    "valuesets",
    "expiry",
    "key_usage",
)
# Steps that run only when their input is given (``verify(..., revocations=...)``).
OPTIONAL_CHECKS: Final = ("revocation",)
COSE_ALGORITHMS: Final[dict[int, str]] = {-7: "ES256", -37: "PS256"}
MAX_TEXT: Final = 8192  # far above the largest DCC a QR code can hold
MAX_COSE_BYTES: Final = 64 * 1024  # what the HC1 text may inflate to; a DCC is a few KB
# The EU gateway's whole trust list is a few MB.
MAX_SIGNER_LIST_BYTES: Final = 32 * 1024 * 1024

# The DCC types' extended key usages; the early specification (and many issuers' test
# certificates) wrote them under 1.3.6.1.4.1.0.1847.2021.1: both arcs are read.
EKU_BY_TYPE: Final[dict[str, tuple[str, str]]] = {
    "t": ("1.3.6.1.4.1.1847.2021.1.1", "1.3.6.1.4.1.0.1847.2021.1.1"),
    "v": ("1.3.6.1.4.1.1847.2021.1.2", "1.3.6.1.4.1.0.1847.2021.1.2"),
    "r": ("1.3.6.1.4.1.1847.2021.1.3", "1.3.6.1.4.1.0.1847.2021.1.3"),
}


@dataclass(frozen=True)
class Check:
    name: str  # one of CHECKS
    ok: bool
    detail: str = ""  # English, technical (the page shows the catalogue text)
    # For a picture that cannot be read: the catalogue text saying why and what to do.
    problem: str = field(default="", compare=False)
    values: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    text: str | None = None  # the HC1 text (read from the image, or given)
    dcc: dict[str, Any] | None = None
    issuer_country: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    kid: bytes | None = None
    algorithm: str | None = None
    signer: x509.Certificate | None = None
    schema_version: str | None = None  # the release whose schema the DCC was checked against
    revoked_by: str | None = None  # the hash type under which a revocation list names it

    @property
    def valid(self) -> bool:
        names = {c.name for c in self.checks}
        required = set(CHECKS) - {"qr"}  # revocation: when a list was given, it must pass
        return required <= names and all(c.ok for c in self.checks)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def passed(self, name: str) -> bool:
        found = self.check(name)
        return found is not None and found.ok

    @property
    def revoked(self) -> bool:
        return self.revoked_by is not None

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def _add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


class SignerList:
    """Document Signer Certificates by ``kid`` (first 8 bytes of SHA-256 of the DER)."""

    def __init__(self, certificates: Iterable[x509.Certificate] = ()) -> None:
        self._by_kid: dict[bytes, list[x509.Certificate]] = {}
        for certificate in certificates:
            self.add(certificate)

    def add(self, certificate: x509.Certificate) -> None:
        kid = key_id(certificate.public_bytes(serialization.Encoding.DER))
        found = self._by_kid.setdefault(kid, [])
        if certificate not in found:
            found.append(certificate)

    def find(self, kid: bytes) -> list[x509.Certificate]:
        return list(self._by_kid.get(kid, ()))

    def certificates(self) -> list[x509.Certificate]:
        return [c for found in self._by_kid.values() for c in found]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_kid.values())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignerList:
        """A PEM bundle, a DER certificate, or a JSON trust list of ``rawData`` entries.

        ValueError, saying what was expected, for anything else (or more than
        ``MAX_SIGNER_LIST_BYTES``)."""
        if len(data) > MAX_SIGNER_LIST_BYTES:
            raise ValueError(f"a signer list has at most {MAX_SIGNER_LIST_BYTES} bytes")
        try:
            return cls._parse(data)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ValueError(
                "not a signer list (a PEM bundle, a DER certificate, or a JSON trust list of "
                f'{{"kid", "rawData"}} entries): {type(exc).__name__}: {exc}'
            ) from exc

    @classmethod
    def _parse(cls, data: bytes) -> SignerList:
        stripped = data.lstrip()
        if stripped.startswith(b"-----BEGIN"):
            return cls(x509.load_pem_x509_certificates(data))
        if stripped.startswith((b"[", b"{")):
            listed = json.loads(data)
            entries = listed.get("certificates", []) if isinstance(listed, dict) else listed
            return cls(
                x509.load_der_x509_certificate(base64.b64decode(entry["rawData"]))
                for entry in entries
            )
        return cls([x509.load_der_x509_certificate(data)])


@functools.cache
def schema_validator() -> Draft202012Validator:
    """The schema the platform issues against (DCC.combined-schema.json, 1.3.3)."""
    return Draft202012Validator(schema())


@functools.cache
def schema_validator_for(version: str) -> Draft202012Validator:
    """The compiled schema of release ``version`` (one of ``valuesets.schema_versions()``)."""
    return Draft202012Validator(historical_schema(version))


def schema_version_for(dcc: Mapping[str, Any]) -> tuple[str, str]:
    """(release to check ``dcc`` against, a note when ``ver`` names no released version)."""
    version = dcc.get("ver")
    latest = schema_versions()[-1]
    if isinstance(version, str) and version in schema_versions():
        return version, ""
    return latest, f"ver {version!r} is not a released schema version; checked against {latest}"


CERTIFICATE_TYPES: Final = ("v", "t", "r")


def _schema_problems(dcc: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(the release used, the problems found: empty when the DCC follows the schema)."""
    version, note = schema_version_for(dcc)
    errors = sorted(schema_validator_for(version).iter_errors(dcc), key=lambda e: list(e.path))
    problems = [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors]
    kinds = [kind for kind in CERTIFICATE_TYPES if kind in dcc]
    if len(kinds) != 1:
        problems.append(
            f"(root): holds {len(kinds)} certificate types ({', '.join(kinds) or 'none'}); "
            "a DCC holds exactly one of v, t, r"
        )
    if problems and note:
        problems.insert(0, note)
    return version, problems


# The test fields' value sets (eu-dcc-valuesets covid-19-lab-test-type, covid-19-lab-result):
# two codes each, kept here rather than vendored. The rapid tests' makers (``ma`` of a test) are
# not checked: that value set changes monthly and is not shipped.
TEST_TYPES: Final = {"LP6464-4": "NAAT (PCR)", "LP217198-3": "rapid antigen test"}
TEST_RESULTS: Final = {"260415000": "not detected", "260373001": "detected"}

# field -> the value set it must be a code of (``ValueSets`` attribute), per certificate type.
_VALUE_SET_FIELDS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "v": (
        ("tg", "diseases"),
        ("vp", "prophylaxis"),
        ("mp", "products"),
        ("ma", "manufacturers"),
        ("co", "countries"),
    ),
    "t": (("tg", "diseases"), ("tt", "test_types"), ("tr", "test_results"), ("co", "countries")),
    "r": (("tg", "diseases"), ("co", "countries")),
}


def value_set_problems(dcc: Mapping[str, Any]) -> list[str]:
    """The coded fields that are not codes of their EU value set, as EU verifiers refuse them
    (the business rules' "value in valueSets" checks): empty when every code is known."""
    sets = value_sets()
    tables: dict[str, Mapping[str, Any]] = {
        "diseases": sets.diseases,
        "prophylaxis": sets.prophylaxis,
        "products": sets.products,
        "manufacturers": sets.manufacturers,
        "countries": sets.countries,
        "test_types": TEST_TYPES,
        "test_results": TEST_RESULTS,
    }
    problems: list[str] = []
    for kind, fields in _VALUE_SET_FIELDS.items():
        entries = dcc.get(kind)
        if not isinstance(entries, list):
            continue
        for number, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            for name, table in fields:
                value = entry.get(name)
                if value is None:
                    continue  # a required field missing is the schema's finding
                if not isinstance(value, str) or value not in tables[table]:
                    problems.append(f"{kind}/{number}/{name}: {value!r} is not in the value set")
    return problems


def decode_qr_image(data: bytes) -> str:
    """The text of the one QR code in a PNG/JPEG picture; ``pictures.PictureRefused`` (a
    ValueError) when there is none, decoded in a bounded child process (see ``pictures``)."""
    return pictures.read_qr(data)


def verify_image(
    data: bytes,
    signers: SignerList,
    at: datetime | None = None,
    *,
    revocations: Revocations | None = None,
) -> Verification:
    result = Verification()
    try:
        text = decode_qr_image(data)
    except pictures.PictureRefused as refused:
        result.checks.append(Check("qr", False, refused.detail, refused.key, refused.values))
        return result
    result._add("qr", True)
    return verify(text, signers, at, result=result, revocations=revocations)


def _jsonable(value: Any) -> Any:
    """The DCC as JSON data: CBOR date/time tags (some issuers tag ``sc``) become ISO text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        if value.utcoffset() is not None and not value.utcoffset():
            return value.strftime("%Y-%m-%dT%H:%M:%SZ")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, UTC)


def _usages(certificate: x509.Certificate) -> tuple[set[str] | None, set[str] | None]:
    """(key usage names, extended key usage OIDs); None where the extension is absent.

    Read with asn1crypto, which also reads the non-DER certificates some issuers made (a
    BOOLEAN DEFAULT written out), where ``cryptography`` refuses the extensions."""
    from asn1crypto import x509 as asn1_x509

    parsed = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    key_usage = parsed.key_usage_value
    extended = parsed.extended_key_usage_value
    return (
        set(key_usage.native) if key_usage is not None else None,
        {oid.dotted for oid in extended} if extended is not None else None,
    )


def _key_usage_problem(certificate: x509.Certificate, dcc: Mapping[str, Any]) -> str | None:
    try:
        key_usage, extended = _usages(certificate)
    except (ValueError, TypeError) as exc:
        return f"the signer certificate's extensions cannot be read: {exc}"
    if key_usage is not None and "digital_signature" not in key_usage:
        return "the signer certificate's key usage does not allow digitalSignature"
    if not extended:
        return None  # no extended key usage (or an empty one): valid for every type
    for kind in (k for k in ("v", "t", "r") if k in dcc):
        if not extended & set(EKU_BY_TYPE[kind]):
            return f"the signer certificate may not sign {kind!r} certificates (extended key usage)"
    return None


def verify(
    text: str,
    signers: SignerList,
    at: datetime | None = None,
    *,
    result: Verification | None = None,
    revocations: Revocations | None = None,
) -> Verification:
    """Runs every step on an ``HC1:`` text; see the module's table. With ``revocations``, also
    the ``revocation`` step (the certificate is not on the revocation list)."""
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # a clock without a zone is UTC, as CWT times are
    result = result or Verification()
    text = text.strip()
    result.text = text
    if len(text) > MAX_TEXT:
        result._add("prefix", False, f"longer than {MAX_TEXT} characters: not a DCC")
        return result
    if not text.startswith(PREFIX):
        result._add("prefix", False, "the text does not start with HC1:")
        return result
    result._add("prefix", True)
    try:
        compressed = base45.b45decode(text[len(PREFIX) :])
    except (ValueError, KeyError, IndexError) as exc:
        result._add("base45", False, f"not base45: {exc}")
        return result
    result._add("base45", True)
    try:
        inflater = zlib.decompressobj()
        cose = inflater.decompress(compressed, MAX_COSE_BYTES + 1)
    except zlib.error as exc:
        result._add("zlib", False, f"not zlib data: {exc}")
        return result
    if len(cose) > MAX_COSE_BYTES:
        # 8 KB of text can inflate to megabytes for cbor2 to parse: a DCC is a few KB.
        result._add("zlib", False, f"inflates to more than {MAX_COSE_BYTES} bytes: not a DCC")
        return result
    if not inflater.eof:
        result._add("zlib", False, "not zlib data: the compressed data is incomplete")
        return result
    result._add("zlib", True)
    try:
        protected, protected_map, unprotected, payload, signature = parse_cose(cose)
    except ValueError as exc:
        result._add("cose", False, str(exc))
        return result
    result._add("cose", True)
    # alg belongs in the protected header; some issuers put it in the unprotected one.
    algorithm_id = protected_map.get(HEADER_ALG, unprotected.get(HEADER_ALG))
    result.algorithm = COSE_ALGORITHMS.get(algorithm_id) if isinstance(algorithm_id, int) else None
    kid = protected_map.get(HEADER_KID, unprotected.get(HEADER_KID))
    result.kid = kid if isinstance(kid, bytes) else None

    try:
        claims = cbor2.loads(payload)
        hcert = claims[CWT_HCERT][1]
        if not isinstance(hcert, dict):
            raise TypeError("the hcert claim does not hold a DCC map")
    except Exception as exc:
        result._add("cwt", False, f"the payload is not a CWT with a DCC: {exc!r}")
        return result
    result.dcc = _jsonable(hcert)
    result.issuer_country = claims.get(CWT_ISS) if isinstance(claims.get(CWT_ISS), str) else None
    result.issued_at = _time(claims.get(CWT_IAT))
    result.expires_at = _time(claims.get(CWT_EXP))
    result._add("cwt", True)

    _check_signature(result, protected, payload, signature, signers)

    try:
        json_dcc = json.loads(json.dumps(result.dcc))
    except (TypeError, ValueError) as exc:
        result._add("schema", False, f"the DCC is not JSON data: {exc}")
    else:
        result.schema_version, problems = _schema_problems(json_dcc)
        result._add("schema", not problems, "; ".join(problems[:3]))
        unknown = value_set_problems(json_dcc)
        result._add("valuesets", not unknown, "; ".join(unknown[:3]))

    if result.issued_at is None or result.expires_at is None:
        result._add("expiry", False, "the CWT has no iat or exp")
    elif at < result.issued_at:
        result._add("expiry", False, f"issued at {result.issued_at:%Y-%m-%d %H:%M}Z, in the future")
    elif at > result.expires_at:
        result._add("expiry", False, f"expired at {result.expires_at:%Y-%m-%d %H:%M}Z")
    else:
        result._add("expiry", True)

    if result.signer is not None:
        problem = _key_usage_problem(result.signer, hcert)
        result._add("key_usage", problem is None, problem or "")

    if revocations is not None:
        _check_revocation(result, revocations, hcert, signature)
    return result


def _uci(dcc: Mapping[Any, Any]) -> str | None:
    for kind in CERTIFICATE_TYPES:
        entries = dcc.get(kind)
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            uci = entries[0].get("ci")
            return uci if isinstance(uci, str) else None
    return None


def _check_revocation(
    result: Verification, revocations: Revocations, dcc: Mapping[Any, Any], signature: bytes
) -> None:
    uci = _uci(dcc)
    hashes = revocation_hashes(
        signature=signature, algorithm=result.algorithm, uci=uci, country=result.issuer_country
    )
    result.revoked_by = revocations.find(result.kid, hashes, uci)
    if result.revoked_by is None:
        result._add("revocation", True)
        return
    updated = f" (list of {revocations.updated:%Y-%m-%d %H:%M}Z)" if revocations.updated else ""
    result._add(
        "revocation",
        False,
        f"revoked: the revocation list names its {result.revoked_by} hash{updated}",
    )


def _check_signature(
    result: Verification,
    protected: bytes,
    payload: bytes,
    signature: bytes,
    signers: SignerList,
) -> None:
    if result.algorithm is None:
        result._add("signature", False, "the protected header's alg is neither ES256 nor PS256")
        return
    if result.kid is None:
        result._add("signature", False, "no kid in the headers: the signer cannot be found")
        return
    candidates = signers.find(result.kid)
    if not candidates:
        kid = base64.b64encode(result.kid).decode("ascii")
        result._add("signature", False, f"no certificate with kid {kid} in the signer list")
        return
    if result.algorithm == "ES256":
        keys = [c.public_key() for c in candidates]
        curves = {k.curve.name for k in keys if isinstance(k, ec.EllipticCurvePublicKey)}
        if curves and "secp256r1" not in curves:
            # ES256 is ECDSA on P-256 with SHA-256 (RFC 8152, DCC specification): a P-384 key
            # signs ES384, which no DCC verifier accepts. Refused, with the reason.
            result._add(
                "signature",
                False,
                f"ES256 needs a P-256 key; the signer certificate has a {', '.join(sorted(curves))}"
                " key (the DCC specification allows no other curve for ES256)",
            )
            return
    data = sig_structure(protected, payload)
    for certificate in candidates:
        try:
            verify_cose_signature(certificate.public_key(), result.algorithm, data, signature)
        except (InvalidSignature, UnsupportedAlgorithm, ValueError, binascii.Error):
            continue
        result.signer = certificate
        result._add("signature", True)
        return
    result._add("signature", False, "the signature does not verify with the signer certificate")
