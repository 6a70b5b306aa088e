"""An in-process client for fault scenarios that need the store and the fault in one timeline.

Disk-full and read-only scenarios switch the fault on and off between steps, so the store runs in
the test's own event loop and a :class:`Appender` drives it step by step, recording every write in
a :class:`~testkit.checkers.History` and sorting every refusal into typed (an ``AdapterError`` with
a code) or untyped (anything else: a raw ``OSError`` is a bug in a store's error handling).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from testkit.adapters import AdapterError, StoredEvent
from testkit.checkers import History, OpKind
from testkit.checkers.history import OK
from testkit.data import AgentSessionGenerator, PayloadSizes

__all__ = ["Appender", "StepCounts"]


@dataclass
class StepCounts:
    ok: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by error code
    untyped: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.refused.values()) + len(self.untyped)


class Appender:
    def __init__(self, adapter: Any, *, seed: int, payload_max_bytes: int = 2048) -> None:
        self.adapter = adapter
        self.history = History()
        sizes = PayloadSizes(max_bytes=payload_max_bytes, tail_start_bytes=min(4096, payload_max_bytes))
        self._stream: Iterator[dict[str, Any]] = AgentSessionGenerator(seed, agents=3, payload_sizes=sizes).events()
        self._number = 0

    async def _one(self, counts: StepCounts) -> bool:
        self._number += 1
        batch = self._number % 5 == 0
        events = [next(self._stream) for _ in range(3 if batch else 1)]
        try:
            with self.history.track(OpKind.APPEND_BATCH if batch else OpKind.APPEND, events) as call:
                stored: Any = await asyncio.wait_for(
                    self.adapter.append_batch(events) if batch else self.adapter.append(events[0]), 10.0)
                call.ok(stored)
        except AdapterError as exc:
            counts.refused[exc.code] += 1
            return False
        except Exception as exc:
            counts.untyped.append(f"{type(exc).__name__}: {exc}"[:200])
            return False
        counts.ok += 1
        return True

    async def append(self, operations: int) -> StepCounts:
        """``operations`` writes (every fifth a batch of three), whatever their outcome."""
        counts = StepCounts()
        for _ in range(operations):
            await self._one(counts)
        return counts

    async def until_refused(self, limit: int) -> StepCounts:
        """Write until the store refuses one (or ``limit`` writes went through)."""
        counts = StepCounts()
        for _ in range(limit):
            if not await self._one(counts):
                break
        return counts

    async def until_acknowledged(self, acks: int, deadline_s: float) -> StepCounts:
        """Keep writing (5 ms apart after a refusal) until ``acks`` writes were acknowledged in a row."""
        counts = StepCounts()
        streak = 0
        end = time.monotonic() + deadline_s
        while streak < acks and time.monotonic() < end:
            if await self._one(counts):
                streak += 1
            else:
                streak = 0
                await asyncio.sleep(0.005)
        return counts

    def acknowledged_ids(self) -> set[str]:
        cols = self.history.columns()
        return {e for op, status in enumerate(cols.status) if status == OK for e in cols.event_ids[op]}

    async def read_ids(self) -> list[str]:
        return [event.event_id async for event in self.adapter.read_all()]

    async def read_all(self) -> list[StoredEvent]:
        return [event async for event in self.adapter.read_all()]
