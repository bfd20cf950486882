"""Diagnostics text and the rotating log file."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from support.platform_keys import ManifestIssuer

from kyso.agent.config import AgentConfig, AllowedOrigin
from kyso.agent.diagnostics import diagnostics_text
from kyso.agent.logs import log_path, remove_logging, setup_logging
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.agent.token.softhsm import ProvisionedToken


def test_diagnostics_name_everything_and_reveal_no_secret(
    token: Pkcs11Token, softhsm: ProvisionedToken, tmp_path: Path
) -> None:
    issuer = ManifestIssuer("https://tiemchung.example.vn")
    config = AgentConfig(
        origins=(AllowedOrigin.create(issuer.origin, issuer.public_pem),),
        state_dir=tmp_path / "state",
        machine_config_path=tmp_path / "machine.toml",
        user_config_path=tmp_path / "user.toml",
    )
    certificates = token.list_certificates()
    tokens = token.present_tokens()
    text = diagnostics_text(
        config,
        module=softhsm.module_path,
        tokens=tokens,
        certificates=certificates,
        listening_port=47321,
        language="en",
    )
    assert "Kyso agent" in text
    assert "Python 3." in text
    assert "python-pkcs11 " in text
    assert "PySide6" in text
    assert softhsm.module_path in text
    assert "Listening on port 47321" in text
    ours = next(t for t in tokens if t.label == softhsm.label)
    assert f"{ours.label} | {ours.manufacturer} | {ours.model} | serial {ours.serial}" in text
    for cert in certificates:
        assert cert.subject in text
        assert cert.serial_hex in text
        assert cert.not_after.isoformat() in text
    assert config.origins[0].manifest_key_fingerprint in text
    assert str(log_path(config.state_dir)) in text
    assert str(tmp_path / "machine.toml") in text
    # No secret and no key material: no PIN, no PEM, no certificate bytes.
    # (The test PINs are digit runs that also occur inside the tax code: look for them alone.)
    for pin in (softhsm.user_pin, softhsm.so_pin):
        assert not re.search(rf"(?<!\d){pin}(?!\d)", text)
    assert "BEGIN" not in text
    import base64

    for cert in certificates:
        assert base64.b64encode(cert.der).decode()[:40] not in text
    vi = diagnostics_text(config, module=None, language="vi")
    assert "Thông tin chẩn đoán" in vi
    assert "Đang dừng" in vi


def test_log_file_rotates(tmp_path: Path) -> None:
    handler = setup_logging(tmp_path, level=logging.INFO, max_bytes=2000, backups=2)
    try:
        logger = logging.getLogger("kyso.agent.test")
        for i in range(200):
            logger.info("line %d of the rotation test", i)
    finally:
        remove_logging(handler)
    path = log_path(tmp_path)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["agent.log", "agent.log.1", "agent.log.2"]
    assert all(p.stat().st_size <= 2000 for p in path.parent.iterdir())
    assert "line 199 of the rotation test" in path.read_text(encoding="utf-8")
