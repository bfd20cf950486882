"""Hot-plug: notices tokens being inserted and removed, without importing pkcs11.

``PresenceMonitor`` polls the token layer's ``refresh_presence`` (C_GetSlotList with
tokenPresent and one C_GetTokenInfo per token: no session, no login) every ``interval`` seconds
on its own thread, and reads the certificate list (public objects only) when the set of tokens
changes. The PKCS#11 calls themselves run on the token layer's worker thread, serialised with
everything else the token does; during a batch the poll simply waits for the batch to finish.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kyso.agent.token.model import CertificateInfo, ModuleLoadError, Token, TokenError, TokenInfo

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.5  # seconds between two polls: a change is seen well within 2 s


@dataclass(frozen=True)
class TokenPresence:
    """The tokens in their slots and the certificates (with a key) on them, at one moment."""

    tokens: tuple[TokenInfo, ...] = ()
    certificates: tuple[CertificateInfo, ...] = ()

    @property
    def present(self) -> bool:
        return bool(self.tokens)


def _identity(tokens: list[TokenInfo]) -> frozenset[tuple[int, str, str, str]]:
    return frozenset((t.slot_id, t.manufacturer, t.serial, t.label) for t in tokens)


class PresenceMonitor:
    """Reports every change of the present tokens to ``on_change`` (on the monitor's thread).

    ``start()`` polls once on the calling thread and returns the first ``TokenPresence``
    (``on_change`` is not called for it); after that, ``on_change`` receives each new presence.
    """

    def __init__(
        self,
        token: Token,
        on_change: Callable[[TokenPresence], None],
        *,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._token = token
        self._on_change = on_change
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # start() and stop() may run on different threads
        self._started = False
        self._identity: frozenset[tuple[int, str, str, str]] | None = None
        self._failing = False
        self.presence = TokenPresence()

    def start(self) -> TokenPresence:
        with self._lock:
            if self._started:
                raise RuntimeError("the monitor is already running")
            self._started = True
        self._poll(notify=False)  # may wait long for a slow or stuck driver: not under the lock
        with self._lock:
            # stop() may come from another thread while the first poll waits: then no thread.
            if not self._stop.is_set():
                thread = threading.Thread(target=self._run, name="kyso-hotplug", daemon=True)
                thread.start()
                self._thread = thread
        return self.presence

    def stop(self) -> None:
        """Stops polling; callable from any thread, also while ``start()`` still polls."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._poll(notify=True)
            except ModuleLoadError:
                return  # the token layer was closed: nothing more to watch
            except Exception:
                log.exception("hot-plug poll failed")

    def _poll(self, *, notify: bool) -> None:
        try:
            tokens = self._token.refresh_presence()
        except ModuleLoadError:
            raise
        except TokenError as exc:
            if not self._failing:
                log.warning("cannot read the token slots: %s", exc)
            self._failing = True
            tokens = []
        else:
            self._failing = False
        identity = _identity(tokens)
        if identity == self._identity:
            return
        certificates: list[CertificateInfo] = []
        if tokens:
            try:
                certificates = self._token.list_certificates()
            except ModuleLoadError:
                raise
            except TokenError as exc:
                log.warning("cannot list the certificates of the inserted token: %s", exc)
        self._identity = identity
        self.presence = TokenPresence(tuple(tokens), tuple(certificates))
        log.info(
            "tokens now present: %s",
            ", ".join(f"{t.label!r} (slot {t.slot_id})" for t in tokens) or "none",
        )
        if notify and not self._stop.is_set():
            self._on_change(self.presence)
