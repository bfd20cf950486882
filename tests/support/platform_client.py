"""Driving the platform's pages with Flask's test client, CSRF protection left on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from kyso.platform.app import create_app
from support.platform_db import Databases
from support.platform_seed import PASSWORD
from support.signing_keys import Pki, make_pki


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form at ``path`` (the tests keep CSRF protection on)."""
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    token = csrf_token(client, "/login")
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def logged_in(app: Flask, username: str, address: str = "127.0.0.1") -> FlaskClient:
    """A new client of ``app`` logged in as ``username`` from ``address``."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    response = login(client, username)
    assert response.status_code == 302, f"{username} could not log in"
    return client


def module_signing_app(
    backend: str, databases: Databases, root: Path, origin: str
) -> tuple[Flask, str, Pki]:
    """A platform app for a whole test module on ``backend`` (sqlite or postgresql), with a
    test CA as its trust anchors and a manifest key in its instance folder."""
    url = databases.sqlite(root) if backend == "sqlite" else databases.postgresql()
    pki = make_pki(root)
    instance = root / "instance"
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "test-secret",
            "TESTING": True,
            "SESSION_COOKIE_SECURE": False,
            "REGISTRY_URL": "http://127.0.0.1:9",
            "TRUST_ANCHORS": str(pki.anchors),
            "MANIFEST_KEY": str(instance / "manifest-key.pem"),
            "PUBLIC_ORIGIN": origin,
        }
    )
    app.instance_path = str(instance)
    return app, url, pki
