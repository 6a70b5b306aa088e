"""Fixtures of the load suite: a coroutine runner with a deadline, scaled durations, the pair recorder.

Durations follow ``--testkit-duration``: each test has a short default (seconds); the scale multiplies it, and
the endurance test runs for the whole requested duration (``--testkit-duration=72h`` is a 72-hour soak).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from testkit.aio import run_with_deadline

from .traffic import PairRecorder

T = TypeVar("T")

Runner = Callable[..., Any]
Scaled = Callable[[float], float]


def run_coroutine(coro: Coroutine[Any, Any, T], timeout: float = 600.0) -> T:
    """Run one coroutine on a fresh loop with a deadline, so a hang fails instead of stalling the suite."""
    return run_with_deadline(coro, timeout)


@pytest.fixture(scope="session")
def run() -> Runner:
    """``run(coro, timeout=600)``: the suite's way into asyncio."""
    return run_coroutine


@pytest.fixture(scope="session")
def scaled(testkit_scale: float) -> Scaled:
    """``scaled(10.0)``: a default duration in seconds times ``--testkit-duration``'s scale."""

    def seconds(default: float) -> float:
        return default * testkit_scale

    return seconds


@pytest.fixture
def pairs(testkit_record: Any) -> PairRecorder:
    """Record one figure per store, and the judged store's ratio to each peer."""
    testkit_record.sut = "lighthouse+sqlite"
    return PairRecorder(testkit_record)
