"""``kyso-agent --self-test`` from source, against SoftHSM: the same run CI makes on the bundle.

Most cases run in this process (the session's SoftHSM module is shared, as two Pkcs11Token
instances share it); one runs the real command line in a child process.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kyso.agent import selftest
from kyso.agent.cli import build_parser
from kyso.agent.token.softhsm import KeySpec, ProvisionedToken

PIN = "123456"


def _machine_config(tmp_path: Path, module: str, extra: str = "") -> Path:
    path = tmp_path / "machine.toml"
    path.write_text(f'pkcs11_module = "{module}"\n{extra}', encoding="utf-8")
    return path


def _run(
    tmp_path: Path,
    config: Path,
    env: dict[str, str],
    *,
    language: str = "en",
    terminal: bool = False,
    typed: str = "",
) -> tuple[int, str]:
    user = tmp_path / "user.toml"
    state = tmp_path / "state"
    args = build_parser().parse_args(
        [
            "--self-test",
            "--config",
            str(config),
            "--user-config",
            str(user),
            "--state-dir",
            str(state),
            "--language",
            language,
        ]
    )
    out = io.StringIO()
    code = selftest.run_self_test(
        args, env=env, out=out, read_secret=lambda _prompt: typed, stdin_is_terminal=terminal
    )
    return code, out.getvalue()


@pytest.mark.parametrize("name", ["p256", "p384", "rsa"])
def test_passes_signing_and_verifying_with_each_algorithm(
    tmp_path: Path, softhsm: ProvisionedToken, name: str
) -> None:
    certificate = softhsm.certificates[name]
    config = _machine_config(tmp_path, softhsm.module_path)
    env = {
        selftest.PIN_ENV: softhsm.user_pin,
        selftest.CERTIFICATE_ENV: certificate.fingerprint_sha256,
    }
    code, out = _run(tmp_path, config, env)
    assert code == selftest.EXIT_OK, out
    algorithms = ["RSA_PKCS1_SHA256", "RSA_PSS_SHA256"] if name == "rsa" else ["ECDSA_SHA256"]
    for algorithm in algorithms:
        assert f"5 digests signed with {algorithm}" in out
    assert out.count("[OK] signature check: 5 signatures match") == len(algorithms)
    assert "[OK] refusing an unknown page" in out
    assert out.rstrip().endswith("Self-test passed: the signing agent works on this computer.")


def test_installed_configuration_is_neither_used_nor_changed(
    tmp_path: Path, softhsm: ProvisionedToken
) -> None:
    """The installed origin is not allowed by the self-test's server, and nothing is written."""
    from support.platform_keys import ManifestIssuer

    installed = ManifestIssuer("https://tiemchung.example.vn")
    extra = (
        '[[origins]]\norigin = "https://tiemchung.example.vn"\n'
        f'manifest_key = """{installed.public_pem}"""\n'
    )
    config = _machine_config(tmp_path, softhsm.module_path, extra)
    before = config.read_bytes()
    env = {
        selftest.PIN_ENV: softhsm.user_pin,
        selftest.CERTIFICATE_ENV: softhsm.certificates["p256"].fingerprint_sha256,
    }
    code, out = _run(tmp_path, config, env, language="vi")
    assert code == selftest.EXIT_OK, out
    assert "[ĐẠT] kiểm tra chữ ký" in out
    assert config.read_bytes() == before
    assert not (tmp_path / "user.toml").exists()
    assert not (tmp_path / "state").exists()  # used batch ids went to a temporary folder


def test_wrong_pin_is_named_and_not_retried(
    tmp_path: Path, fresh_softhsm: Callable[..., ProvisionedToken]
) -> None:
    """An RSA certificate is tested with two algorithms: the first refusal ends the run, so a
    wrong PIN is tried once (a second try would count towards locking the token)."""
    provisioned = fresh_softhsm(keys=(KeySpec("rsa", "RSA", 2048),))
    config = _machine_config(tmp_path, provisioned.module_path)
    env = {
        selftest.PIN_ENV: "000000",
        selftest.CERTIFICATE_ENV: provisioned.certificates["rsa"].fingerprint_sha256,
    }
    code, out = _run(tmp_path, config, env)
    assert code == selftest.EXIT_SIGNING, out
    assert out.count("[FAILED] test signing") == 1
    assert "[OK] test signing" not in out
    assert "RSA_PKCS1_SHA256" in out
    assert "RSA_PSS_SHA256" not in out
    assert "PIN_INCORRECT" in out
    assert "exit code 13" in out


def test_no_pin_without_a_terminal(tmp_path: Path, softhsm: ProvisionedToken) -> None:
    config = _machine_config(tmp_path, softhsm.module_path)
    env = {selftest.CERTIFICATE_ENV: softhsm.certificates["p256"].fingerprint_sha256}
    code, out = _run(tmp_path, config, env)
    assert code == selftest.EXIT_NO_PIN, out
    assert "KYSO_SELFTEST_PIN" in out


def test_pin_typed_on_a_terminal(tmp_path: Path, softhsm: ProvisionedToken) -> None:
    config = _machine_config(tmp_path, softhsm.module_path)
    env = {selftest.CERTIFICATE_ENV: softhsm.certificates["p256"].fingerprint_sha256}
    code, out = _run(tmp_path, config, env, terminal=True, typed=softhsm.user_pin)
    assert code == selftest.EXIT_OK, out
    assert "[OK] PIN: PIN given (typed)" in out


def test_unknown_certificate(tmp_path: Path, softhsm: ProvisionedToken) -> None:
    config = _machine_config(tmp_path, softhsm.module_path)
    env = {selftest.PIN_ENV: PIN, selftest.CERTIFICATE_ENV: "ab" * 32}
    code, out = _run(tmp_path, config, env)
    assert code == selftest.EXIT_NO_CERTIFICATE, out
    assert "[FAILED] certificates" in out


def test_certificate_of_another_key_fails(tmp_path: Path, softhsm: ProvisionedToken) -> None:
    """A certificate whose public key is not the token key's: the batch never passes."""
    config = _machine_config(tmp_path, softhsm.module_path)
    env = {
        selftest.PIN_ENV: softhsm.user_pin,
        selftest.CERTIFICATE_ENV: softhsm.certificates["mismatch_ec"].fingerprint_sha256,
    }
    code, out = _run(tmp_path, config, env)
    assert code in (selftest.EXIT_SIGNING, selftest.EXIT_VERIFY), out
    assert "Self-test FAILED" in out


def test_configuration_problem(tmp_path: Path) -> None:
    config = tmp_path / "machine.toml"
    config.write_text("port = 80\n", encoding="utf-8")
    code, out = _run(tmp_path, config, {})
    assert code == selftest.EXIT_CONFIG, out
    assert "[FAILED] configuration" in out


def test_module_outside_admin_folders(tmp_path: Path) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"\x7fELF")
    code, out = _run(tmp_path, _machine_config(tmp_path, str(fake)), {})
    assert code == selftest.EXIT_CONFIG, out
    assert "[FAILED] token driver" in out


def test_command_line_in_a_child_process(tmp_path: Path, softhsm: ProvisionedToken) -> None:
    """The real entry point, the PIN from the environment, the driver from the machine file."""
    config = _machine_config(tmp_path, softhsm.module_path)
    env = dict(
        os.environ,
        KYSO_SELFTEST_PIN=softhsm.user_pin,
        KYSO_SELFTEST_CERTIFICATE=softhsm.certificates["rsa"].fingerprint_sha256,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kyso.agent.cli",
            "--self-test",
            "--config",
            str(config),
            "--user-config",
            str(tmp_path / "user.toml"),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Tự kiểm tra đạt" in done.stdout  # Vietnamese by default
    assert done.stdout.count("[ĐẠT] kiểm tra chữ ký") == 2  # PKCS#1 v1.5 and PSS


def test_two_tokens_need_a_choice_and_no_pin_is_tried(
    tmp_path: Path,
    softhsm: ProvisionedToken,
    fresh_softhsm: Callable[..., ProvisionedToken],
) -> None:
    """One PIN is typed once: with two tokens inserted the self-test asks which one instead of
    trying that PIN on both (a wrong try spent on a token it was not typed for)."""
    fresh_softhsm(label="Kyso Second", user_pin="999999")
    config = _machine_config(tmp_path, softhsm.module_path)
    prompts: list[str] = []
    args = build_parser().parse_args(
        [
            "--self-test",
            "--config",
            str(config),
            "--user-config",
            str(tmp_path / "u.toml"),
            "--state-dir",
            str(tmp_path / "state"),
            "--language",
            "en",
        ]
    )
    out = io.StringIO()

    def typed(prompt: str) -> str:
        prompts.append(prompt)
        return softhsm.user_pin

    code = selftest.run_self_test(args, env={}, out=out, read_secret=typed, stdin_is_terminal=True)
    assert code == selftest.EXIT_NO_CERTIFICATE, out.getvalue()
    assert "several USB tokens are inserted" in out.getvalue()
    assert selftest.CERTIFICATE_ENV in out.getvalue()
    assert prompts == []  # no PIN asked, none tried


# --- every exit code IT may read back from the installed self-test (issue 18) ----------------
# kyso-agent-cli.exe --self-test: the admin guide lists these codes; each is reached here
# through the real run, with only the failing piece replaced by what it does when it fails.


def _a_system_library_that_is_no_pkcs11_module() -> str:
    """An admin-owned shared library with no C_GetFunctionList (zlib): it passes the module
    path check, and the driver load then fails as a wrong or broken driver does."""
    for candidate in (
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/aarch64-linux-gnu/libz.so.1",
    ):
        if os.path.exists(candidate):
            return os.path.realpath(candidate)
    pytest.skip("no system zlib to stand in for a broken driver")


def test_a_driver_that_does_not_load(tmp_path: Path) -> None:
    config = _machine_config(tmp_path, _a_system_library_that_is_no_pkcs11_module())
    code, out = _run(tmp_path, config, {})
    assert code == selftest.EXIT_MODULE == 4, out
    assert "[FAILED] token driver" in out


def test_a_driver_that_does_not_load_exits_4_from_the_command_line(tmp_path: Path) -> None:
    config = _machine_config(tmp_path, _a_system_library_that_is_no_pkcs11_module())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kyso.agent.cli",
            "--self-test",
            "--config",
            str(config),
            "--user-config",
            str(tmp_path / "user.toml"),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == selftest.EXIT_MODULE, done.stdout + done.stderr


def test_a_server_that_cannot_listen(
    tmp_path: Path, softhsm: ProvisionedToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What Windows answers when security software forbids the loopback port: WSAEACCES.
    def refused(self: object) -> int:
        raise OSError(13, "An attempt was made to access a socket in a way forbidden (10013)")

    monkeypatch.setattr(selftest.ServerThread, "start", refused)
    env = {selftest.PIN_ENV: softhsm.user_pin}
    code, out = _run(tmp_path, _machine_config(tmp_path, softhsm.module_path), env)
    assert code == selftest.EXIT_SERVER == 3, out
    assert "10013" in out


def test_an_agent_that_lets_an_unknown_page_in(
    tmp_path: Path, softhsm: ProvisionedToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "unknown" page is the self-test's own allowed origin: the handshake succeeds.
    monkeypatch.setattr(selftest, "UNKNOWN_ORIGIN", selftest.SELFTEST_ORIGIN)
    env = {selftest.PIN_ENV: softhsm.user_pin}
    code, out = _run(tmp_path, _machine_config(tmp_path, softhsm.module_path), env)
    assert code == selftest.EXIT_CONNECTION == 12, out
    assert "HTTP 101" in out


def test_a_signature_that_does_not_verify(
    tmp_path: Path, softhsm: ProvisionedToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The platform's check, on a signature with one bit flipped on the way.
    real = selftest.verify_signature

    def on_a_damaged_signature(der: bytes, algorithm: str, digest: bytes, sig: bytes) -> bool:
        return real(der, algorithm, digest, bytes([sig[0] ^ 1]) + sig[1:])

    monkeypatch.setattr(selftest, "verify_signature", on_a_damaged_signature)
    env = {
        selftest.PIN_ENV: softhsm.user_pin,
        selftest.CERTIFICATE_ENV: softhsm.certificates["p256"].fingerprint_sha256,
    }
    code, out = _run(tmp_path, _machine_config(tmp_path, softhsm.module_path), env)
    assert code == selftest.EXIT_VERIFY == 14, out
    assert "[FAILED] signature check" in out
