"""Running a coroutine from synchronous test code, with a deadline so a hang fails instead of stalling."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_with_deadline"]

T = TypeVar("T")


def run_with_deadline(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """``asyncio.run(coro)`` on a fresh event loop, cancelled with ``TimeoutError`` after ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
