"""A real, calibrated CPU workload for regression tests: measured samples with real noise, and a slowdown
that is real extra work rather than a number typed into a list.

Calls are timed on the thread's CPU clock, not the wall clock: on a 2-core machine busy with other work
(CI's case), a wall-clock 400 us call is cut by the scheduler at random, and a 30% slowdown measured in
alternating blocks drowned in it (a median 2% *faster*, seen with two CPU hogs running). The CPU time
still carries the machine's real noise (caches, frequency), not the neighbours' turns on the core."""

from __future__ import annotations

import time
from collections.abc import Sequence

__all__ = ["calibrated_iterations", "timed_runs"]


def _spin(iterations: int) -> int:
    total = 0
    for index in range(iterations):
        total += index & 7
    return total


def calibrated_iterations(target_seconds: float = 0.0004) -> int:
    """How many loop iterations take about ``target_seconds`` on this machine now."""
    iterations = 2_000
    while True:
        started = time.thread_time()
        _spin(iterations)
        elapsed = time.thread_time() - started
        if elapsed >= target_seconds / 4:
            return max(1, int(iterations * target_seconds / elapsed))
        iterations *= 4


def timed_runs(iterations: int, injected_delays: Sequence[float], rounds: int = 12,
               block: int = 5) -> list[list[float]]:
    """CPU microseconds per call for one "run" per injected delay (extra busy loop as a fraction of the workload).

    The runs are collected in alternating blocks so that a neighbour's CPU burst on this shared machine lands
    on every run alike; drift *between* separate jobs is what a multi-run baseline's noise floor is for.
    """
    extras = [int(iterations * delay) for delay in injected_delays]
    _spin(iterations)  # warm the interpreter's caches before measuring
    runs: list[list[float]] = [[] for _ in extras]
    for _ in range(rounds):
        for durations, extra in zip(runs, extras, strict=True):
            for _ in range(block):
                started = time.thread_time_ns()
                _spin(iterations)
                if extra:
                    _spin(extra)
                durations.append((time.thread_time_ns() - started) / 1_000)
    return runs
