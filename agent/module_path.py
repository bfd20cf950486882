"""Is a PKCS#11 module (or the machine file) safe to trust? The admin-owned path walk (threat 4).

The module is native code loaded into the agent: its path must be absolute, an existing
regular file, and inside folders only an administrator can change. On POSIX every folder,
link and the file on the way are checked one component at a time; on Windows the given and
the resolved path must lie in System32/SysWOW64 or Program Files.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
import re
import stat
import sys
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from kyso.agent.errors import AgentError
from kyso.agent.errors import config_error as _error
from kyso.agent.fs import REAL_FS, FileStat, FileSystem, env_get, is_absolute, is_windows

_MAX_SYMLINKS = 40  # as Linux's own limit when resolving a path


class _UnsafeFolder(AgentError):
    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.folder = folder


class _Missing(AgentError):
    pass


class _NotRegular(AgentError):
    pass


class _LinkLoop(AgentError):
    pass


def _require_admin_only(path: str, st: FileStat) -> None:
    if st.uid != 0 or st.mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _UnsafeFolder(path)


def _posix_walk(path: str, fs: FileSystem) -> str:
    """Resolve ``path`` one component at a time, checking every folder, link and the file.

    Everything the kernel would traverse to open the file must be root-owned and not writable by
    group or others; otherwise someone other than the administrator could swap the library (or a
    link or folder on its way) for their own. Returns the resolved path.
    """
    pending: deque[str] = deque(path.split("/"))
    current = "/"
    last = fs.lstat("/")
    _require_admin_only("/", last)
    links = 0
    while pending:
        name = pending.popleft()
        if name in ("", "."):
            continue
        if name == "..":
            current = posixpath.dirname(current)  # already checked on the way in
            last = fs.lstat(current)
            continue
        candidate = posixpath.join(current, name)
        try:
            st = fs.lstat(candidate)
        except FileNotFoundError:
            raise _Missing(candidate) from None
        except NotADirectoryError:
            raise _Missing(candidate) from None
        if stat.S_ISLNK(st.mode):
            # A link's own mode bits mean nothing; who owns it (and its folder) does.
            if st.uid != 0:
                raise _UnsafeFolder(candidate)
            links += 1
            if links > _MAX_SYMLINKS:
                raise _LinkLoop(candidate)
            target = fs.readlink(candidate)
            if target.startswith("/"):
                current = "/"
            pending.extendleft(reversed(target.split("/")))
            continue
        _require_admin_only(candidate, st)
        if pending and not stat.S_ISDIR(st.mode):
            raise _Missing(candidate)  # the kernel would answer ENOTDIR
        current, last = candidate, st
    if not stat.S_ISREG(last.mode):
        raise _NotRegular(current)
    return current


def _windows_roots(env: Mapping[str, str]) -> list[str]:
    """Folders where only administrators can create or change files.

    Under %SystemRoot% only System32 and SysWOW64 count: C:\\Windows\\Temp, \\Tasks, \\Tracing
    and a few System32 subfolders are writable by users (see ``_WINDOWS_USER_WRITABLE``).
    """
    roots: list[str] = []
    for name, default, subfolders in (
        ("SystemRoot", "C:\\Windows", ("System32", "SysWOW64")),
        ("ProgramFiles", "C:\\Program Files", ("",)),
        ("ProgramFiles(x86)", "C:\\Program Files (x86)", ("",)),
    ):
        base = env_get(env, name, windows=True) or default
        if not is_absolute(base, "win32") or base.startswith(("\\\\", "//")):
            continue  # a relative or network value cannot name a protected folder
        for sub in subfolders:
            roots.append(ntpath.normpath(ntpath.join(base, sub)) if sub else ntpath.normpath(base))
    return roots


# Subfolders of System32 / SysWOW64 where standard users can create files (AppLocker bypass lists).
_WINDOWS_USER_WRITABLE = (
    "Tasks",
    "Tasks_Migrated",
    "spool",
    "com\\dmp",
    "FxsTmp",
    "Microsoft\\Crypto\\RSA\\MachineKeys",
)


def _windows_allowed(path: str, roots: list[str]) -> bool:
    lowered = ntpath.normcase(path)
    for root in roots:
        prefix = ntpath.normcase(root).rstrip("\\") + "\\"
        if not lowered.startswith(prefix):
            continue
        rest = lowered[len(prefix) :]
        system_folder = ntpath.basename(ntpath.normcase(root)) in ("system32", "syswow64")
        user_writable = system_folder and any(
            rest.startswith(ntpath.normcase(sub) + "\\") for sub in _WINDOWS_USER_WRITABLE
        )
        return not user_writable
    return False


def _strip_extended_prefix(path: str) -> str:
    # Windows' realpath may answer \\?\C:\...; \\?\UNC\server\share stays a network path.
    if path.startswith("\\\\?\\") and re.match(r"[A-Za-z]:\\", path[4:]):
        return path[4:]
    return path


def _check_windows(path: str, fs: FileSystem, env: Mapping[str, str]) -> str:
    if path.startswith(("\\\\", "//")):
        raise _error("module_unc", path=path)
    if not is_absolute(path, "win32"):
        raise _error("module_not_absolute", path=path)
    roots = _windows_roots(env)
    allowed = ", ".join(roots)
    if ":" in ntpath.splitdrive(path)[1]:  # an alternate data stream is not a module file
        raise _error("module_not_file", path=path)
    given = ntpath.normpath(path)  # folds "..", so C:\Windows\..\Users\x is judged as C:\Users\x
    if not _windows_allowed(given, roots):
        raise _error("module_windows_location", path=path, allowed=allowed)
    if not fs.exists(given):
        raise _error("module_missing", path=path)
    resolved = _strip_extended_prefix(fs.realpath(given))
    if resolved.startswith(("\\\\", "//")):
        raise _error("module_unc", path=resolved)
    resolved = ntpath.normpath(resolved)
    if not _windows_allowed(resolved, roots):
        raise _error("module_windows_location", path=resolved, allowed=allowed)
    if not fs.isfile(resolved):
        raise _error("module_not_file", path=path)
    return resolved


def _check_posix(path: str, fs: FileSystem) -> str:
    if not path.startswith("/"):
        raise _error("module_not_absolute", path=path)
    try:
        resolved = _posix_walk(path, fs)
    except _Missing:
        raise _error("module_missing", path=path) from None
    except _NotRegular:
        raise _error("module_not_file", path=path) from None
    except _LinkLoop:
        raise _error("module_link_loop", path=path) from None
    except _UnsafeFolder as exc:
        raise _error("module_unsafe", path=path, folder=exc.folder) from None
    except OSError as exc:
        raise _error("module_missing", path=f"{path} ({exc.strerror or exc})") from None
    # The platform's own resolution must agree with the walk (else something changed under us).
    if fs.realpath(path) != resolved:
        raise _error("module_unsafe", path=path, folder=fs.realpath(path))
    return resolved


def check_module_path(
    path: str,
    *,
    system: str = sys.platform,
    fs: FileSystem = REAL_FS,
    env: Mapping[str, str] = os.environ,
) -> str:
    """Refuse a PKCS#11 module that a user (or malware running as the user) could have placed.

    POSIX: absolute, an existing regular file, and the file, each folder and each symlink on the
    way to it (symlinks resolved) root-owned and not writable by group or others. Windows:
    absolute, not a network or device path, and both the given and the resolved path inside
    %SystemRoot%\\System32 (or SysWOW64), %ProgramFiles% or %ProgramFiles(x86)%.

    Returns the resolved path, which is the one to load.
    """
    if is_windows(system):
        return _check_windows(path, fs, env)
    return _check_posix(path, fs)


def check_admin_owned_file(path: Path, fs: FileSystem) -> None:
    """The default machine file must be as protected as a module (POSIX): it says whom to trust."""
    try:
        _posix_walk(str(path), fs)
    except _UnsafeFolder as exc:
        raise _error("machine_config_unsafe", config=path, folder=exc.folder) from None
    except (_Missing, _LinkLoop, _NotRegular, OSError):
        raise _error("file_unreadable", config=path, error="not a regular file") from None
