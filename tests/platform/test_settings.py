"""One typed settings object (issue 13): read from the environment once, in ``create_app``,
and checked there; a bad value stops the start with a message naming the variable and what to
do, instead of a 500 (or a silent default) on the first request that needs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kyso.platform import settings
from kyso.platform.app import create_app
from kyso.platform.settings import SettingsError


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("KYSO_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'kyso.db'}")
    return monkeypatch


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("KYSO_AGENT_PORT", "47 321", "KYSO_AGENT_PORT must be a whole number from 1024 to 65535"),
        ("KYSO_AGENT_PORT", "80", "KYSO_AGENT_PORT must be a whole number from 1024 to 65535"),
        ("KYSO_TRUSTED_PROXIES", "one", "KYSO_TRUSTED_PROXIES must be a whole number"),
        ("KYSO_FEEDBACK_DUE_DAYS", "0", "KYSO_FEEDBACK_DUE_DAYS must be a whole number from 1"),
        ("KYSO_REGISTRY_TIMEOUT", "soon", "KYSO_REGISTRY_TIMEOUT must be a number"),
        ("KYSO_SECURE_COOKIES", "maybe", "KYSO_SECURE_COOKIES must be 1 or 0"),
        ("KYSO_PASSPORT_ALGORITHM", "RS1", "KYSO_PASSPORT_ALGORITHM must be ES256 or PS256"),
        ("KYSO_METRICS_ALLOW", "the office", "KYSO_METRICS_ALLOW must be comma-separated"),
        ("KYSO_REGISTRY_ADAPTER", "adapters.make", "KYSO_REGISTRY_ADAPTER must look like"),
        ("KYSO_SESSION_IDLE_MINUTES", "900", "KYSO_SESSION_IDLE_MINUTES must be positive"),
    ],
)
def test_a_bad_value_stops_the_start_and_says_what_to_set(
    environment: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    environment.setenv(variable, value)
    with pytest.raises(SettingsError, match=says):
        create_app()


def test_the_environment_is_read_once_into_one_typed_object(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("KYSO_AGENT_PORT", "47400")
    environment.setenv("KYSO_FEEDBACK_DUE_DAYS", "10")
    environment.setenv("KYSO_DOWNLOADS_DIR", str(tmp_path))
    environment.setenv("KYSO_PASSPORT_FONT_DIR", "/opt/fonts")
    environment.setenv("KYSO_REGISTRY_API_KEY", "k3y")
    app = create_app()
    found = app.extensions["kyso.settings"]
    assert isinstance(found, settings.Settings)
    assert found.signing.agent_port == 47400
    assert found.feedback.due_days == 10
    assert found.downloads.folder == str(tmp_path)
    assert found.passport.font_dir == "/opt/fonts"
    assert found.registry.api_key == "k3y"
    # The views read the same values through app.config (which tests override one by one).
    assert app.config["AGENT_PORT"] == 47400
    assert app.config["FEEDBACK_DUE_DAYS"] == 10
    assert app.config["REGISTRY_API_KEY"] == "k3y"
    # Read once: a change of the environment afterwards changes nothing.
    environment.setenv("KYSO_FEEDBACK_DUE_DAYS", "20")
    with app.app_context():
        from kyso.platform.feedback.views import settings as feedback_settings

        assert feedback_settings().due_days == 10


def test_defaults_without_any_variable() -> None:
    found = settings.from_environ({})
    assert found.signing.agent_port == settings.DEFAULT_AGENT_PORT == 47321
    assert found.security.session_idle_minutes == 30
    assert found.registry.url == "http://127.0.0.1:8090"
    assert found.passport.algorithm == "ES256"
    assert found.config()["METRICS_ALLOW"] == "127.0.0.0/8,::1/128"


def test_the_readme_export_command_works_with_a_relative_instance_path(tmp_path: Path) -> None:
    """README's ``export-signed`` line gives ``KYSO_INSTANCE_PATH=demo-data/platform``, relative
    to where it is typed: it is taken from the current directory (Flask alone refuses it with
    a ValueError traceback), and the command answers about the batch, not the path."""
    import os
    import subprocess
    import sys

    from kyso.agent import devpki

    ca = devpki.create_ca("Kyso Test Root")
    devpki.write_pem(tmp_path / "ca.pem", ca.certificate)
    env = dict(
        os.environ,
        DATABASE_URL="sqlite:///demo/platform/kyso.db",
        KYSO_INSTANCE_PATH="demo/platform",
        KYSO_TRUST_ANCHORS="ca.pem",
    )
    command = [sys.executable, "-m", "kyso.platform.cli"]
    upgraded = subprocess.run(
        [*command, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert upgraded.returncode == 0, upgraded.stderr
    exported = subprocess.run(
        [*command, "export-signed", "--batch", "KB0000000000000000", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "Traceback" not in exported.stderr
    assert exported.returncode == 1
    assert "KB0000000000000000" in exported.stderr
    assert (tmp_path / "demo" / "platform").is_dir()


def test_a_relative_instance_path_is_made_absolute(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("KYSO_INSTANCE_PATH", "demo-data/platform")
    read = settings.from_environ()
    assert read.instance_path == str(Path.cwd() / "demo-data" / "platform")
