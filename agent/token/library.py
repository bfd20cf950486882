"""One initialised PKCS#11 module per process, shared by every Pkcs11Token, and its lock."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pkcs11
from pkcs11 import exceptions as p11

from kyso.agent.token.model import ModuleLoadError

log = logging.getLogger(__name__)

# Held around every call a Pkcs11Token makes on its worker and around every re-initialisation:
# C_Finalize while another thread is inside the module is undefined behaviour (SoftHSM2 frees
# its state under the caller). Uncontended with the one Pkcs11Token of the shipped agent; it
# matters when tests (or the demo) re-initialise SoftHSM2 while a hot-plug monitor polls.
MODULE_LOCK = threading.RLock()


def reinitialize_module(lib: Any) -> None:
    """C_Finalize + C_Initialize of a python-pkcs11 ``lib``, never during another module call."""
    with MODULE_LOCK:
        lib.reinitialize()


_libraries_lock = threading.Lock()
_library_users: dict[str, int] = {}


def acquire_library(module_path: str) -> Any:
    """Loads and C_Initializes the module, shared by every Pkcs11Token of this process.

    PKCS#11 allows one C_Initialize per process and python-pkcs11 caches the loaded module by
    path, so the last user to close finalises it, not the first.
    """
    with _libraries_lock:
        try:
            lib = pkcs11.lib(module_path)
        except (p11.PKCS11Error, OSError) as exc:
            raise ModuleLoadError(f"cannot load PKCS#11 module {module_path}: {exc}") from exc
        _library_users[module_path] = _library_users.get(module_path, 0) + 1
        return lib


def release_library(module_path: str, lib: Any) -> None:
    with MODULE_LOCK, _libraries_lock:
        users = _library_users.get(module_path, 0) - 1
        if users > 0:
            _library_users[module_path] = users
            return
        _library_users.pop(module_path, None)
        try:
            lib.finalize()
        except p11.PKCS11Error as exc:
            log.warning("C_Finalize failed: %s", type(exc).__name__)
