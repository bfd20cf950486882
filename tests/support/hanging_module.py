"""A stuck USB token driver and a stuck keyring, for the "window never freezes" tests (issue 18).

``hanging_module`` compiles ``hanging_pkcs11.c`` with gcc once per session: a PKCS#11 module
whose C_GetSlotList and C_Login block while the file named by ``KYSO_HANG_GATE`` exists, and
whose C_Initialize blocks while the one named by ``KYSO_HANG_INIT_GATE`` exists. ``Gate`` holds
and releases one; the ``gate`` and ``init_gate`` fixtures are open at the start of each test.
``BlockingKeyring`` is a real keyring backend whose writes wait until released, like a keyring
daemon that shows an unlock prompt nobody answers.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

from support.memory_keyring import MemoryKeyring

SOURCE = Path(__file__).with_name("hanging_pkcs11.c")


class Gate:
    """While closed, the hanging module's C_GetSlotList and C_Login do not return."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def close(self) -> None:
        self.path.touch()

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def hanging_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled module (absolute path)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("a C compiler is needed to build the hanging PKCS#11 module (build-essential)")
    built = tmp_path_factory.mktemp("hanging-pkcs11") / "libkyso-hanging-pkcs11.so"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(built), str(SOURCE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return built


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """An open gate for this test (the module reads ``KYSO_HANG_GATE`` at every call)."""
    gate = Gate(tmp_path / "driver-stuck")
    monkeypatch.setenv("KYSO_HANG_GATE", str(gate.path))
    try:
        yield gate
    finally:
        gate.release()  # never leave a thread of the session blocked in the module


@pytest.fixture
def init_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """An open gate for the module's C_Initialize (``KYSO_HANG_INIT_GATE``)."""
    gate = Gate(tmp_path / "driver-initialize-stuck")
    monkeypatch.setenv("KYSO_HANG_INIT_GATE", str(gate.path))
    try:
        yield gate
    finally:
        gate.release()


class BlockingKeyring(MemoryKeyring):
    """A real keyring backend whose ``set_password`` waits until ``release()``."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.writing = threading.Event()  # a write is waiting

    def set_password(self, service: str, username: str, password: str) -> None:
        self.writing.set()
        self.released.wait(timeout=15)
        super().set_password(service, username, password)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def blocking_keyring() -> Iterator[BlockingKeyring]:
    previous = keyring.get_keyring()
    backend = BlockingKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        backend.release()
        keyring.set_keyring(previous)


def kyso_threads() -> list[str]:
    """The names of the agent's threads still alive (all start with ``kyso-``)."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("kyso-"))


__all__ = ["BlockingKeyring", "Gate", "kyso_threads"]
