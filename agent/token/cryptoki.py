"""C_Login, C_Logout, C_SignInit and C_Sign through the PKCS#11 module's function table (ctypes).

C_Login/C_Logout go through the module's own function table on the session python-pkcs11
opened, rather than ``Token.open(user_pin=...)``: that call opens a session and logs in as one
step, so (1) a failed C_Login loses the session handle and the session stays open until
C_Finalize, and (2) nothing can be checked on the token before a PIN try is spent. The signing
loop calls C_SignInit and C_Sign straight from the table too (see ``Cryptoki``).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

from pkcs11 import exceptions as p11

from kyso.agent.token.model import Algorithm, ModuleLoadError

DIGEST_LENGTH = 32

_CK_ULONG = ctypes.c_ulong  # CK_ULONG is C `unsigned long` on every platform (32-bit on Windows)
_CKU_USER = 1
_CKU_CONTEXT_SPECIFIC = 2
_CKR_BUFFER_TOO_SMALL = 0x150
_CKM_RSA_PKCS = 0x0001
_CKM_RSA_PKCS_PSS = 0x000D
_CKM_ECDSA = 0x1041
_CKM_SHA256 = 0x0250
_CKG_MGF1_SHA256 = 0x0002
_LoginFunction = ctypes.CFUNCTYPE(_CK_ULONG, _CK_ULONG, _CK_ULONG, ctypes.c_void_p, _CK_ULONG)
_LogoutFunction = ctypes.CFUNCTYPE(_CK_ULONG, _CK_ULONG)

# CK_RV values C_Login/C_Logout return, as the python-pkcs11 errors the rest of this module maps.
_RV_ERRORS: dict[int, type[p11.PKCS11Error]] = {
    0x005: p11.GeneralError,
    0x006: p11.FunctionFailed,
    0x030: p11.DeviceError,
    0x031: p11.DeviceMemory,
    0x032: p11.DeviceRemoved,
    0x050: p11.FunctionCancelled,
    0x0A0: p11.PinIncorrect,
    0x0A1: p11.PinInvalid,
    0x0A2: p11.PinLenRange,
    0x0A3: p11.PinExpired,
    0x0A4: p11.PinLocked,
    0x0B0: p11.SessionClosed,
    0x060: p11.KeyHandleInvalid,
    0x070: p11.MechanismInvalid,
    0x071: p11.MechanismParamInvalid,
    0x082: p11.ObjectHandleInvalid,
    0x090: p11.OperationActive,
    0x091: p11.OperationNotInitialized,
    0x0B3: p11.SessionHandleInvalid,
    0x0E0: p11.TokenNotPresent,
    0x0E1: p11.TokenNotRecognised,
    0x100: p11.UserAlreadyLoggedIn,
    0x101: p11.UserNotLoggedIn,
    0x102: p11.UserPinNotInitialized,
    0x104: p11.AnotherUserAlreadyLoggedIn,
    0x105: p11.UserTooManyTypes,
}


class _CkVersion(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class _CkFunctionList(ctypes.Structure):
    """The head of CK_FUNCTION_LIST, up to C_Sign (the order is fixed by the standard)."""

    if sys.platform == "win32":
        _pack_ = 1  # Windows builds of cryptoki pack its structures to 1 byte
    _fields_ = (
        ("version", _CkVersion),
        *(
            (name, ctypes.c_void_p)
            for name in (
                "C_Initialize",
                "C_Finalize",
                "C_GetInfo",
                "C_GetFunctionList",
                "C_GetSlotList",
                "C_GetSlotInfo",
                "C_GetTokenInfo",
                "C_GetMechanismList",
                "C_GetMechanismInfo",
                "C_InitToken",
                "C_InitPIN",
                "C_SetPIN",
                "C_OpenSession",
                "C_CloseSession",
                "C_CloseAllSessions",
                "C_GetSessionInfo",
                "C_GetOperationState",
                "C_SetOperationState",
                "C_Login",
                "C_Logout",
                "C_CreateObject",
                "C_CopyObject",
                "C_DestroyObject",
                "C_GetObjectSize",
                "C_GetAttributeValue",
                "C_SetAttributeValue",
                "C_FindObjectsInit",
                "C_FindObjects",
                "C_FindObjectsFinal",
                "C_EncryptInit",
                "C_Encrypt",
                "C_EncryptUpdate",
                "C_EncryptFinal",
                "C_DecryptInit",
                "C_Decrypt",
                "C_DecryptUpdate",
                "C_DecryptFinal",
                "C_DigestInit",
                "C_Digest",
                "C_DigestUpdate",
                "C_DigestKey",
                "C_DigestFinal",
                "C_SignInit",
                "C_Sign",
            )
        ),
    )


class _CkMechanism(ctypes.Structure):
    if sys.platform == "win32":
        _pack_ = 1
    _fields_ = (
        ("mechanism", _CK_ULONG),
        ("parameter", ctypes.c_void_p),
        ("parameter_len", _CK_ULONG),
    )


class _CkRsaPkcsPssParams(ctypes.Structure):
    if sys.platform == "win32":
        _pack_ = 1
    _fields_ = (("hash_alg", _CK_ULONG), ("mgf", _CK_ULONG), ("salt_len", _CK_ULONG))


_SignInitFunction = ctypes.CFUNCTYPE(_CK_ULONG, _CK_ULONG, ctypes.POINTER(_CkMechanism), _CK_ULONG)
_SignFunction = ctypes.CFUNCTYPE(
    _CK_ULONG, _CK_ULONG, ctypes.c_char_p, _CK_ULONG, ctypes.c_void_p, ctypes.POINTER(_CK_ULONG)
)


class Cryptoki:
    """C_Login, C_Logout, C_SignInit and C_Sign on a session handle python-pkcs11 holds.

    The signing loop calls C_SignInit and C_Sign straight from the function table: two foreign
    calls per digest into a buffer of the exact size, where python-pkcs11's ``key.sign`` makes
    three (it asks C_Sign for the size first) and builds several Python objects. On SoftHSM this
    is about 13 % faster than python-pkcs11's own loop, which pays for streaming the results.
    """

    def __init__(self, module_path: str) -> None:
        # dlopen/LoadLibrary of an already loaded path returns that same instance, so these
        # functions act on the module state python-pkcs11 initialised.
        self._dll = ctypes.CDLL(module_path)
        get_function_list = self._dll.C_GetFunctionList
        get_function_list.restype = _CK_ULONG
        get_function_list.argtypes = (ctypes.POINTER(ctypes.POINTER(_CkFunctionList)),)
        table = ctypes.POINTER(_CkFunctionList)()
        rv = get_function_list(ctypes.byref(table))
        functions = table.contents if table else None
        if (
            rv != 0
            or functions is None
            or not all(
                (functions.C_Login, functions.C_Logout, functions.C_SignInit, functions.C_Sign)
            )
        ):
            raise ModuleLoadError(f"C_GetFunctionList failed (CKR 0x{rv:x})")
        self._login = _LoginFunction(functions.C_Login)
        self._logout = _LogoutFunction(functions.C_Logout)
        self._sign_init = _SignInitFunction(functions.C_SignInit)
        self._sign = _SignFunction(functions.C_Sign)

    def login(self, session_handle: int, pin: str) -> None:
        encoded = pin.encode("utf-8")
        buffer = ctypes.create_string_buffer(encoded, len(encoded))
        try:
            rv = int(self._login(session_handle, _CKU_USER, buffer, len(encoded)))
        finally:
            ctypes.memset(buffer, 0, len(encoded))  # best effort: our copy of the PIN
        if rv != 0:
            raise _RV_ERRORS.get(rv, p11.PKCS11Error)(f"C_Login: CKR 0x{rv:x}")

    def logout(self, session_handle: int) -> None:
        rv = int(self._logout(session_handle))
        if rv != 0:
            raise _RV_ERRORS.get(rv, p11.PKCS11Error)(f"C_Logout: CKR 0x{rv:x}")

    def signer(
        self,
        session_handle: int,
        key_handle: int,
        algorithm: Algorithm,
        size: int,
        context_pin: str | None,
    ) -> Callable[[bytes], bytes]:
        """One C_SignInit + C_Sign per call, with the batch's mechanism built once.

        ``context_pin`` is for CKA_ALWAYS_AUTHENTICATE keys: a context-specific C_Login between
        C_SignInit and C_Sign, as PKCS#11 requires for each signature.
        """
        params = _CkRsaPkcsPssParams(_CKM_SHA256, _CKG_MGF1_SHA256, DIGEST_LENGTH)
        if algorithm is Algorithm.RSA_PSS_SHA256:
            mechanism = _CkMechanism(
                _CKM_RSA_PKCS_PSS,
                ctypes.cast(ctypes.byref(params), ctypes.c_void_p),
                ctypes.sizeof(params),
            )
        elif algorithm is Algorithm.RSA_PKCS1_SHA256:
            mechanism = _CkMechanism(_CKM_RSA_PKCS, None, 0)
        else:
            mechanism = _CkMechanism(_CKM_ECDSA, None, 0)
        mechanism_ref = ctypes.byref(mechanism)
        output = ctypes.create_string_buffer(size)
        length = _CK_ULONG(size)
        length_ref = ctypes.byref(length)
        sign_init, sign, login = self._sign_init, self._sign, self._login
        string_at = ctypes.string_at
        pin = None if context_pin is None else context_pin.encode("utf-8")

        def fail(function: str, rv: int) -> p11.PKCS11Error:
            return _RV_ERRORS.get(rv, p11.PKCS11Error)(f"{function}: CKR 0x{rv:x}")

        # ``_keep`` holds the structures the mechanism points to for as long as it is used.
        def sign_one(data: bytes, _keep: object = (params, mechanism)) -> bytes:
            nonlocal output
            rv = sign_init(session_handle, mechanism_ref, key_handle)
            if rv:
                raise fail("C_SignInit", rv)
            if pin is not None:
                rv = login(session_handle, _CKU_CONTEXT_SPECIFIC, pin, len(pin))
                if rv:
                    raise fail("C_Login", rv)
            length.value = len(output)
            rv = sign(session_handle, data, len(data), output, length_ref)
            if rv == _CKR_BUFFER_TOO_SMALL:  # the operation stays active with a bigger buffer
                output = ctypes.create_string_buffer(length.value)
                rv = sign(session_handle, data, len(data), output, length_ref)
            if rv:
                raise fail("C_Sign", rv)
            return string_at(output, length.value)

        return sign_one
