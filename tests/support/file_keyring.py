"""A keyring backend for agent processes the tests start: a real KeyringBackend in a JSON file.

The in-memory keyring (``memory_keyring``) lives in the test's own process; an agent started as
a separate process, and started again, needs a keyring that outlives it. Select it with
``PYTHON_KEYRING_BACKEND=support.file_keyring.FileKeyring`` (``tests`` on ``PYTHONPATH``) and
``KYSO_TEST_KEYRING`` = the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keyring.backend


class FileKeyring(keyring.backend.KeyringBackend):
    """Passwords in the JSON file named by ``KYSO_TEST_KEYRING``."""

    priority = 1  # type: ignore[assignment]

    @property
    def _path(self) -> Path:
        return Path(os.environ["KYSO_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\n{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\n{username}"] = password
        self._path.write_text(json.dumps(data), encoding="utf-8")

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        data.pop(f"{service}\n{username}", None)
        self._path.write_text(json.dumps(data), encoding="utf-8")
