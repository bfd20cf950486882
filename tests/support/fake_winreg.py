"""A reference model of the Windows registry behind the ``winreg`` module, for tests on Linux.

Not a yes-stub: it keeps what the agent's registry adapters depend on and gets wrong most
easily on a real PC, as Windows does it:

- a tree per root (HKEY_LOCAL_MACHINE, HKEY_CURRENT_USER); key and value names are
  case-insensitive and keep the case they were created with;
- the registry views of a 64-bit process: under ``HKLM\\Software`` the 32-bit view
  (``KEY_WOW64_32KEY``, or any access from a 32-bit process) is ``Software\\WOW6432Node``; HKCU
  is shared by both views;
- access rights: a handle can only do what it was opened for (``KEY_QUERY_VALUE`` to read,
  ``KEY_SET_VALUE`` to write, ``KEY_CREATE_SUB_KEY`` to create); HKLM is writable by
  administrators only, HKCU by its user; a key can deny reading to the user (``deny_read``);
- the errors winreg raises: FileNotFoundError for a missing key or value, PermissionError for
  access denied, OSError for a closed handle and ERROR_NO_MORE_ITEMS at the end of EnumValue;
- value types as stored: REG_SZ and REG_EXPAND_SZ are str, REG_DWORD an int, REG_BINARY bytes,
  REG_MULTI_SZ a list of str; ``SetValueEx`` refuses data of the wrong Python type (ValueError,
  as winreg does).

Only the functions the agent uses are modelled (OpenKey/OpenKeyEx, CreateKeyEx, QueryValueEx,
SetValueEx, DeleteValue, EnumValue, CloseKey, ExpandEnvironmentStrings).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HKEY_CURRENT_USER = 0x80000001
HKEY_LOCAL_MACHINE = 0x80000002

KEY_QUERY_VALUE = 0x0001
KEY_SET_VALUE = 0x0002
KEY_CREATE_SUB_KEY = 0x0004
KEY_ENUMERATE_SUB_KEYS = 0x0008
KEY_NOTIFY = 0x0010
KEY_WOW64_64KEY = 0x0100
KEY_WOW64_32KEY = 0x0200
READ_CONTROL = 0x20000
KEY_READ = READ_CONTROL | KEY_QUERY_VALUE | KEY_ENUMERATE_SUB_KEYS | KEY_NOTIFY
KEY_WRITE = READ_CONTROL | KEY_SET_VALUE | KEY_CREATE_SUB_KEY
KEY_ALL_ACCESS = 0xF003F

REG_SZ = 1
REG_EXPAND_SZ = 2
REG_BINARY = 3
REG_DWORD = 4
REG_MULTI_SZ = 7

ERROR_NO_MORE_ITEMS = 259
ERROR_INVALID_HANDLE = 6

_ROOT_NAMES = {HKEY_CURRENT_USER: "HKEY_CURRENT_USER", HKEY_LOCAL_MACHINE: "HKEY_LOCAL_MACHINE"}
_TYPES: dict[int, type | tuple[type, ...]] = {
    REG_SZ: str,
    REG_EXPAND_SZ: str,
    REG_DWORD: int,
    REG_BINARY: (bytes, bytearray),
    REG_MULTI_SZ: list,
}


def _windows_error(kind: type[OSError], code: int, winerror: int, text: str, what: object) -> Any:
    # On Windows, winreg's errors carry the Win32 code in ``winerror``; Python sets it only
    # there, so the model sets it by hand.
    error = kind(code, text, what)
    error.winerror = winerror  # type: ignore[attr-defined]
    return error


def _missing(what: str) -> FileNotFoundError:
    return _windows_error(
        FileNotFoundError, errno.ENOENT, 2, "The system cannot find the file specified", what
    )


def _denied(what: str) -> PermissionError:
    return _windows_error(PermissionError, errno.EACCES, 5, "Access is denied", what)


def _bad_handle(what: object) -> OSError:
    return _windows_error(OSError, errno.EBADF, ERROR_INVALID_HANDLE, "The handle is invalid", what)


@dataclass
class _Node:
    name: str
    keys: dict[str, _Node] = field(default_factory=dict)  # casefolded name -> node
    values: dict[str, tuple[str, object, int]] = field(default_factory=dict)  # -> (name, data, t)
    deny_read: bool = False

    def child(self, name: str) -> _Node | None:
        return self.keys.get(name.casefold())


class FakeKey:
    """An open key handle: the node, the rights it was opened with, and whether it is open."""

    def __init__(self, node: _Node, access: int, writable: bool, path: str) -> None:
        self._node: _Node | None = node
        self.access = access
        self.writable = writable  # the caller's rights on this key (admin on HKLM, user on HKCU)
        self.path = path

    def node(self) -> _Node:
        if self._node is None:
            raise _bad_handle(self.path)
        return self._node

    def Close(self) -> None:
        self._node = None

    @property
    def closed(self) -> bool:
        return self._node is None

    def __enter__(self) -> FakeKey:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.Close()


class FakeWinreg:
    """The ``winreg`` module over a model registry; ``administrator`` is the caller's token.

    ``process_bits`` is the calling process's bitness (the agent is a 64-bit program): a 32-bit
    process sees the 32-bit view of HKLM\\Software unless it asks for KEY_WOW64_64KEY.
    """

    HKEY_CURRENT_USER = HKEY_CURRENT_USER
    HKEY_LOCAL_MACHINE = HKEY_LOCAL_MACHINE
    KEY_QUERY_VALUE = KEY_QUERY_VALUE
    KEY_SET_VALUE = KEY_SET_VALUE
    KEY_CREATE_SUB_KEY = KEY_CREATE_SUB_KEY
    KEY_ENUMERATE_SUB_KEYS = KEY_ENUMERATE_SUB_KEYS
    KEY_READ = KEY_READ
    KEY_WRITE = KEY_WRITE
    KEY_ALL_ACCESS = KEY_ALL_ACCESS
    KEY_WOW64_64KEY = KEY_WOW64_64KEY
    KEY_WOW64_32KEY = KEY_WOW64_32KEY
    REG_SZ = REG_SZ
    REG_EXPAND_SZ = REG_EXPAND_SZ
    REG_BINARY = REG_BINARY
    REG_DWORD = REG_DWORD
    REG_MULTI_SZ = REG_MULTI_SZ

    def __init__(
        self,
        *,
        administrator: bool = False,
        process_bits: int = 64,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.administrator = administrator
        self.process_bits = process_bits
        self.environment = dict(environment or {"SystemRoot": "C:\\Windows"})
        self._roots = {root: _Node(name) for root, name in _ROOT_NAMES.items()}
        self.opened: list[FakeKey] = []

    # --- setting up the machine (what an installer or the administrator did) --------------

    def put(
        self, root: int, path: str, name: str, data: object, kind: int = REG_SZ, *, bits: int = 64
    ) -> None:
        """Writes a value as an administrator would (e.g. the MSI), in the given view."""
        node = self._walk(root, path, bits, create=True)
        node.values[name.casefold()] = (name, data, kind)

    def deny_read(self, root: int, path: str, *, bits: int = 64) -> None:
        """The key's ACL refuses reading to the (non-administrator) caller."""
        self._walk(root, path, bits, create=True).deny_read = True

    def stored(self, root: int, path: str, *, bits: int = 64) -> dict[str, tuple[object, int]]:
        """The values of a key (name as created -> (data, type)); {} when it does not exist."""
        try:
            node = self._walk(root, path, bits, create=False)
        except FileNotFoundError:
            return {}
        return {name: (data, kind) for name, data, kind in node.values.values()}

    # --- the model --------------------------------------------------------------------

    def _view_path(self, root: int, path: str, bits: int) -> list[str]:
        parts = [p for p in re.split(r"\\+", path) if p]
        redirected = root == HKEY_LOCAL_MACHINE and bits == 32
        software = bool(parts) and parts[0].casefold() == "software"
        already = len(parts) > 1 and parts[1].casefold() == "wow6432node"
        if redirected and software and not already:
            parts.insert(1, "WOW6432Node")
        return parts

    def _walk(self, root: int, path: str, bits: int, *, create: bool) -> _Node:
        if root not in self._roots:
            raise _bad_handle(root)
        node = self._roots[root]
        for part in self._view_path(root, path, bits):
            child = node.child(part)
            if child is None:
                if not create:
                    raise _missing(path)
                child = node.keys[part.casefold()] = _Node(part)
            node = child
        return node

    def _bits(self, access: int) -> int:
        if access & KEY_WOW64_64KEY:
            return 64
        if access & KEY_WOW64_32KEY:
            return 32
        return self.process_bits

    def _writable(self, root: int) -> bool:
        return root == HKEY_CURRENT_USER or self.administrator

    def _root_of(self, key: int | FakeKey) -> tuple[int, _Node, str]:
        if isinstance(key, FakeKey):
            machine = key.path.startswith("HKEY_LOCAL_MACHINE")
            return (HKEY_LOCAL_MACHINE if machine else HKEY_CURRENT_USER), key.node(), key.path
        if key not in self._roots:
            raise _bad_handle(key)
        return key, self._roots[key], _ROOT_NAMES[key]

    def _open(self, key: int | FakeKey, sub_key: str, access: int, *, create: bool) -> FakeKey:
        root, _base, base_path = self._root_of(key)
        if isinstance(key, FakeKey):
            node = key.node()
            for part in (p for p in re.split(r"\\+", sub_key) if p):
                child = node.child(part)
                if child is None:
                    if not create:
                        raise _missing(sub_key)
                    child = node.keys[part.casefold()] = _Node(part)
                node = child
        else:
            if create and not self._writable(root):
                try:
                    node = self._walk(root, sub_key, self._bits(access), create=False)
                except FileNotFoundError:
                    raise _denied(sub_key) from None  # no right to create keys there
            else:
                node = self._walk(root, sub_key, self._bits(access), create=create)
        writable = self._writable(root)
        wants_write = access & (KEY_SET_VALUE | KEY_CREATE_SUB_KEY)
        if wants_write and not writable:
            raise _denied(sub_key)
        if access & KEY_QUERY_VALUE and node.deny_read and not self.administrator:
            raise _denied(sub_key)
        handle = FakeKey(node, access, writable, f"{base_path}\\{sub_key}")
        self.opened.append(handle)
        return handle

    # --- winreg's functions ------------------------------------------------------------

    def OpenKey(
        self, key: int | FakeKey, sub_key: str, reserved: int = 0, access: int = KEY_READ
    ) -> FakeKey:
        return self._open(key, sub_key, access, create=False)

    OpenKeyEx = OpenKey

    def CreateKeyEx(
        self, key: int | FakeKey, sub_key: str, reserved: int = 0, access: int = KEY_WRITE
    ) -> FakeKey:
        return self._open(key, sub_key, access, create=True)

    def CloseKey(self, key: FakeKey) -> None:
        key.Close()

    def QueryValueEx(self, key: FakeKey, name: str) -> tuple[object, int]:
        node = key.node()
        if not key.access & KEY_QUERY_VALUE:
            raise _denied(name)
        found = node.values.get(name.casefold())
        if found is None:
            raise _missing(name)
        return found[1], found[2]

    def EnumValue(self, key: FakeKey, index: int) -> tuple[str, object, int]:
        node = key.node()
        if not key.access & KEY_QUERY_VALUE:
            raise _denied(key.path)
        entries = list(node.values.values())
        if index >= len(entries):
            raise _windows_error(
                OSError, errno.EINVAL, ERROR_NO_MORE_ITEMS, "No more data is available", None
            )
        return entries[index]

    def SetValueEx(self, key: FakeKey, name: str, reserved: int, kind: int, value: object) -> None:
        node = key.node()
        if not key.access & KEY_SET_VALUE:
            raise _denied(name)
        expected = _TYPES.get(kind)
        if expected is None or not isinstance(value, expected):
            raise ValueError(f"Could not convert the data to the specified type ({kind})")
        node.values[name.casefold()] = (name, value, kind)

    def DeleteValue(self, key: FakeKey, name: str) -> None:
        node = key.node()
        if not key.access & KEY_SET_VALUE:
            raise _denied(name)
        if node.values.pop(name.casefold(), None) is None:
            raise _missing(name)

    def ExpandEnvironmentStrings(self, text: str) -> str:
        lowered = {k.casefold(): v for k, v in self.environment.items()}

        def value(match: re.Match[str]) -> str:
            return lowered.get(match.group(1).casefold(), match.group(0))

        return re.sub(r"%([^%]+)%", value, text)


def all_closed(reg: FakeWinreg) -> bool:
    """Every handle the code opened was closed (a leaked HKLM handle is a real bug)."""
    return all(key.closed for key in reg.opened)


__all__ = ["FakeKey", "FakeWinreg", "all_closed"]
