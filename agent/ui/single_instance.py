"""One desktop app per user: a second launch asks the running one to show its window.

A per-user local socket (a named pipe on Windows, a socket file on Linux and macOS) named after
the user: the first instance listens; a later launch connects, says "show" and exits.
"""

from __future__ import annotations

import getpass
import hashlib

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

SHOW = b"show\n"
CONNECT_TIMEOUT_MS = 500


def instance_name(user: str | None = None, extra: str = "") -> str:
    """The socket name for this user (hashed: user names may hold any character).

    ``extra`` tells apart instances run with another user config file (development, tests).
    """
    who = user if user is not None else getpass.getuser()
    digest = hashlib.sha256(f"{who}\0{extra}".encode()).hexdigest()
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
