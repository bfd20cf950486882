"""The frozen agent (PyInstaller one-folder build, `make bundle`) as CI runs it: --self-test
against SoftHSM, every shared library resolvable, the desktop window starting, the data files.

Skipped when dist/kyso-agent is not built, except under `make bundle-test`
(KYSO_REQUIRE_BUNDLE=1), where a missing bundle fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kyso.agent.token.softhsm import KeySpec, ProvisionedToken

ROOT = Path(__file__).resolve().parent.parent.parent
BUNDLE = Path(os.environ.get("KYSO_BUNDLE") or ROOT / "dist" / "kyso-agent").resolve()
EXE = BUNDLE / ("kyso-agent-cli.exe" if sys.platform == "win32" else "kyso-agent")
INTERNAL = BUNDLE / "_internal"

if not EXE.is_file():
    if os.environ.get("KYSO_REQUIRE_BUNDLE") == "1":
        raise RuntimeError(f"{EXE} is missing: `make bundle` should have built it")
    pytestmark = pytest.mark.skip(reason=f"{EXE} is not built (make bundle)")


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=BUNDLE,  # started from its own folder, as the Start-menu shortcut does
    )


@pytest.mark.parametrize(("key", "algorithms"), [("rsa", 2), ("p256", 1)])
def test_frozen_self_test_against_softhsm(
    tmp_path: Path, fresh_softhsm: Callable[..., ProvisionedToken], key: str, algorithms: int
) -> None:
    token = fresh_softhsm(
        label=f"Kyso Frozen {key}",
        keys=(KeySpec("rsa", "RSA", 2048), KeySpec("p256", "EC", 256)),
    )
    machine = tmp_path / "machine.toml"
    machine.write_text(f'pkcs11_module = "{token.module_path}"\n', encoding="utf-8")
    env = dict(
        os.environ,
        KYSO_SELFTEST_PIN=token.user_pin,
        KYSO_SELFTEST_CERTIFICATE=token.certificates[key].fingerprint_sha256,
    )
    done = _run(
        "--self-test",
        "--language",
        "en",
        "--config",
        str(machine),
        "--user-config",
        str(tmp_path / "user.toml"),
        "--state-dir",
        str(tmp_path / "state"),
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("[OK] signature check: 5 signatures match") == algorithms
    assert "[OK] refusing an unknown page" in done.stdout
    assert "Self-test passed" in done.stdout


def test_frozen_self_test_names_a_wrong_pin(
    tmp_path: Path, fresh_softhsm: Callable[..., ProvisionedToken]
) -> None:
    token = fresh_softhsm(label="Kyso Frozen PIN")
    machine = tmp_path / "machine.toml"
    machine.write_text(f'pkcs11_module = "{token.module_path}"\n', encoding="utf-8")
    env = dict(
        os.environ,
        KYSO_SELFTEST_PIN="999999",
        KYSO_SELFTEST_CERTIFICATE=token.certificates["p256"].fingerprint_sha256,
    )
    done = _run("--self-test", "--config", str(machine), env=env)
    assert done.returncode == 13, done.stdout + done.stderr
    assert "PIN_INCORRECT" in done.stdout


def test_stdlib_is_not_shadowed_and_version() -> None:
    done = _run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("kyso-agent ")


def test_data_files_and_no_platform_code() -> None:
    agent = INTERNAL / "kyso" / "agent"
    assert (agent / "modules.toml").is_file()
    locales = {p.name for p in (agent / "locales").glob("*.toml")}
    assert {p.name for p in (ROOT / "agent" / "locales").glob("*.toml")} <= locales
    assert not (INTERNAL / "kyso" / "platform").exists()
    for name in ("flask", "sqlalchemy", "pyhanko", "tkinter"):
        assert not (INTERNAL / name).exists(), name
    assert not list(INTERNAL.rglob("translations/*.qm"))  # Qt's translations were trimmed
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file() and not p.is_symlink())
    assert size < 160 * 1024 * 1024, f"the bundle grew to {size / 1048576:.0f} MiB"


@pytest.mark.skipif(sys.platform != "linux", reason="ldd")
def test_every_shared_library_resolves() -> None:
    """The trimming removed no library that a kept one needs."""
    missing = []
    for path in INTERNAL.rglob("*.so*"):
        if not path.is_file() or path.is_symlink():
            continue
        done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        missing += [
            f"{path.name}: {line.strip()}"
            for line in done.stdout.splitlines()
            if "not found" in line
        ]
    assert missing == []


@pytest.mark.skipif(sys.platform != "linux", reason="offscreen Qt platform on Linux")
def test_desktop_app_starts_frozen(tmp_path: Path, softhsm: ProvisionedToken) -> None:
    """The window opens (offscreen) and stays up: Qt and its platform plugin load."""
    machine = tmp_path / "machine.toml"
    machine.write_text(
        f'pkcs11_module = "{softhsm.module_path}"\nlisten_at_launch = false\n', encoding="utf-8"
    )
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        HOME=str(tmp_path),
        XDG_RUNTIME_DIR=str(tmp_path),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    args = [str(EXE), "--config", str(machine), "--user-config", str(tmp_path / "user.toml")]
    args += ["--state-dir", str(tmp_path / "state")]
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(4)
        assert process.poll() is None, process.communicate()
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert (tmp_path / "state" / "logs" / "agent.log").is_file()  # it ran as far as its log
