"""'Copy diagnostics': what IT needs to help the officer, and nothing secret.

Versions (Kyso, Python, PySide6 when installed, python-pkcs11, cryptography, websockets), the
OS, the PKCS#11 module, the tokens (label, manufacturer, model, serial), the certificates
(subject, issuer, serial, validity, key), the allowed origins with their key fingerprints, the
config and log paths. Never a PIN, a digest, a signature, a key or a certificate's bytes. Labels
are in the officer's language; values are as they are.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata

from kyso.agent import __version__
from kyso.agent.config import AgentConfig
from kyso.agent.i18n import tr
from kyso.agent.logs import log_path
from kyso.agent.token.model import CertificateInfo, TokenInfo

_PACKAGES = (
    ("PySide6", ("PySide6-Essentials", "PySide6")),
    ("python-pkcs11", ("python-pkcs11",)),
    ("cryptography", ("cryptography",)),
    ("websockets", ("websockets",)),
    ("keyring", ("keyring",)),
)


def _package_version(names: Sequence[str]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def diagnostics_text(
    config: AgentConfig,
    *,
    module: str | None,
    tokens: Sequence[TokenInfo] = (),
    certificates: Sequence[CertificateInfo] = (),
    origins: Sequence[tuple[str, str, bool]] | None = None,
    listening_port: int | None = None,
    language: str = "vi",
    now: datetime | None = None,
) -> str:
    """The text to copy. ``origins``: (origin, key fingerprint, set by the machine); None
    lists the machine config's. Pass ``service.status.tokens`` / ``.certificates``."""

    def t(key: str, **values: object) -> str:
        return tr(f"diagnostics.{key}", language, **values)

    lines = [
        t("title"),
        t("generated", when=(now or datetime.now(UTC)).isoformat(timespec="seconds")),
        "",
    ]
    lines.append(t("versions"))
    lines.append(f"  Kyso agent {__version__}")
    lines.append(f"  Python {platform.python_version()} ({sys.platform}, {platform.machine()})")
    for label, names in _PACKAGES:
        version = _package_version(names)
        lines.append(f"  {label} {version}" if version else f"  {label}: {t('not_installed')}")
    lines.append(f"  {t('os')}: {platform.platform()}")
    lines.append("")
    lines.append(t("module", module=module or t("none")))
    if listening_port is None:
        lines.append(t("not_listening", port=config.port))
    else:
        lines.append(t("listening", port=listening_port))
    lines.append("")
    lines.append(t("tokens", count=len(tokens)))
    for token in tokens:
        lines.append(
            f"  - {token.label} | {token.manufacturer} | {token.model} | "
            f"{t('serial')} {token.serial} | slot {token.slot_id}"
        )
    lines.append(t("certificates", count=len(certificates)))
    for cert in certificates:
        curve = f" {cert.curve}" if cert.curve else ""
        lines += [
            f"  - {cert.subject}",
            f"    {t('issuer')}: {cert.issuer}",
            f"    {t('serial')}: {cert.serial_hex} | {cert.key_type}-{cert.key_size}{curve}"
            f" | {', '.join(cert.key_usage) or '-'}",
            f"    {t('validity')}: {cert.not_before.isoformat()} → {cert.not_after.isoformat()}",
            f"    {t('token')}: {cert.token.label} | SHA-256 {cert.fingerprint_sha256}",
        ]
    lines.append("")
    listed = (
        origins
        if origins is not None
        else [(o.origin, o.manifest_key_fingerprint, True) for o in config.origins]
    )
    lines.append(t("origins", count=len(listed)))
    for origin, fingerprint, machine in listed:
        lines.append(f"  - {origin} ({t('machine' if machine else 'user')}) key {fingerprint}")
    lines.append("")
    lines.append(t("paths"))
    lines.append(f"  {t('machine_config')}: {config.machine_config_path}")
    lines.append(f"  {t('user_config')}: {config.user_config_path}")
    lines.append(f"  {t('state_dir')}: {config.state_dir}")
    lines.append(f"  {t('log_file')}: {log_path(config.state_dir)}")
    return "\n".join(lines) + "\n"
