"""The agent's MSI download (platform/downloads.py) and the Sign page's link to it."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy.orm import Session
from support.platform_seed import Seed

from kyso.platform.signing.batch_views import sign_config

URL = "/downloads/kyso-agent.msi"


def test_missing_folder_or_file_is_a_clear_404(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    app.config["DOWNLOADS_DIR"] = None
    page = client.get(URL)
    assert page.status_code == 404
    text = page.get_data(as_text=True)
    assert "Máy chủ này chưa có bộ cài Kyso Agent" in text  # Vietnamese first
    assert "KYSO_DOWNLOADS_DIR" in text
    app.config["DOWNLOADS_DIR"] = str(tmp_path)  # the folder, but no MSI in it
    assert client.get(URL).status_code == 404
    client.get("/lang/en")
    assert "does not have the Kyso Agent installer" in client.get(URL).get_data(as_text=True)


def test_serves_the_built_msi(app: Flask, tmp_path: Path) -> None:
    msi = tmp_path / "kyso-agent.msi"
    msi.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 40)
    app.config["DOWNLOADS_DIR"] = str(tmp_path)
    reply = app.test_client().get(URL)
    assert reply.status_code == 200
    assert reply.data == msi.read_bytes()
    assert reply.mimetype == "application/x-msi"
    assert reply.headers["Content-Disposition"] == "attachment; filename=kyso-agent.msi"
    assert app.test_client().get("/downloads/other.msi").status_code == 404


def test_sign_page_links_to_it_unless_configured(app: Flask, session: Session, org: Seed) -> None:
    officer = session.merge(org.officer)
    with app.test_request_context("/signing/"):
        app.config["AGENT_INSTALLER_URL"] = None
        assert sign_config(officer, "prepare")["installer_url"] == URL
        app.config["AGENT_INSTALLER_URL"] = "https://cdn.example.vn/kyso-agent.msi"
        assert sign_config(officer, "prepare")["installer_url"] == (
            "https://cdn.example.vn/kyso-agent.msi"
        )
