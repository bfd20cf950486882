"""One desktop app per user: a second launch asks the running one to show its window.

A per-user local socket (a named pipe on Windows, a socket file on Linux and macOS) named after
the user: the first instance listens; a later launch connects, says "show" and exits.

On Windows the name also holds the logon session: named pipes are one namespace for the whole
machine, so the same officer signed in twice (console and Remote Desktop, or a switched user)
would otherwise have the second launch show the window in the other session, where nobody sees
it. The session comes from kernel32's ProcessIdToSessionId through ``WindowsSession``.
"""

from __future__ import annotations

import ctypes
import getpass
import hashlib
import logging
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

SHOW = b"show\n"
CONNECT_TIMEOUT_MS = 500


class WindowsSession:
    """The logon session of this process (kernel32 through ctypes; tests pass a model)."""

    def __init__(self, kernel32: Any | None = None) -> None:
        self._kernel32 = kernel32

    def session_id(self) -> int:
        """ProcessIdToSessionId(GetCurrentProcessId()); OSError when Windows refuses."""
        kernel32 = self._kernel32
        if kernel32 is None:  # pragma: no cover - Windows only
            windll: Any = getattr(ctypes, "WinDLL")  # noqa: B009 - exists on Windows only
            kernel32 = self._kernel32 = windll("kernel32", use_last_error=True)
        session = ctypes.c_ulong()
        if not kernel32.ProcessIdToSessionId(
            kernel32.GetCurrentProcessId(), ctypes.pointer(session)
        ):
            raise OSError(0, "ProcessIdToSessionId failed")
        return int(session.value)


def current_session(system: str = sys.platform, windows: WindowsSession | None = None) -> str:
    """The logon session's id on Windows; "" elsewhere (a socket file per user is enough)."""
    if system != "win32":
        return ""
    try:
        return str((windows or WindowsSession()).session_id())
    except OSError as exc:
        # One instance per user then, as before sessions counted: still never two per session.
        log.warning("cannot read the Windows session: %s", exc)
        return ""


def instance_name(user: str | None = None, extra: str = "", session: str | None = None) -> str:
    """The socket name for this user and logon session (hashed: names may hold any character).

    ``extra`` tells apart instances run with another user config file (development, tests);
    ``session`` defaults to ``current_session()``.
    """
    who = user if user is not None else getpass.getuser()
    where = session if session is not None else current_session()
    digest = hashlib.sha256(f"{who}\0{extra}\0{where}".encode()).hexdigest()
    return f"kyso-agent-{digest[:16]}"


def activate_running(name: str) -> bool:
    """Asks a running instance to show itself; True when there was one."""
    socket = QLocalSocket()
    socket.connectToServer(name)
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    socket.write(SHOW)
    socket.flush()
    socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    socket.disconnectFromServer()
    return True


class SingleInstance(QObject):
    """The first instance's listener; ``activated`` fires when a later launch asks to show."""

    activated = Signal()

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._connected)

    def listen(self) -> bool:
        if self.server.listen(self.name):
            return True
        # A socket file left by a crashed instance (POSIX): nobody answered, so take it over.
        QLocalServer.removeServer(self.name)
        return self.server.listen(self.name)

    def _connected(self) -> None:
        while (socket := self.server.nextPendingConnection()) is not None:
            # The other launch writes its one line right after connecting.
            if socket.bytesAvailable() or socket.waitForReadyRead(CONNECT_TIMEOUT_MS):
                request = bytes(socket.readAll().data())
            else:
                request = b""
            socket.abort()
            socket.deleteLater()
            if request.startswith(SHOW.strip()):
                self.activated.emit()

    def close(self) -> None:
        self.server.close()
