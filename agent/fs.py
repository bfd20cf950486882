"""Filesystem access and the platform's names, injectable so that tests describe Windows on Linux.

``FileSystem`` is what the module check and the machine-file check read of the disk; the
helpers say which platform rules apply and read environment variables as each platform does.
"""

from __future__ import annotations

import ntpath
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


def _windows_owner_is_administrator(path: str) -> bool:  # pragma: no cover - Windows only
    """GetNamedSecurityInfoW's owner SID is BUILTIN\\Administrators or LocalSystem."""
    import ctypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    se_file_object, owner_security_information = 1, 0x1
    win_local_system_sid, win_builtin_administrators_sid = 22, 26
    owner = ctypes.c_void_p()
    descriptor = ctypes.c_void_p()
    status = advapi32.GetNamedSecurityInfoW(
        ctypes.c_wchar_p(path),
        se_file_object,
        owner_security_information,
        ctypes.byref(owner),
        None,
        None,
        None,
        ctypes.byref(descriptor),
    )
    if status != 0:
        return False
    try:
        return any(
            advapi32.IsWellKnownSid(owner, kind)
            for kind in (win_builtin_administrators_sid, win_local_system_sid)
        )
    finally:
        kernel32.LocalFree(descriptor)


@dataclass(frozen=True)
class FileStat:
    """What the module check needs of ``lstat``: the owner and the full mode (type + bits)."""

    uid: int
    mode: int


class FileSystem(Protocol):
    def exists(self, path: str) -> bool: ...

    def isfile(self, path: str) -> bool: ...

    def realpath(self, path: str) -> str: ...

    def lstat(self, path: str) -> FileStat:
        """Like os.lstat; raises OSError (FileNotFoundError when missing)."""
        ...

    def readlink(self, path: str) -> str: ...

    def owner_is_administrator(self, path: str) -> bool:
        """Windows: the file's owner is the Administrators group or SYSTEM."""
        ...


class RealFileSystem:
    """The machine's own filesystem."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def lstat(self, path: str) -> FileStat:
        st = os.lstat(path)
        return FileStat(uid=st.st_uid, mode=st.st_mode)

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def owner_is_administrator(self, path: str) -> bool:
        if sys.platform == "win32":
            return _windows_owner_is_administrator(path)
        return os.lstat(path).st_uid == 0


REAL_FS: FileSystem = RealFileSystem()


def is_windows(system: str) -> bool:
    return system == "win32" or system == "cygwin"


def env_get(env: Mapping[str, str], name: str, *, windows: bool) -> str | None:
    """An environment variable; Windows names are case-insensitive."""
    value = env.get(name)
    if value is None and windows:
        upper = name.upper()
        value = next((v for k, v in env.items() if k.upper() == upper), None)
    return value or None


def is_absolute(path: str, system: str) -> bool:
    if is_windows(system):
        drive, tail = ntpath.splitdrive(path)
        return bool(re.fullmatch(r"[A-Za-z]:", drive)) and tail[:1] in ("\\", "/")
    return path.startswith("/")
