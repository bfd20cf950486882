"""Debian's Chromium for the browser tests (never a downloaded browser), and what every browser
test of the platform needs: the real platform served on a loopback port, a browser, a login,
and a watch on the page's console.

    @pytest.fixture
    def site(database_url, tmp_path):
        app = platform_app(database_url, tmp_path, FEEDBACK_MIN_SECONDS=1)
        ...seed it...
        with serve(app) as url:
            yield url

    def test_page(site, browser):            # `browser`: one Chromium per test module
        page = browser.new_page(locale="vi-VN")
        login(page, site, "nhanvien.bennghe")
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from support.platform_seed import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def needs_chromium() -> None:
    """Skips the test where Debian's chromium is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")


@contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    """A Chromium of its own (``extra_args`` such as ``--lang=en-US``), closed afterwards."""
    needs_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for a test module (each test opens its own pages or contexts)."""
    pytest.importorskip("playwright.sync_api")
    with chromium() as instance:
        yield instance


def platform_app(database_url: str, tmp_path: Path, **config: Any) -> Flask:
    """The platform as a browser test serves it: plain-http cookies, no population registry
    listening (a test that needs one passes ``REGISTRY_URL``), ``config`` on top."""
    from kyso.platform.app import create_app

    needs_chromium()
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "browser-test",
            "SESSION_COOKIE_SECURE": False,
            "REGISTRY_URL": "http://127.0.0.1:9",
            **config,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    return app


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """``app`` served by werkzeug on an ephemeral loopback port; yields its base URL. The server
    is stopped and the app's database connections closed afterwards."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        app.extensions["kyso.engine"].dispose()


def login(page: Any, url: str, username: str, password: str = PASSWORD) -> None:
    """Logs in through the login form, as a person does."""
    page.goto(f"{url}/login")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(password)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_load_state()


def watch(page: Any, problems: list[str]) -> None:
    """Collects the page's console errors and warnings and its uncaught errors in
    ``problems`` (a missing favicon aside)."""

    def console(message: Any) -> None:
        where = str(message.location.get("url", ""))
        if message.type in ("error", "warning") and not where.endswith("/favicon.ico"):
            problems.append(f"{message.text} ({where})")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(str(e)))
