"""Every setting of the platform, read from the environment in one place and checked at start.

``create_app`` calls :func:`from_environ` once; a bad value stops the start with a
:class:`SettingsError` naming the variable, what it must be and what to do. Nothing else in
the platform reads the environment (``tests/test_layout.py`` checks): the values reach the code
as ``app.config`` keys (:meth:`Settings.config`, which tests override) and as this typed object
(``app.extensions["kyso.settings"]``).

=================================  ===========================================================
Variable (default)                 Meaning
=================================  ===========================================================
``KYSO_INSTANCE_PATH``             the instance folder (Flask's ``instance/``): the SQLite
                                   database, secret key, manifest key and trust anchors
                                   (a relative path is taken from the current directory)
``DATABASE_URL``                   the database (default SQLite ``kyso.db`` in the instance
                                   folder; PostgreSQL ``postgresql+psycopg://...``)
``DATABASE_REPLICA_URL``           optional: a read-only PostgreSQL replica (streaming
                                   replication) where the statistics pages and the export
                                   read; when it cannot be reached they read the primary
**security**
``KYSO_SECRET_KEY``                the cookies' signing key (default: a random key kept in the
                                   instance folder's ``secret_key``)
``KYSO_SECURE_COOKIES`` (1)        0 only for plain-http development; otherwise Secure cookies
                                   and HSTS
``KYSO_TRUSTED_PROXIES`` (0)       how many reverse proxies set X-Forwarded-For
``KYSO_METRICS_ALLOW``             networks that may read ``/metrics`` (default the loopback,
                                   ``127.0.0.0/8,::1/128``)
``KYSO_SESSION_IDLE_MINUTES`` (30)  idle limit of a logged-in session
``KYSO_SESSION_LIFETIME_HOURS``    absolute limit of a logged-in session (12)
**signing**
``KYSO_TRUST_ANCHORS``             PEM bundle of the CA certificates officers' certificates must
                                   chain to (default ``trust-anchors.pem`` in the instance)
``KYSO_MANIFEST_KEY``              the batch-manifest EC P-256 key, PEM (default
                                   ``manifest-key.pem`` in the instance, created on first use)
``KYSO_PUBLIC_ORIGIN``             the origin the browser sees behind a proxy (default: the
                                   request's)
``KYSO_AGENT_PORT`` (47321)        the signing agent's localhost port
``KYSO_AGENT_INSTALLER_URL``       where officers without a running agent are sent (default the
                                   platform's ``/downloads/kyso-agent.msi``)
``KYSO_REVOCATION_POLICY`` (hard)  officers' certificates: ``hard`` (refuse when OCSP/CRL cannot
                                   say), ``soft`` (accept then) or ``off``
``KYSO_REVOCATION_TIMEOUT`` (5)    seconds for an OCSP/CRL answer
``KYSO_REVOCATION_CACHE_SECONDS``  how long an answer is kept (300)
``KYSO_CERTIFICATE_EXPIRY_WARNING_DAYS``  days before expiry the signing pages warn (30)
``KYSO_TSA_URL``                   the RFC 3161 time-stamping authority every stored signature
                                   is time-stamped by (CAdES-T) after storage, by
                                   ``kyso-platform signing timestamp``; empty: none (CAdES-BES)
``KYSO_TSA_POLICY`` (hard)         when the TSA cannot answer a PDF passport's time-stamp:
                                   ``hard`` (no PDF, the citizen tries again) or ``soft`` (a
                                   PAdES B-B PDF); officers' signatures are never refused for it
                                   (they wait in the time-stamp queue)
``KYSO_TSA_TIMEOUT`` (10)          seconds for a time-stamp answer
``KYSO_TSA_CONNECTIONS`` (8)       time-stamp requests at a time
**downloads**
``KYSO_DOWNLOADS_DIR``             the folder holding ``kyso-agent.msi``
**registry**
``KYSO_REGISTRY_URL``              the population registry (``http://127.0.0.1:8090``)
``KYSO_REGISTRY_API_KEY``          its API key
``KYSO_REGISTRY_ADAPTER``          ``package.module:factory`` of a production adapter
``KYSO_REGISTRY_TIMEOUT`` (10)     seconds per lookup (pages wait at most 5)
``KYSO_REGISTRY_CA_BUNDLE``        CA bundle for the registry's TLS
**feedback**
``KYSO_FEEDBACK_DUE_DAYS`` (7)     days a facility has to answer a report
``KYSO_FEEDBACK_MIN_SECONDS`` (3)  fastest a person can fill in the public form
**passport** (the central signer, ``passport/config.py``)
``KYSO_PASSPORT_PKCS11_MODULE``,   the HSM's PKCS#11 module, token and key
``KYSO_PASSPORT_TOKEN_LABEL``,
``KYSO_PASSPORT_KEY_LABEL``
``KYSO_PASSPORT_PIN`` or           the token's PIN, or a file holding it
``KYSO_PASSPORT_PIN_FILE``
``KYSO_PASSPORT_ALGORITHM``        ES256 (default) or PS256
``KYSO_PASSPORT_CERTIFICATE``      the signer's certificate, when the token holds none
``KYSO_PASSPORT_ISSUER``           the issuer name in the passports
``KYSO_PASSPORT_DSC_LIST``         other signers' certificates the verifier trusts
``KYSO_PASSPORT_LIST_ANCHORS``     what the signed trust and revocation lists must be signed
                                   under (the CSCA, or the list signer's certificate)
``KYSO_PASSPORT_FONT_DIR``         where DejaVu Sans is (default the system's font folders)
``KYSO_PASSPORT_*`` (others)       the PDF passport's signing key, chain, CRLs and time-stamp
                                   authority (``KYSO_PASSPORT_PDF_*``, ``KYSO_PASSPORT_TSA_*``):
                                   listed in ``passport/config.py``; each reaches the app as
                                   ``PASSPORT_<NAME>``
=================================  ===========================================================

``kyso-platform serve`` has its own options (``KYSO_BIND``, ``KYSO_WORKERS``,
``KYSO_THREADS``; ``ops/serve.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

PREFIX = "KYSO_"
DEFAULT_AGENT_PORT = 47321
DEFAULT_REGISTRY_URL = "http://127.0.0.1:8090"
DEFAULT_METRICS_ALLOW = "127.0.0.0/8,::1/128"
PASSPORT_ALGORITHMS = ("ES256", "PS256")
REVOCATION_POLICIES = ("hard", "soft", "off")
# The passport variables with a field of their own in PassportSettings.
_PASSPORT_TYPED = frozenset(
    {
        "PKCS11_MODULE",
        "TOKEN_LABEL",
        "KEY_LABEL",
        "PIN",
        "PIN_FILE",
        "ALGORITHM",
        "CERTIFICATE",
        "ISSUER",
        "DSC_LIST",
        "LIST_ANCHORS",
        "FONT_DIR",
    }
)

N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """A setting's value cannot be used: says which, why, and what to set."""


@dataclass(frozen=True)
class SecuritySettings:
    secret_key: str | None = None
    secure_cookies: bool = True
    trusted_proxies: int = 0
    metrics_allow: str = DEFAULT_METRICS_ALLOW
    session_idle_minutes: float = 30.0
    session_lifetime_hours: float = 12.0


@dataclass(frozen=True)
class SigningSettings:
    trust_anchors: str | None = None
    manifest_key: str | None = None
    public_origin: str | None = None
    agent_port: int = DEFAULT_AGENT_PORT
    agent_installer_url: str | None = None
    revocation_policy: str = "hard"
    revocation_timeout: float = 5.0
    revocation_cache_seconds: float = 300.0
    certificate_expiry_warning_days: int = 30
    tsa_url: str = ""
    tsa_policy: str = "hard"
    tsa_timeout: float = 10.0
    tsa_connections: int = 8


@dataclass(frozen=True)
class DownloadsSettings:
    folder: str | None = None


@dataclass(frozen=True)
class RegistrySettings:
    url: str = DEFAULT_REGISTRY_URL
    api_key: str | None = None
    adapter: str | None = None
    timeout: float = 10.0
    ca_bundle: str | None = None


@dataclass(frozen=True)
class FeedbackSettings:
    due_days: int = 7
    min_seconds: int = 3


@dataclass(frozen=True)
class PassportSettings:
    pkcs11_module: str | None = None
    token_label: str | None = None
    key_label: str | None = None
    pin: str | None = field(default=None, repr=False)
    pin_file: str | None = None
    algorithm: str = "ES256"
    certificate: str | None = None
    issuer: str | None = None
    dsc_list: str | None = None
    list_anchors: str | None = None
    font_dir: str | None = None
    # Every other KYSO_PASSPORT_<NAME> variable (the PDF signer's, the TSA's), as given.
    others: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Settings:
    instance_path: str | None = None
    database_url: str | None = None
    database_replica_url: str | None = None
    security: SecuritySettings = SecuritySettings()
    signing: SigningSettings = SigningSettings()
    downloads: DownloadsSettings = DownloadsSettings()
    registry: RegistrySettings = RegistrySettings()
    feedback: FeedbackSettings = FeedbackSettings()
    passport: PassportSettings = PassportSettings()

    def config(self) -> dict[str, Any]:
        """The flat ``app.config`` keys the code reads (tests override them one by one)."""
        security, signing, registry, passport = (
            self.security,
            self.signing,
            self.registry,
            self.passport,
        )
        return {
            "DATABASE_REPLICA_URL": self.database_replica_url,
            "SESSION_COOKIE_SECURE": security.secure_cookies,
            "TRUSTED_PROXIES": security.trusted_proxies,
            "METRICS_ALLOW": security.metrics_allow,
            "SESSION_IDLE_MINUTES": security.session_idle_minutes,
            "SESSION_LIFETIME_HOURS": security.session_lifetime_hours,
            "TRUST_ANCHORS": signing.trust_anchors,
            "MANIFEST_KEY": signing.manifest_key,
            "PUBLIC_ORIGIN": signing.public_origin,
            "AGENT_PORT": signing.agent_port,
            "AGENT_INSTALLER_URL": signing.agent_installer_url,
            "REVOCATION_POLICY": signing.revocation_policy,
            "REVOCATION_TIMEOUT": signing.revocation_timeout,
            "REVOCATION_CACHE_SECONDS": signing.revocation_cache_seconds,
            "CERTIFICATE_EXPIRY_WARNING_DAYS": signing.certificate_expiry_warning_days,
            "TSA_URL": signing.tsa_url,
            "TSA_POLICY": signing.tsa_policy,
            "TSA_TIMEOUT": signing.tsa_timeout,
            "TSA_CONNECTIONS": signing.tsa_connections,
            "DOWNLOADS_DIR": self.downloads.folder,
            "REGISTRY_URL": registry.url,
            "REGISTRY_API_KEY": registry.api_key,
            "REGISTRY_ADAPTER": registry.adapter,
            "REGISTRY_TIMEOUT": registry.timeout,
            "REGISTRY_CA_BUNDLE": registry.ca_bundle,
            "FEEDBACK_DUE_DAYS": self.feedback.due_days,
            "FEEDBACK_MIN_SECONDS": self.feedback.min_seconds,
            "PASSPORT_PKCS11_MODULE": passport.pkcs11_module,
            "PASSPORT_TOKEN_LABEL": passport.token_label,
            "PASSPORT_KEY_LABEL": passport.key_label,
            "PASSPORT_PIN": passport.pin,
            "PASSPORT_PIN_FILE": passport.pin_file,
            "PASSPORT_ALGORITHM": passport.algorithm,
            "PASSPORT_CERTIFICATE": passport.certificate,
            "PASSPORT_ISSUER": passport.issuer,
            "PASSPORT_DSC_LIST": passport.dsc_list,
            "PASSPORT_LIST_ANCHORS": passport.list_anchors,
            "PASSPORT_FONT_DIR": passport.font_dir,
            **{f"PASSPORT_{name}": value for name, value in passport.others},
        }


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def number(
        self, name: str, default: N, kind: Callable[[str], N], low: N, high: N | None = None
    ) -> N:
        raw = self.text(name)
        if raw is None:
            return default
        what = "a whole number" if kind is int else "a number"
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise SettingsError(
                f"{name} must be {what} {bounds}, not {raw!r}: correct it, or remove it for the "
                f"default ({default})"
            )
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be 1 or 0, not {raw!r}: correct it, or remove it")


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of the environment (the process's unless given), checked;
    :class:`SettingsError` says what is wrong."""
    environ = os.environ if environ is None else environ
    read = _Reader(environ)
    k = PREFIX
    security = SecuritySettings(
        secret_key=read.text(f"{k}SECRET_KEY"),
        secure_cookies=read.flag(f"{k}SECURE_COOKIES", True),
        trusted_proxies=read.number(f"{k}TRUSTED_PROXIES", 0, int, 0, 10),
        metrics_allow=read.text(f"{k}METRICS_ALLOW") or DEFAULT_METRICS_ALLOW,
        session_idle_minutes=read.number(f"{k}SESSION_IDLE_MINUTES", 30.0, float, 1.0),
        session_lifetime_hours=read.number(f"{k}SESSION_LIFETIME_HOURS", 12.0, float, 0.1),
    )
    check_sessions(security.session_idle_minutes, security.session_lifetime_hours)
    _check_networks(security.metrics_allow)
    algorithm = (read.text(f"{k}PASSPORT_ALGORITHM") or "ES256").upper()
    if algorithm not in PASSPORT_ALGORITHMS:
        raise SettingsError(
            f"{k}PASSPORT_ALGORITHM must be ES256 or PS256, not {algorithm!r}: correct it, or "
            "remove it for ES256"
        )
    policy = (read.text(f"{k}REVOCATION_POLICY") or "hard").lower()
    if policy not in REVOCATION_POLICIES:
        raise SettingsError(
            f"{k}REVOCATION_POLICY must be hard, soft or off, not {policy!r}: correct it, or "
            "remove it for hard"
        )
    tsa_policy = (read.text(f"{k}TSA_POLICY") or "hard").lower()
    if tsa_policy not in ("hard", "soft"):
        raise SettingsError(
            f"{k}TSA_POLICY must be hard or soft, not {tsa_policy!r}: correct it, or remove it "
            "for hard"
        )
    adapter = read.text(f"{k}REGISTRY_ADAPTER")
    if adapter is not None and not all(adapter.partition(":")[::2]):
        raise SettingsError(
            f'{k}REGISTRY_ADAPTER must look like "package.module:factory", not {adapter!r}'
        )
    replica_url = read.text("DATABASE_REPLICA_URL")
    if replica_url is not None and not replica_url.startswith("postgresql"):
        raise SettingsError(
            "DATABASE_REPLICA_URL must be a PostgreSQL replica (postgresql+psycopg://...), not "
            f"{replica_url.partition(':')[0]!r}: correct it, or remove it to read the primary only"
        )
    return Settings(
        instance_path=_absolute(read.text(f"{k}INSTANCE_PATH")),
        database_url=read.text("DATABASE_URL"),
        database_replica_url=replica_url,
        security=security,
        signing=SigningSettings(
            trust_anchors=read.text(f"{k}TRUST_ANCHORS"),
            manifest_key=read.text(f"{k}MANIFEST_KEY"),
            public_origin=read.text(f"{k}PUBLIC_ORIGIN"),
            agent_port=read.number(f"{k}AGENT_PORT", DEFAULT_AGENT_PORT, int, 1024, 65535),
            agent_installer_url=read.text(f"{k}AGENT_INSTALLER_URL"),
            revocation_policy=policy,
            revocation_timeout=read.number(f"{k}REVOCATION_TIMEOUT", 5.0, float, 0.1, 120.0),
            revocation_cache_seconds=read.number(
                f"{k}REVOCATION_CACHE_SECONDS", 300.0, float, 0.0, 86400.0
            ),
            certificate_expiry_warning_days=read.number(
                f"{k}CERTIFICATE_EXPIRY_WARNING_DAYS", 30, int, 0, 365
            ),
            tsa_url=read.text(f"{k}TSA_URL") or "",
            tsa_policy=tsa_policy,
            tsa_timeout=read.number(f"{k}TSA_TIMEOUT", 10.0, float, 0.1, 120.0),
            tsa_connections=read.number(f"{k}TSA_CONNECTIONS", 8, int, 1, 64),
        ),
        downloads=DownloadsSettings(folder=read.text(f"{k}DOWNLOADS_DIR")),
        registry=RegistrySettings(
            url=read.text(f"{k}REGISTRY_URL") or DEFAULT_REGISTRY_URL,
            api_key=read.text(f"{k}REGISTRY_API_KEY"),
            adapter=adapter,
            timeout=read.number(f"{k}REGISTRY_TIMEOUT", 10.0, float, 0.1, 300.0),
            ca_bundle=read.text(f"{k}REGISTRY_CA_BUNDLE"),
        ),
        feedback=FeedbackSettings(
            due_days=read.number(f"{k}FEEDBACK_DUE_DAYS", 7, int, 1, 365),
            min_seconds=read.number(f"{k}FEEDBACK_MIN_SECONDS", 3, int, 0, 600),
        ),
        passport=PassportSettings(
            pkcs11_module=read.text(f"{k}PASSPORT_PKCS11_MODULE"),
            token_label=read.text(f"{k}PASSPORT_TOKEN_LABEL"),
            key_label=read.text(f"{k}PASSPORT_KEY_LABEL"),
            pin=environ.get(f"{k}PASSPORT_PIN") or None,  # as it is: a PIN may have blanks
            pin_file=read.text(f"{k}PASSPORT_PIN_FILE"),
            algorithm=algorithm,
            certificate=read.text(f"{k}PASSPORT_CERTIFICATE"),
            issuer=read.text(f"{k}PASSPORT_ISSUER"),
            dsc_list=read.text(f"{k}PASSPORT_DSC_LIST"),
            list_anchors=read.text(f"{k}PASSPORT_LIST_ANCHORS"),
            font_dir=read.text(f"{k}PASSPORT_FONT_DIR"),
            others=tuple(
                sorted(
                    (name.removeprefix(f"{k}PASSPORT_"), value)
                    for name, value in environ.items()
                    if name.startswith(f"{k}PASSPORT_")
                    and name.removeprefix(f"{k}PASSPORT_") not in _PASSPORT_TYPED
                    and value.strip()
                )
            ),
        ),
    )


def _absolute(path: str | None) -> str | None:
    """A relative instance folder is taken from the current directory, as a shell user means it
    (Flask itself refuses relative instance paths)."""
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def check_sessions(idle_minutes: float, lifetime_hours: float) -> None:
    if not 0 < idle_minutes <= 60 * lifetime_hours:
        raise SettingsError(
            "KYSO_SESSION_IDLE_MINUTES must be positive and at most KYSO_SESSION_LIFETIME_HOURS "
            f"(idle {idle_minutes:g} minutes, lifetime {lifetime_hours:g} hours): shorten the "
            "idle limit or lengthen the lifetime"
        )


def _check_networks(networks: str) -> None:
    import ipaddress

    for network in networks.split(","):
        if not network.strip():
            continue
        try:
            ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise SettingsError(
                f"KYSO_METRICS_ALLOW must be comma-separated networks (10.0.0.0/8,::1/128), "
                f"and {network.strip()!r} is not one: correct it"
            ) from None
