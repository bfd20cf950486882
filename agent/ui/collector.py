"""Python's cycle collector, run on the Qt thread only.

CPython runs an automatic collection in whichever thread happens to allocate when a
generation's threshold is crossed: in the agent that may be the asyncio loop's thread or the
token's worker. A Qt object found in a reference cycle there is destroyed outside the thread
that owns it, which can crash the process (a segmentation fault seen in the desktop tests, with
"Garbage-collecting" on the asyncio thread). So, while the app runs, automatic collection is off
and a timer on the Qt thread collects with the same thresholds CPython would use.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500


class GuiThreadCollector(QObject):
    """Turns automatic collection off and collects on a timer of the Qt thread until
    ``stop()`` (which turns it back on)."""

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start(interval_ms)

    def collect_due(self) -> int:
        """Collects the generations whose thresholds are crossed, as CPython would; returns
        the generation collected, or -1 when none was due."""
        first, second, third = self._thresholds
        young, middle, old = gc.get_count()
        if young < first:
            return -1
        generation = 0
        if middle >= second:
            generation = 2 if old >= third else 1
        gc.collect(generation)
        return generation

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()
