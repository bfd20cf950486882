"""Signed lists for verifiers (the revocation list, the signer trust list): compact JWS.

A list is a JSON document signed as a JWS (RFC 7515, compact serialisation) with ``ES256`` or
``PS256``: the header carries ``alg``, ``kid`` (the COSE kid of the signing certificate) and
``x5c`` (the signing certificate, base64 DER). The platform signs with the central passport key
on its HSM (``hsm.HsmSigner.sign`` returns exactly the JWS signature: raw r‖s over SHA-256 for
ES256, RSASSA-PSS with a 32-byte salt for PS256), so no other key has to be kept. A verifier
accepts a list when the ``x5c`` certificate is one of its configured anchors or is issued
directly by one (the CSCA), is valid at the time of the check, and the JWS verifies with it
(PyJWT checks the signature).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kyso.platform.passport.dcc import key_id

__all__ = ["ALGORITHMS", "ListError", "load_anchors", "sign_list", "verify_list"]

ALGORITHMS: Final = ("ES256", "PS256")
MEDIA_TYPE: Final = "application/jose"


class ListError(ValueError):
    """A signed list cannot be trusted or read (the text says why, in English)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def sign_list(
    document: dict[str, Any],
    sign: Callable[[bytes], bytes],
    algorithm: str,
    certificate_der: bytes,
) -> str:
    """``document`` as a compact JWS signed by ``sign`` (the HSM's COSE/JWS signature)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"a list is signed with ES256 or PS256, not {algorithm}")
    header = {
        "alg": algorithm,
        "kid": base64.b64encode(key_id(certificate_der)).decode("ascii"),
        "x5c": [base64.b64encode(certificate_der).decode("ascii")],
    }
    signing_input = f"{_b64url(_json(header))}.{_b64url(_json(document))}"
    return f"{signing_input}.{_b64url(sign(signing_input.encode('ascii')))}"


def load_anchors(data: bytes) -> list[x509.Certificate]:
    """The list signers' anchors: a PEM bundle (the CSCA, or the list signer itself)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ListError(f"the list anchors are not certificates: {exc}") from exc


def _trusted(certificate: x509.Certificate, anchors: Iterable[x509.Certificate]) -> bool:
    for anchor in anchors:
        if certificate == anchor:
            return True
        if certificate.issuer != anchor.subject:
            continue
        try:
            certificate.verify_directly_issued_by(anchor)
        except (InvalidSignature, ValueError, TypeError):  # not this anchor's signature
            continue
        return True
    return False


def verify_list(
    token: str | bytes,
    anchors: Sequence[x509.Certificate],
    at: datetime | None = None,
) -> dict[str, Any]:
    """The document of a signed list; ``ListError`` when it is not signed under ``anchors``."""
    if not anchors:
        raise ListError("no anchor to check the list's signature against: give the CSCA")
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    text = text.strip()
    try:
        header = jwt.get_unverified_header(text)
        chain = header.get("x5c")
        if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
            raise ListError("the list's header names no signing certificate (x5c)")
        certificate = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
    except jwt.InvalidTokenError as exc:
        raise ListError(f"not a signed list (JWS): {exc}") from exc
    except ValueError as exc:
        if isinstance(exc, ListError):
            raise
        raise ListError(f"the list's signing certificate cannot be read: {exc}") from exc
    if not _trusted(certificate, anchors):
        raise ListError(
            f"the list is signed by {certificate.subject.rfc4514_string()}, "
            "which no configured anchor issued"
        )
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ListError("the list's signing certificate has neither an EC nor an RSA key")
    moment = at or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise ListError("the list's signing certificate is not valid at this time")
    try:
        decoded = jwt.PyJWS().decode_complete(text, key=public_key, algorithms=list(ALGORITHMS))
    except jwt.InvalidSignatureError as exc:
        raise ListError("the list's signature does not verify: it was altered") from exc
    except jwt.InvalidTokenError as exc:
        raise ListError(f"the list's signature cannot be checked: {exc}") from exc
    try:
        document = json.loads(decoded["payload"])
    except ValueError as exc:
        raise ListError(f"the signed list is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ListError("the signed list is not a JSON object")
    return document


def read_source(source: str, name: str | None = None, *, timeout: float = 20.0) -> bytes:
    """A list's bytes: ``source`` itself (a URL or a file; a directory: its ``index.jws``), or
    the document ``name`` under it (``URL/name``, ``DIR/name.jws``)."""
    if source.startswith(("http://", "https://")):
        import httpx

        url = source.rstrip("/") + (f"/{name}" if name else "")
        try:
            response = httpx.get(url, timeout=timeout, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise ListError(f"cannot download {url}: {exc}") from exc
        if response.status_code != 200:
            raise ListError(f"{url} answered HTTP {response.status_code}")
        return response.content
    path = Path(source)
    if path.is_dir():
        path = path / f"{name or 'index'}.jws"
    elif name:
        path = path.parent / f"{name}.jws"  # source names the index file: batches beside it
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ListError(f"cannot read {path}: {exc.strerror or exc}") from exc


def pem_bundle(certificates: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
