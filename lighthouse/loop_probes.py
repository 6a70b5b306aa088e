"""How long an asyncio event loop is held up, measured two ways for ``lighthouse bench``.

- *Lateness* (``loop_lateness``): a task that sleeps 1 ms, again and again, records how late it wakes. That is what
  any other task on the loop waits, and it counts the work queued ahead of it: with a single appender, a tick
  that falls due during one append's sync also waits for the appender's next step (asyncio runs ready callbacks
  first in, first out), so its lateness spans two or three syncs while no single step took longer than one.
- *Steps* (``TimedSteps``): each step of one task (from a resumption to its next suspension) is timed. The loop
  runs nothing else during a step, so the longest step is the longest this task blocked the loop.

An idle loop probed for as long (``idle_loop_lateness``) is the machine's own scheduling noise under both.
"""

from __future__ import annotations

import asyncio
import collections.abc
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import numpy as np

__all__ = ["TimedSteps", "idle_loop_lateness", "loop_lateness", "p99_and_max"]

_TICK_NS = 1_000_000


async def loop_lateness(stop: asyncio.Event, lateness: list[int]) -> None:
    """Until ``stop`` is set: each 1 ms tick's lateness (ns)."""
    clock = time.perf_counter_ns
    while not stop.is_set():
        before = clock()
        await asyncio.sleep(_TICK_NS / 1e9)
        lateness.append(max(0, clock() - before - _TICK_NS))


def p99_and_max(samples_ns: list[int], name: str) -> dict[str, float]:
    """``{name}_p99_ms`` and ``{name}_max_ms`` of ticks' lateness or of steps: max alone is one unlucky sample on a
    shared machine."""
    return {
        f"{name}_p99_ms": float(np.percentile(samples_ns, 99)) / 1e6 if samples_ns else 0.0,
        f"{name}_max_ms": max(samples_ns, default=0) / 1e6,
    }


async def idle_loop_lateness(seconds: float) -> dict[str, float]:
    """The lateness probe on a loop with nothing else to do, for ``seconds``: this machine's own scheduling
    noise (another tenant, a descheduled thread), the floor under any loaded figure."""
    lateness: list[int] = []
    stop = asyncio.Event()
    probe = asyncio.get_running_loop().create_task(loop_lateness(stop, lateness))
    await asyncio.sleep(seconds)  # the measurement window, not a wait for another task
    stop.set()
    await probe
    return p99_and_max(lateness, "loop_stall")


class TimedSteps(collections.abc.Coroutine):  # type: ignore[type-arg]
    """Wraps a coroutine for ``create_task`` and appends each step's duration (ns) to ``steps``.

    A task advances its coroutine with ``send`` and ``throw``; the time inside one call is time the loop
    spent on this task alone. With ``inner_clock`` (seconds of something done inside steps, a counter such as
    ``EventStore.write_seconds``) each step's duration less that counter's growth goes to ``beyond_inner``:
    how long the step held the loop beyond, say, its own write and sync."""

    __slots__ = ("_coro", "_steps", "_inner_clock", "_beyond_inner")

    def __init__(self, coro: Coroutine[Any, Any, Any], steps: list[int], *,
                 inner_clock: Callable[[], float] | None = None, beyond_inner: list[int] | None = None) -> None:
        if (inner_clock is None) != (beyond_inner is None):
            raise ValueError("inner_clock and beyond_inner go together")
        self._coro = coro
        self._steps = steps
        self._inner_clock = inner_clock
        self._beyond_inner = beyond_inner

    def _step(self, advance: Callable[[], Any]) -> Any:
        inner = self._inner_clock() if self._inner_clock is not None else 0.0
        started = time.perf_counter_ns()
        try:
            return advance()
        finally:
            elapsed = time.perf_counter_ns() - started
            self._steps.append(elapsed)
            if self._inner_clock is not None and self._beyond_inner is not None:
                self._beyond_inner.append(max(0, elapsed - round((self._inner_clock() - inner) * 1e9)))

    def send(self, value: Any) -> Any:
        return self._step(lambda: self._coro.send(value))

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._step(lambda: self._coro.throw(typ))
        return self._step(lambda: self._coro.throw(typ, val, tb))

    def close(self) -> None:
        self._coro.close()

    def __next__(self) -> Any:
        return self.send(None)

    def __iter__(self) -> TimedSteps:
        return self

    def __await__(self) -> Generator[Any, None, Any]:
        return self  # type: ignore[return-value]  # an iterator with send and throw, as ``yield from`` needs
