"""The sampling loop the kit's samplers share: take one sample now, one every interval in a thread, one at stop.

A sample taken at start and at stop gives even a block shorter than the interval a before and an after; a
sample that reports failure (the watched process ended) ends the loop and keeps what was taken.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["PeriodicSampling"]


class PeriodicSampling:
    """Calls ``take`` at :meth:`start`, every ``interval`` seconds in a daemon thread, and at :meth:`stop`;
    ``take`` returns False to end the thread early."""

    def __init__(self, take: Callable[[], bool], interval: float, name: str) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        self.interval = interval
        self._take = take
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the sampler is already running")
        self._stop.clear()
        self._take()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._take()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def wait_stopped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :meth:`stop`; True if it was called."""
        return self._stop.wait(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._take():
                return
