"""Cycles are collected on the Qt thread only while the app runs (agent/ui/collector.py)."""

from __future__ import annotations

import gc
import threading
import weakref

from pytestqt.qtbot import QtBot

from kyso.agent.ui.collector import GuiThreadCollector


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_automatic_collection_is_off_and_the_qt_thread_collects(
    qtbot: QtBot, collector_on_the_qt_thread: GuiThreadCollector
) -> None:
    assert not gc.isenabled()
    collected_in: list[str] = []

    def note(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            collected_in.append(threading.current_thread().name)

    node = _Node()
    gone = weakref.ref(node)
    del node
    # Allocations in another thread cross the thresholds but collect nothing there.
    worker = threading.Thread(target=lambda: [_Node() for _ in range(5_000)], name="not-qt")
    gc.callbacks.append(note)
    try:
        worker.start()
        worker.join()
        assert "not-qt" not in collected_in
        qtbot.waitUntil(lambda: gone() is None, timeout=5_000)
    finally:
        gc.callbacks.remove(note)
    assert collected_in
    assert set(collected_in) == {threading.main_thread().name}


def test_the_generation_due_is_collected() -> None:
    collector = GuiThreadCollector(interval_ms=60_000)
    try:
        gc.collect()
        assert collector.collect_due() == -1  # nothing allocated since
        first = gc.get_threshold()[0]
        keep = [_Node() for _ in range(first + 10)]
        assert collector.collect_due() >= 0
        del keep
    finally:
        collector.stop()
        collector.deleteLater()


def test_stop_turns_automatic_collection_back_on(
    collector_on_the_qt_thread: GuiThreadCollector,
) -> None:
    assert not gc.isenabled()
    collector_on_the_qt_thread.stop()
    assert gc.isenabled()
