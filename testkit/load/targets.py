"""Trivial operations for calibrating the load generator itself.

Before blaming a store for its tail latency, run the same profile against :func:`noop` on the same machine:
whatever latency, late starts or shortfall in rate it shows belongs to the generator, not the store. Both
factories are importable by name, so worker processes can build them (``"testkit.load.targets:noop"``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from testkit.load.errors import LoadConfigError

__all__ = ["noop", "sleeper"]


def noop() -> Callable[[], Awaitable[None]]:
    """An async operation that does nothing and never suspends."""

    async def nothing() -> None:
        return None

    return nothing


def sleeper(seconds: float) -> Callable[[], Awaitable[None]]:
    """An async operation that waits ``seconds`` without using the CPU: a target with fixed service time."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise LoadConfigError(f"seconds must be a finite number >= 0, got {seconds!r}")

    async def wait() -> None:
        await asyncio.sleep(seconds)

    return wait
