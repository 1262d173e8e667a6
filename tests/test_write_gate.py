"""SQLite's in-process writer queue: intake (urgent) goes ahead of enrichment (background)."""

from __future__ import annotations

import threading
import time

from tipline.store.db import WriteGate


def test_urgent_writer_overtakes_waiting_background_writer() -> None:
    gate = WriteGate()
    assert gate.acquire(urgent=True, timeout=1)
    order: list[str] = []

    def take(name: str, urgent: bool) -> None:
        assert gate.acquire(urgent=urgent, timeout=5)
        order.append(name)
        time.sleep(0.01)
        gate.release()

    background = threading.Thread(target=take, args=("background", False))
    background.start()
    time.sleep(0.05)  # the background writer is queued first...
    urgent = threading.Thread(target=take, args=("urgent", True))
    urgent.start()
    time.sleep(0.05)
    gate.release()
    background.join()
    urgent.join()
    assert order == ["urgent", "background"]  # ...yet the urgent one writes first


def test_background_writer_gives_up_waiting_after_timeout() -> None:
    gate = WriteGate()
    assert gate.acquire(urgent=True, timeout=1)
    started = time.monotonic()
    assert gate.acquire(urgent=False, timeout=0.1) is False
    assert time.monotonic() - started < 1
    gate.release()
    assert gate.acquire(urgent=False, timeout=0.1)
