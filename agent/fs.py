"""Filesystem access and the platform's names, injectable so that tests describe Windows on Linux.

``FileSystem`` is what the module check and the machine-file check read of the disk; the
helpers say which platform rules apply and read environment variables as each platform does.
"""

from __future__ import annotations

import ctypes
import ntpath
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# The owners a machine file may have on Windows: only these can write where the MSI puts it.
ADMINISTRATORS_SID = "S-1-5-32-544"  # BUILTIN\Administrators
LOCAL_SYSTEM_SID = "S-1-5-18"  # NT AUTHORITY\SYSTEM
_SE_FILE_OBJECT = 1
_OWNER_SECURITY_INFORMATION = 0x1


class FileOwners(Protocol):
    """Who owns a file on Windows, as a string SID ("S-1-5-32-544"); OSError when unreadable."""

    def owner_sid(self, path: str) -> str: ...


class WindowsFileOwners:
    """``FileOwners`` through advapi32 (ctypes): GetNamedSecurityInfoW, ConvertSidToStringSidW.

    ``advapi32`` and ``kernel32`` are the DLLs (loaded on first use on Windows; tests pass models
    of them). Every buffer Windows allocates here is given back with LocalFree, and the owner
    SID, which points into the security descriptor, is read before the descriptor is freed.
    """

    def __init__(self, advapi32: Any | None = None, kernel32: Any | None = None) -> None:
        self._advapi32 = advapi32
        self._kernel32 = kernel32

    def _dlls(self) -> tuple[Any, Any]:
        if self._advapi32 is None or self._kernel32 is None:  # pragma: no cover - Windows only
            windll: Any = getattr(ctypes, "WinDLL")  # noqa: B009 - exists on Windows only
            self._advapi32 = windll("advapi32", use_last_error=True)
            self._kernel32 = windll("kernel32", use_last_error=True)
        return self._advapi32, self._kernel32

    def owner_sid(self, path: str) -> str:
        advapi32, kernel32 = self._dlls()
        owner = ctypes.c_void_p()
        descriptor = ctypes.c_void_p()
        status = advapi32.GetNamedSecurityInfoW(
            ctypes.c_wchar_p(path),
            _SE_FILE_OBJECT,
            _OWNER_SECURITY_INFORMATION,
            ctypes.pointer(owner),
            None,
            None,
            None,
            ctypes.pointer(descriptor),
        )
        if status != 0:  # a Win32 error code (2: not found, 5: access denied)
            raise OSError(0, f"GetNamedSecurityInfoW failed with Windows error {status}", path)
        try:
            text = ctypes.c_wchar_p()
            if not advapi32.ConvertSidToStringSidW(owner, ctypes.pointer(text)):
                raise OSError(0, "ConvertSidToStringSidW failed", path)
            try:
                return str(text.value)
            finally:
                kernel32.LocalFree(text)
        finally:
            kernel32.LocalFree(descriptor)


def owner_is_administrator(path: str, owners: FileOwners) -> bool:
    """The file's owner is the Administrators group or SYSTEM; an unreadable owner is not."""
    try:
        sid = owners.owner_sid(path)
    except OSError:
        return False
    return sid.upper() in (ADMINISTRATORS_SID, LOCAL_SYSTEM_SID)


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
    """The machine's own filesystem; ``owners`` answers who owns a file on Windows (tests
    describe Windows with a model of it)."""

    def __init__(self, owners: FileOwners | None = None) -> None:
        self._owners = owners

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
        if self._owners is not None:
            return owner_is_administrator(path, self._owners)
        if sys.platform == "win32":  # pragma: no cover - Windows only
            return owner_is_administrator(path, WindowsFileOwners())
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
