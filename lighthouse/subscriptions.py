"""Catch-up-then-live subscriptions with a bounded buffer.

A subscriber first reads history from disk, then switches to live delivery without a gap or a
duplicate: it registers for live events in the same event-loop step in which it sees that it has
caught up to the head. Live events wait in a bounded buffer; a subscriber that falls further
behind than the buffer gets ``SubscriberOverflow`` (resubscribe from its last sequence) instead
of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from lighthouse.errors import StoreClosed, SubscriberOverflow
from lighthouse.models import Event, EventFilter

if TYPE_CHECKING:
    from lighthouse.store import EventStore

__all__ = ["CATCH_UP_RUN", "Subscription"]

#: While catching up, a list is handed over once it holds this many events or this many were read from disk.
CATCH_UP_RUN = 1000


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
        self._run_end = 0  # ``delivered`` once the consumer has taken the run it is in
        self._iterator: AsyncIterator[Event] | AsyncIterator[list[Event]] | None = None
        self._in_runs = False

    # called by the store after each durable commit
    def offer(self, events: Sequence[Event]) -> None:
        """Buffer ``events`` (a commit's, in sequence order) for the consumer, or overflow."""
        if self._overflowed or self._closed:
            return
        matches = self._matches
        start = self._from
        taken_but_unread = self._run_end - self.delivered  # the rest of the list a one-by-one reader is in
        if (matches is None and events and events[0][11] >= start
                and len(self._buffer) + taken_but_unread + len(events) <= self.buffer_size):
            self._buffer.extend(events)  # the common case in one call: every event wanted, and room for all
            self._wakeup.set()
            return
        for event in events:
            if event[11] >= start and (matches is None or matches(event)):
                if len(self._buffer) + taken_but_unread >= self.buffer_size:
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
        """Events held for the consumer and not yet taken: the live buffer and the rest of the list being read."""
        return len(self._buffer) + self._run_end - self.delivered

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._iterator is None:
            self._iterator = self._one_by_one()
        elif self._in_runs:
            raise RuntimeError("this subscription is already being read in runs")
        return self._iterator  # type: ignore[return-value]

    def runs(self) -> AsyncIterator[list[Event]]:
        """The same stream as lists of consecutive events: each catch-up read (up to ``CATCH_UP_RUN``), then
        everything delivered live since the last list. For a consumer that folds every event (the bridge):
        one resumption per list instead of one per event. Use either this or plain iteration, not both."""
        if self._iterator is None:
            self._iterator, self._in_runs = self._taken_in_runs(), True
        elif not self._in_runs:
            raise RuntimeError("this subscription is already being read event by event")
        return self._iterator  # type: ignore[return-value]

    async def __anext__(self) -> Event:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        """End the stream; safe to call from another task while a consumer is waiting in it."""
        self.end()
        self._on_close(self)
        iterator = self._iterator
        if iterator is not None and not getattr(iterator, "ag_running", False):
            await iterator.aclose()  # type: ignore[attr-defined]

    async def _one_by_one(self) -> AsyncIterator[Event]:
        async with contextlib.aclosing(self._runs()) as runs:
            async for run in runs:
                self._run_end = self.delivered + len(run)
                for event in run:
                    self.last_sequence = event[11]
                    self.delivered += 1
                    yield event

    async def _taken_in_runs(self) -> AsyncIterator[list[Event]]:
        async with contextlib.aclosing(self._runs()) as runs:
            async for run in runs:
                self.last_sequence = run[-1][11]
                self.delivered += len(run)
                self._run_end = self.delivered
                yield run

    async def _runs(self) -> AsyncIterator[list[Event]]:
        store = self._store
        matches = self._matches
        scanned = self._from - 1
        try:
            # Catch up from disk until, in one loop step, we find nothing new and register for live events.
            while True:
                head = store.head_sequence
                if scanned >= head:
                    store._register_live(self)  # same step as the head check: no gap, no duplicate
                    break
                run: list[Event] = []
                read = 0
                async for event in store.replay(scanned + 1, to_sequence=head):
                    scanned = event[11]
                    read += 1
                    if matches is None or matches(event):
                        run.append(event)
                    if run and (len(run) >= CATCH_UP_RUN or read >= CATCH_UP_RUN):  # a sparse filter's few
                        yield run  # matches are not held back until the whole history is scanned
                        run, read = [], 0
                if run:
                    yield run
                scanned = max(scanned, head)
            while True:
                if self._buffer:
                    run = list(self._buffer)
                    self._buffer.clear()
                    yield run
                    continue
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
