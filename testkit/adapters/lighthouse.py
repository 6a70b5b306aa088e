"""The lighthouse adapter: the only module that imports both testkit and lighthouse."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lighthouse import Event, EventFilter, EventStore, LighthouseError

from testkit.adapters.base import AdapterError, StoredEvent
from testkit.chaos.capabilities import Capabilities

__all__ = ["CRASH_POINTS", "INTEGRITY_AGGREGATE", "NOT_WRITTEN", "LighthouseAdapter", "to_stored"]

#: Named points of the write path where :mod:`testkit.adapters.lighthouse_crash_points` can kill the store.
CRASH_POINTS: tuple[str, ...] = (
    "before_write",  # a group is encoded, nothing written yet
    "before_sync",  # the group's bytes are in the page cache, not yet fsynced
    "after_sync",  # durable, not yet acknowledged
    "segment_created",  # a new segment file exists with its header fsynced, directory not yet fsynced
    "after_directory_sync",  # the new segment is published, nothing written to it yet
    "torn_tail_truncated",  # recovery cut a torn tail, before the store finished opening
)

#: Aggregate of the events the store writes about itself (damage found on open).
INTEGRITY_AGGREGATE = "store:integrity"
#: Code of a write the store refused after removing its frame (``WriteFailed`` with outcome ``not_written``).
NOT_WRITTEN = "write_not_written"


def to_stored(event: Event) -> StoredEvent:
    return StoredEvent(
        event_id=event.event_id,
        sequence=event.sequence,
        event_type=str(event[1]),
        aggregate_id=event.aggregate_id,
        source_agent=event.source_agent,
        data=event.data,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        aggregate_version=event.aggregate_version,
    )


def _adapter_error(exc: LighthouseError) -> AdapterError:
    code = exc.code
    if code == "write_failed" and exc.details.get("outcome") == "not_written":
        code = NOT_WRITTEN  # the store removed the frame: a definite failure the checker holds it to
    first, last = exc.details.get("first_sequence"), exc.details.get("last_sequence")
    sequences = (int(first), int(last)) if first is not None and last is not None else None
    return AdapterError(str(exc), code=code, retryable=exc.retryable, sequences=sequences)


class LighthouseAdapter:
    """Drives an in-process :class:`lighthouse.EventStore` in ``data_dir``.

    ``store_factory`` lets a suite swap in a test-only subclass (for example a deliberately broken
    variant that must be caught); ``include_store_events`` makes :meth:`read_all` also yield the store's
    own ``corruption_detected`` events (so a checker can hold them to no-duplicates); ``options`` go to the store (``durability``, ``segment_bytes``...).
    """

    name = "lighthouse"
    testkit_capabilities = Capabilities(
        crash_points=CRASH_POINTS,
        crash_point_factory="testkit.adapters.lighthouse_crash_points:crash_point_adapter",
        io_target=".seg",
        corruption_oracle="testkit.chaos.lighthouse_oracle:run_format_aware_corruption",
        creates_files=True,
    )

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        store_factory: Callable[..., EventStore] = EventStore,
        include_store_events: bool = False,
        **options: Any,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.include_store_events = include_store_events
        self._factory = store_factory
        self._options = options
        self.store: EventStore | None = None
        durability = options.get("durability", "fsync")
        if durability != "fsync" or store_factory is not EventStore:
            self.name = f"lighthouse[{getattr(store_factory, '__name__', 'custom')},{durability}]"

    async def open(self) -> None:
        try:
            self.store = self._factory(self.data_dir, **self._options)
            await self.store.__aenter__()
        except LighthouseError as exc:
            raise _adapter_error(exc) from exc

    def _store(self) -> EventStore:
        if self.store is None:
            raise AdapterError("adapter is not open", code="store_closed")
        return self.store

    async def append(self, event: Mapping[str, Any]) -> StoredEvent:
        try:
            return to_stored(await self._store().append(Event.from_dict(event)))
        except LighthouseError as exc:
            raise _adapter_error(exc) from exc

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
        try:
            stored = await self._store().append_batch([Event.from_dict(e) for e in events])
        except LighthouseError as exc:
            raise _adapter_error(exc) from exc
        return [to_stored(e) for e in stored]

    async def read_all(self) -> AsyncIterator[StoredEvent]:
        """Every client-written event; the store's own ``corruption_detected`` records (it appends one per
        damaged range it finds on open) are not client writes, so a history checker must not see them."""
        try:
            async for event in self._store().replay():
                if (not self.include_store_events and event.aggregate_id == INTEGRITY_AGGREGATE
                        and event.source_agent == "lighthouse"):
                    continue
                yield to_stored(event)
        except LighthouseError as exc:
            raise _adapter_error(exc) from exc

    async def query(
        self,
        *,
        event_types: Sequence[str] | None = None,
        aggregate_ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        try:
            result = await self._store().query(
                EventFilter(event_types=event_types, aggregate_ids=aggregate_ids), limit=limit
            )
        except LighthouseError as exc:
            raise _adapter_error(exc) from exc
        return [to_stored(e) for e in result.events]

    async def get(self, event_id: str) -> StoredEvent:
        try:
            return to_stored(await self._store().get(event_id))
        except LighthouseError as exc:
            raise _adapter_error(exc) from exc

    async def save_snapshot(self, name: str, state: Any, at_sequence: int, *, incremental: bool = False) -> int:
        try:
            return (await self._store().save_snapshot(name, state, at_sequence, incremental=incremental)).at_sequence
        except LighthouseError as exc:
            raise _adapter_error(exc) from exc

    async def load_snapshot(self, name: str) -> tuple[int, Any]:
        try:
            snapshot = await self._store().load_snapshot(name)
        except LighthouseError as exc:
            raise _adapter_error(exc) from exc
        return snapshot.at_sequence, snapshot.state

    def health(self) -> dict[str, Any]:
        return self._store().health().to_dict()

    async def close(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            await store.close()
