"""A model of the two advapi32 calls (and kernel32's LocalFree) behind the Windows owner check.

``agent/fs.py``'s ``WindowsFileOwners`` calls them through ctypes with real ctypes objects; this
model receives those same objects and behaves as Windows documents the functions:

- ``GetNamedSecurityInfoW`` returns a Win32 error code (it does not set the last error): 2 for
  a missing file, 5 when the caller may not read the file's security; on success it writes a
  pointer to a newly allocated security descriptor, and the owner pointer points INTO it;
- ``ConvertSidToStringSidW`` returns a BOOL and writes a pointer to a newly allocated string;
  reading a SID whose descriptor was freed is a use after free (the model fails the test);
- ``LocalFree`` frees what those two allocated; freeing anything else, or twice, fails the test.

``leaks()`` lists what was allocated and not freed. Paths are case-insensitive, as on NTFS.
"""

from __future__ import annotations

import ctypes
import ntpath
from collections.abc import Mapping
from typing import Any

ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5

ADMINISTRATORS = "S-1-5-32-544"
SYSTEM = "S-1-5-18"
TRUSTED_INSTALLER = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
OFFICER = "S-1-5-21-1004336348-1177238915-682003330-1001"


def _address(value: Any) -> int | None:
    return ctypes.cast(value, ctypes.c_void_p).value


class FakeWindowsSecurity:
    """advapi32 and kernel32 for one machine: ``files`` maps a path to its owner SID, or to
    ``None`` when the caller is denied reading its security."""

    def __init__(self, files: Mapping[str, str | None]) -> None:
        self.files = {ntpath.normcase(path): owner for path, owner in files.items()}
        self._allocated: dict[int, tuple[str, Any]] = {}  # address -> (what, buffer)
        self._sids: dict[int, tuple[int, str]] = {}  # owner address -> (descriptor, SID)
        self.freed: list[str] = []
        self.advapi32 = self
        self.kernel32 = self

    def _allocate(self, what: str, size: int) -> tuple[int, Any]:
        buffer = ctypes.create_string_buffer(max(size, 1))
        address = ctypes.addressof(buffer)
        self._allocated[address] = (what, buffer)
        return address, buffer

    # --- advapi32 ---------------------------------------------------------------------

    def GetNamedSecurityInfoW(
        self,
        path: ctypes.c_wchar_p,
        object_type: int,
        information: int,
        owner: Any,
        group: Any,
        dacl: Any,
        sacl: Any,
        descriptor: Any,
    ) -> int:
        assert object_type == 1, "SE_FILE_OBJECT"
        assert information & 0x1, "OWNER_SECURITY_INFORMATION"
        key = ntpath.normcase(path.value or "")
        if key not in self.files:
            return ERROR_FILE_NOT_FOUND
        sid = self.files[key]
        if sid is None:
            return ERROR_ACCESS_DENIED
        start, _buffer = self._allocate("security descriptor", 64)
        owner_address = start + 20  # the owner SID lies inside the descriptor
        self._sids[owner_address] = (start, sid)
        owner.contents.value = owner_address
        descriptor.contents.value = start
        return 0

    def ConvertSidToStringSidW(self, sid: Any, text: Any) -> int:
        address = _address(sid)
        found = self._sids.get(address or 0)
        assert found is not None, "not a SID this model handed out"
        descriptor, value = found
        assert descriptor in self._allocated, "the SID was read after its descriptor was freed"
        buffer = ctypes.create_unicode_buffer(value)
        string = ctypes.addressof(buffer)
        self._allocated[string] = ("SID string", buffer)
        ctypes.cast(text, ctypes.POINTER(ctypes.c_void_p)).contents.value = string
        return 1

    # --- kernel32 ---------------------------------------------------------------------

    def LocalFree(self, memory: Any) -> int:
        address = _address(memory)
        assert address in self._allocated, f"LocalFree of memory not allocated here ({address})"
        what, _buffer = self._allocated.pop(address)
        self.freed.append(what)
        return 0

    def leaks(self) -> list[str]:
        return [what for what, _buffer in self._allocated.values()]


__all__ = [
    "ADMINISTRATORS",
    "OFFICER",
    "SYSTEM",
    "TRUSTED_INSTALLER",
    "FakeWindowsSecurity",
]
