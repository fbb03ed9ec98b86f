"""A function run every N seconds on a daemon thread: the background refreshes of
the catalogue (server/catalog.py) and of the coupon feature cache (server/online.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """``fn()`` every ``seconds`` after :meth:`start` until :meth:`stop`; ``seconds``
    <= 0 never starts. ``fn`` handles its own errors (an escaping one ends the loop)."""

    def __init__(self, name: str, seconds: float, fn: Callable[[], object]):
        self.name, self.seconds, self.fn = name, float(seconds), fn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.seconds <= 0 or self._thread is not None:
            return

        def loop():
            while not self._stop.wait(self.seconds):
                self.fn()

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
