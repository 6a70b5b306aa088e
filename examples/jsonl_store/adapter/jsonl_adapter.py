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


def _check(event: Mapping[str, Any]) -> None:
    """Bad input is a typed refusal (the kit's conformance suite holds every adapter to it)."""
    problems = [name for name in ("event_id", "aggregate_id", "event_type")
                if not isinstance(event.get(name), str) or not event.get(name)]
    if not isinstance(event.get("data", {}), Mapping):
        problems.append("data")
    if problems:
        raise AdapterError(f"invalid event: {', '.join(problems)}", code="invalid_event")


class JsonlAdapter:
    def __init__(self, data_dir: str, *, fsync: bool = True) -> None:
        self.data_dir = data_dir
        self.fsync = fsync
        self.name = "jsonl" if fsync else "jsonl[fsync=False]"
        # Without fsync an acknowledged append lives in the page cache: power cuts may take it.
        self.expected_loss = frozenset() if fsync else frozenset({"power_cut", "posix_crash"})
        self.log: JsonlLog | None = None
        self.stored: dict[str, tuple[int, dict[str, Any]]] = {}  # event_id -> (sequence, record): retries by id

    async def open(self) -> None:
        try:
            self.log = JsonlLog(self.data_dir, fsync=self.fsync)
            self.stored = {record["event_id"]: (sequence, record) for sequence, record in self.log.records()}
        except LogError as exc:
            raise AdapterError(str(exc), code=type(exc).__name__) from exc

    def _log(self) -> JsonlLog:
        if self.log is None:
            raise AdapterError("not open", code="closed")
        return self.log

    async def append(self, event: Mapping[str, Any]) -> StoredEvent:
        return (await self.append_batch([event]))[0]

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
        for event in events:  # the whole batch is checked before anything is written: all or nothing
            _check(event)
        records = [dict(e, event_type=str(e["event_type"])) for e in events]
        known = [self.stored.get(r["event_id"]) for r in records]
        if any(known):  # a retry: the same events answer with what is stored; anything else is a duplicate id
            if all(k is not None and k[1] == r for k, r in zip(known, records)):
                return [_stored(k[0], k[1]) for k in known if k is not None]
            raise AdapterError("an event_id is already stored with other content (or in another batch)",
                               code="duplicate_event")
        try:
            sequences = self._log().append(records)
        except (TypeError, ValueError) as exc:  # not JSON-encodable: refused before anything is written
            raise AdapterError(f"invalid event: {exc}", code="invalid_event") from exc
        except LogReadOnly as exc:
            raise AdapterError(str(exc), code="read_only") from exc
        except LogError as exc:
            raise AdapterError(str(exc), code="write_failed", retryable=True) from exc
        self.stored.update((r["event_id"], (s, r)) for s, r in zip(sequences, records))
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
