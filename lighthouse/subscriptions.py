"""Catch-up-then-live subscriptions with a bounded buffer.

A subscriber first reads history from disk, then switches to live delivery without a gap or a
duplicate: it registers for live events in the same event-loop step in which it sees that it has
caught up to the head. Live events wait in a bounded buffer; a subscriber that falls further
behind than the buffer gets ``SubscriberOverflow`` (resubscribe from its last sequence) instead
of growing memory without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

from lighthouse.errors import StoreClosed, SubscriberOverflow
from lighthouse.models import Event, EventFilter

if TYPE_CHECKING:
    from lighthouse.store import EventStore

__all__ = ["Subscription"]


class Subscription:
    """An async iterator of events; ``last_sequence`` is where to resume after an error."""

    def __init__(
        self,
        store: EventStore,
        event_filter: EventFilter | None,
        from_sequence: int | None,
        buffer_size: int,
        on_close: Callable[[Subscription], None],
    ) -> None:
        self._store = store
        self.filter = event_filter if event_filter is not None and not event_filter.is_empty else None
        self._matches = self.filter.predicate() if self.filter is not None else None
        # "Only new events" means new from the moment subscribe() was called, not from the first read.
        self._from = from_sequence if from_sequence is not None else store.head_sequence + 1
        self.buffer_size = buffer_size
        self._buffer: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._overflowed = False
        self._closed = False
        self._on_close = on_close
        self.last_sequence = 0
        self.delivered = 0
        self._iterator: AsyncIterator[Event] | None = None

    # called by the store after each durable commit
    def offer(self, events: Iterable[Event]) -> None:
        if self._overflowed or self._closed:
            return
        matches = self._matches
        start = self._from
        for event in events:
            if event[11] >= start and (matches is None or matches(event)):
                if len(self._buffer) >= self.buffer_size:
                    self._overflowed = True
                    self._buffer.clear()
                    break
                self._buffer.append(event)
        self._wakeup.set()

    def end(self) -> None:
        self._closed = True
        self._wakeup.set()

    @property
    def lag(self) -> int:
        return len(self._buffer)

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def __anext__(self) -> Event:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        """End the stream; safe to call from another task while a consumer is waiting in it."""
        self.end()
        self._on_close(self)
        iterator = self._iterator
        if iterator is not None and not getattr(iterator, "ag_running", False):
            await iterator.aclose()  # type: ignore[attr-defined]

    async def _run(self) -> AsyncIterator[Event]:
        store = self._store
        scanned = self._from - 1
        try:
            # Catch up from disk until, in one loop step, we find nothing new and register for live events.
            while True:
                head = store.head_sequence
                if scanned >= head:
                    store._register_live(self)  # same step as the head check: no gap, no duplicate
                    break
                async for event in store.replay(scanned + 1, to_sequence=head):
                    scanned = event.sequence
                    if self._matches is None or self._matches(event):
                        self.last_sequence = event.sequence
                        self.delivered += 1
                        yield event
                scanned = max(scanned, head)
            while True:
                while self._buffer:
                    event = self._buffer.popleft()
                    self.last_sequence = event.sequence
                    self.delivered += 1
                    yield event
                if self._overflowed:
                    raise SubscriberOverflow(
                        f"subscriber fell more than {self.buffer_size} events behind; resubscribe from "
                        f"sequence {self.last_sequence + 1}",
                        resume_from=self.last_sequence + 1,
                    )
                if self._closed:
                    if store.closed:
                        raise StoreClosed("the store was closed")
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        finally:
            self._closed = True
            self._on_close(self)
