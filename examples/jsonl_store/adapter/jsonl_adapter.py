"""The whole integration of jsonl_store with lighthouse-testkit: one adapter, about fifty lines.

    testkit chaos --adapter jsonl_adapter:JsonlAdapter --report report/
    testkit chaos --adapter jsonl_adapter:JsonlAdapter --option fsync=False   # known unsafe: must be caught
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from jsonl_store import JsonlLog, LogError, LogReadOnly

from testkit.adapters import AdapterError, StoredEvent


def _stored(sequence: int, event: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(event["event_id"], sequence, str(event["event_type"]), event["aggregate_id"],
                       event.get("source_agent") or "", event.get("data") or {}, event.get("correlation_id"),
                       event.get("causation_id"))


class JsonlAdapter:
    def __init__(self, data_dir: str, *, fsync: bool = True) -> None:
        self.data_dir = data_dir
        self.fsync = fsync
        self.name = "jsonl" if fsync else "jsonl[fsync=False]"
        # Without fsync an acknowledged append lives in the page cache: power cuts may take it.
        self.expected_loss = frozenset() if fsync else frozenset({"power_cut", "posix_crash"})
        self.log: JsonlLog | None = None

    async def open(self) -> None:
        try:
            self.log = JsonlLog(self.data_dir, fsync=self.fsync)
        except LogError as exc:
            raise AdapterError(str(exc), code=type(exc).__name__) from exc

    def _log(self) -> JsonlLog:
        if self.log is None:
            raise AdapterError("not open", code="closed")
        return self.log

    async def append(self, event: Mapping[str, Any]) -> StoredEvent:
        return (await self.append_batch([event]))[0]

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
        records = [dict(e, event_type=str(e["event_type"])) for e in events]
        try:
            sequences = self._log().append(records)
        except LogReadOnly as exc:
            raise AdapterError(str(exc), code="read_only") from exc
        except LogError as exc:
            raise AdapterError(str(exc), code="write_failed", retryable=True) from exc
        return [_stored(s, e) for s, e in zip(sequences, records)]

    async def read_all(self) -> AsyncIterator[StoredEvent]:
        try:
            for sequence, record in self._log().records():
                yield _stored(sequence, record)
        except LogError as exc:
            raise AdapterError(str(exc), code="corrupted") from exc

    async def query(self, *, event_types: Sequence[str] | None = None, aggregate_ids: Sequence[str] | None = None,
                    limit: int = 1000) -> list[StoredEvent]:
        found = [e async for e in self.read_all()
                 if (not event_types or e.event_type in event_types)
                 and (not aggregate_ids or e.aggregate_id in aggregate_ids)]
        return found[:limit]

    async def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
