"""Machine settings from the Windows registry: what the MSI's silent-install properties write.

``msiexec /i kyso-agent.msi PLATFORM_ORIGIN=... PLATFORM_KEY=... PKCS11_MODULE=... /qn`` stores
the three values under ``HKLM\\Software\\Kyso\\Agent`` (64-bit view): ``PlatformOrigin``,
``PlatformKey`` and ``Pkcs11Module`` (installer/kyso-agent.wxs says why the registry rather than
a TOML file). Only administrators can write HKLM, so these values are machine settings, with the
same weight as the machine file %ProgramData%\\Kyso\\agent.toml, and are merged with it:

- the registry's origin is added to the file's ``[[origins]]`` (the same origin twice is an
  error, as in the file);
- the module may be set in one place only (set in both: an error, so that nobody wonders which
  one the agent loads); its path is checked like any module (``check_module_path``);
- an empty value means "not set" (the MSI writes every value, empty when a property was not
  given).

``PlatformKey`` is the platform's manifest public key: a PEM, or only its base64 body on one line
(what fits on an msiexec command line). The registry is read through ``MachineRegistry`` so that
tests describe it on Linux; ``winreg`` is imported only on Windows.
"""

from __future__ import annotations

import importlib
import ntpath
import os
import re
import sys
import textwrap
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Final, Protocol

from kyso.agent.errors import ConfigError
from kyso.agent.origins import AllowedOrigin, load_manifest_key, normalise_origin

KEY: Final = "Software\\Kyso\\Agent"
DISPLAY_KEY: Final = f"HKLM\\{KEY}"
ORIGIN_VALUE: Final = "PlatformOrigin"
KEY_VALUE: Final = "PlatformKey"
MODULE_VALUE: Final = "Pkcs11Module"
_ERROR_NO_MORE_ITEMS: Final = 259
_MARKERS = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")


class MachineRegistry(Protocol):
    def values(self, key: str) -> Mapping[str, object] | None:
        """The values (name -> data) of ``HKEY_LOCAL_MACHINE\\key`` in the 64-bit view, or None
        when the key does not exist. Raises OSError when it cannot be read."""
        ...


class WindowsRegistry:
    """The machine's registry through ``winreg`` (imported on Windows; tests pass a model).

    Reads the 64-bit view whatever the process (the MSI is a 64-bit package and writes there);
    a ``REG_EXPAND_SZ`` value is expanded as Windows programs do (%SystemRoot% ...).
    """

    def __init__(self, winreg: ModuleType | Any | None = None) -> None:
        self._winreg = winreg

    def _module(self) -> Any:
        if self._winreg is not None:
            return self._winreg
        if os.name != "nt":
            raise OSError("the Windows registry exists on Windows only")
        return importlib.import_module("winreg")  # only on Windows

    def values(self, key: str) -> Mapping[str, object] | None:
        reg = self._module()
        access = reg.KEY_READ | reg.KEY_WOW64_64KEY
        try:
            handle = reg.OpenKey(reg.HKEY_LOCAL_MACHINE, key, 0, access)
        except FileNotFoundError:
            return None
        found: dict[str, object] = {}
        with handle:
            index = 0
            while True:
                try:
                    name, data, kind = reg.EnumValue(handle, index)
                except OSError as exc:
                    if getattr(exc, "winerror", None) == _ERROR_NO_MORE_ITEMS:
                        return found  # no more values
                    raise
                if kind == reg.REG_EXPAND_SZ and isinstance(data, str):
                    data = reg.ExpandEnvironmentStrings(data)
                found[str(name)] = data
                index += 1


def default_registry(system: str = sys.platform) -> MachineRegistry | None:
    return WindowsRegistry() if system == "win32" else None


def _error(name: str, **values: object) -> ConfigError:
    return ConfigError(f"winreg.{name}", registry_key=DISPLAY_KEY, **values)


def _text(values: Mapping[str, object], name: str) -> str:
    data = values.get(name.casefold())  # value names are case-insensitive in the registry
    if data is None:
        return ""
    if not isinstance(data, str):
        raise _error("not_text", value=name)
    return data.strip()


def pem_from_value(text: str) -> str:
    """A PEM public key from a PEM or from its base64 body alone (spaces and line breaks
    ignored)."""
    body = re.sub(r"\s+", "", _MARKERS.sub("", text))
    lines = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN PUBLIC KEY-----\n{lines}\n-----END PUBLIC KEY-----\n"


def registry_settings(registry: MachineRegistry) -> dict[str, Any]:
    """The settings the registry holds, validated: ``origins`` and/or ``pkcs11_module``."""
    try:
        values = registry.values(KEY)
    except OSError as exc:
        raise _error("unreadable", error=exc.strerror or exc) from None
    if not values:
        return {}
    folded = {str(name).casefold(): data for name, data in values.items()}
    origin, key, module = (_text(folded, n) for n in (ORIGIN_VALUE, KEY_VALUE, MODULE_VALUE))
    settings: dict[str, Any] = {}
    if bool(origin) != bool(key):
        raise _error("origin_without_key")
    if origin:
        normalised = normalise_origin(origin, config=DISPLAY_KEY)
        public_key = load_manifest_key(pem_from_value(key), origin=normalised, config=DISPLAY_KEY)
        settings["origins"] = (AllowedOrigin(normalised, public_key),)
    if module:
        drive, tail = ntpath.splitdrive(module)
        unc = module.startswith(("\\\\", "//"))
        if not unc and not (re.fullmatch(r"[A-Za-z]:", drive) and tail[:1] in ("\\", "/")):
            raise _error("module_relative", path=module)
        settings["pkcs11_module"] = module
    return settings


def apply_machine_registry(
    values: dict[str, Any], registry: MachineRegistry | None, *, config: object = ""
) -> dict[str, Any]:
    """The machine file's values with the registry's merged in (see the module docstring)."""
    if registry is None:
        return values
    settings = registry_settings(registry)
    merged = dict(values)
    if "origins" in settings:
        origins = tuple(values.get("origins", ()))
        for allowed in settings["origins"]:
            if any(o.origin == allowed.origin for o in origins):
                raise ConfigError("config.origin_duplicate", origin=allowed.origin, config=config)
            origins += (allowed,)
        merged["origins"] = origins
    if "pkcs11_module" in settings:
        file_module = values.get("pkcs11_module")
        if file_module is not None:
            raise _error(
                "module_twice", registry=settings["pkcs11_module"], config=config, file=file_module
            )
        merged["pkcs11_module"] = settings["pkcs11_module"]
    return merged
