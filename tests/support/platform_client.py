"""Driving the platform's pages with Flask's test client, CSRF protection left on."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from support.platform_seed import PASSWORD


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
