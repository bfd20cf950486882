"""Web page origins (threat 1) and the manifest keys they sign batches with.

An origin is allowed only in the exact serialisation a browser sends (``normalise_origin``);
its manifest key must be an EC P-256 public key. Used by the config files, the Windows
registry's settings and pairing alike.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kyso.agent.errors import config_error as _error

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4_LIKE = re.compile(r"[0-9]+|0x[0-9a-f]*")  # WHATWG: such a last label makes it an IPv4 host
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _ipv6_serialisation(text: str) -> str:
    """An IPv6 address written as browsers serialise it (WHATWG URL, "IPv6 serializer")."""
    packed = ipaddress.IPv6Address(text).packed
    pieces = [int.from_bytes(packed[i : i + 2]) for i in range(0, 16, 2)]
    best_start, best_len, i = -1, 1, 0
    while i < 8:  # the first longest run of at least two zero pieces is compressed
        if pieces[i] == 0:
            j = i
            while j < 8 and pieces[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    hexes = [format(p, "x") for p in pieces]
    if best_start < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len :])


def _host(raw: str, origin: str, config: str) -> str:
    """The normalised host, or ConfigError. Only forms a browser would send back unchanged."""
    bad = _error("origin_host", origin=origin, config=config)
    if raw.startswith("["):
        if not raw.endswith("]") or "%" in raw:  # zone ids never appear in an Origin
            raise bad
        try:
            return f"[{_ipv6_serialisation(raw[1:-1])}]"
        except ValueError:
            raise bad from None
    host = raw.lower()
    if not host or len(host) > 253:
        raise bad
    labels = host.split(".")
    if _IPV4_LIKE.fullmatch(labels[-1]):
        # Browsers turn 127.1 or 0x7f.0.0.1 into 127.0.0.1: only the canonical form can match.
        try:
            if str(ipaddress.IPv4Address(host)) == host:
                return host
        except ValueError:
            pass
        raise bad
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise bad
        if label.startswith("xn--"):
            # Only a typo check: a browser would refuse the label, so it could never match.
            try:
                decoded = label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                raise bad from None
            if decoded.isascii() or not decoded.isprintable():
                raise bad
    return host


def normalise_origin(value: str, *, config: str = "<code>") -> str:
    """The serialisation of an origin (scheme://host[:port]) exactly as a browser sends it.

    Strict on purpose: a path, userinfo, wildcard, non-ASCII or malformed host is an error, not
    something to repair, because the allowlist is only as good as its exactness (threat 1).
    """
    if not value.isascii():
        raise _error("origin_not_ascii", origin=value, config=config)
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _error("origin_invalid", origin=value, config=config)
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or not rest:
        raise _error("origin_invalid", origin=value, config=config)
    if scheme not in _DEFAULT_PORTS:
        raise _error("origin_scheme", origin=value, config=config)
    if "*" in rest:
        raise _error("origin_wildcard", origin=value, config=config)
    if "@" in rest:
        raise _error("origin_has_userinfo", origin=value, config=config)
    if any(ch in rest for ch in "/?#\\"):
        raise _error("origin_has_path", origin=value, config=config)
    if rest.startswith("["):
        end = rest.find("]")
        host_raw, after = (rest[: end + 1], rest[end + 1 :]) if end >= 0 else (rest, "")
        if after and not after.startswith(":"):
            raise _error("origin_invalid", origin=value, config=config)
        port_raw: str | None = after[1:] if after else None
    else:
        host_raw, colon, port_text = rest.partition(":")
        port_raw = port_text if colon else None
    host = _host(host_raw, value, config)
    port: int | None = None
    if port_raw is not None:
        if not port_raw.isdigit() or not 1 <= int(port_raw) <= 65535:
            raise _error("origin_port", origin=value, config=config)
        port = int(port_raw)
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise _error("origin_scheme", origin=value, config=config)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


_PEM_PUBLIC_KEY = re.compile(
    r"-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]+-----END PUBLIC KEY-----", re.ASCII
)


def load_manifest_key(
    pem: str | bytes, *, origin: str = "", config: str = "<code>"
) -> ec.EllipticCurvePublicKey:
    """A platform's manifest verification key: one PEM SubjectPublicKeyInfo, EC P-256 (ES256)."""
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    if not _PEM_PUBLIC_KEY.fullmatch(text.strip()):
        raise _error("manifest_key_invalid", origin=origin, config=config)
    try:
        key = serialization.load_pem_public_key(text.strip().encode("ascii"))
    except (ValueError, UnsupportedAlgorithm):
        raise _error("manifest_key_invalid", origin=origin, config=config) from None
    return _require_p256(key, origin, config)


def _require_p256(key: object, origin: str, config: str) -> ec.EllipticCurvePublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        kind = f"EC {key.curve.name}"
    else:
        kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
        kind = kind or "?"
    raise _error("manifest_key_not_p256", origin=origin, config=config, kind=kind)


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo: how a key is named in logs and the UI."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class AllowedOrigin:
    """A web page origin allowed to talk to the agent, and the key its manifests must verify with.

    The origin is normalised on construction, so an instance can only hold a value that a browser
    may send byte for byte.
    """

    origin: str
    manifest_key: ec.EllipticCurvePublicKey = field(compare=False, repr=False)
    manifest_key_fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", normalise_origin(self.origin))
        _require_p256(self.manifest_key, self.origin, "<code>")
        object.__setattr__(self, "manifest_key_fingerprint", key_fingerprint(self.manifest_key))

    @classmethod
    def create(
        cls, origin: str, manifest_key: ec.EllipticCurvePublicKey | str | bytes
    ) -> AllowedOrigin:
        """From an origin and a key object or PEM text (tests, tools)."""
        if isinstance(manifest_key, str | bytes):
            manifest_key = load_manifest_key(manifest_key, origin=origin)
        return cls(origin, manifest_key)
