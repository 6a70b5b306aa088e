"""The adapter protocol: the only way testkit talks to a system under test.

A store is driven with plain event dicts (see :data:`EVENT_FIELDS`) so that generators, checkers
and suites never depend on one store's model classes. Another project reuses the whole kit by
writing one adapter.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgpack

__all__ = [
    "EVENT_FIELDS",
    "AdapterError",
    "EventStoreAdapter",
    "ReadsById",
    "SnapshotCapable",
    "StoredEvent",
    "check_query_limit",
    "content_digest",
    "read_pages",
]

#: The keys of an event dict handed to :meth:`EventStoreAdapter.append`.
#: ``event_id`` is chosen by the client so that the history can name each write before its outcome is known.
EVENT_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "aggregate_id",
    "aggregate_type",
    "correlation_id",
    "causation_id",
    "source_agent",
    "timestamp",
    "data",
    "metadata",
    "schema_version",
)


def content_digest(event: Mapping[str, Any]) -> str:
    """A stable digest of an event's client-chosen content, so a checker can tell an intact event from a damaged one."""
    payload = {
        "event_id": event["event_id"],
        "event_type": str(event["event_type"]),
        "aggregate_id": event["aggregate_id"],
        "data": event.get("data") or {},
    }
    return hashlib.blake2b(msgpack.packb(payload, use_bin_type=True), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store returned it: the client's fields plus what the store assigned."""

    event_id: str
    sequence: int
    event_type: str
    aggregate_id: str
    source_agent: str
    data: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    causation_id: str | None = None
    aggregate_version: int | None = None

    def digest(self) -> str:
        return content_digest(
            {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "aggregate_id": self.aggregate_id,
                "data": dict(self.data),
            }
        )


class AdapterError(Exception):
    """A failure reported by a store through its adapter; ``code`` is the store's machine-readable reason.

    ``sequences``: for a refused write, the inclusive range of sequence numbers it had been given; a store
    that says so is held to reporting them as voided once a later write succeeds (never reusing them).
    """

    def __init__(self, message: str, *, code: str = "error", retryable: bool = False,
                 sequences: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.sequences = sequences  # numbers a refused write had been given (first, last), if the store says


@runtime_checkable
class EventStoreAdapter(Protocol):
    """What a system under test implements. An append is acknowledged only when the store says it is durable."""

    name: str

    async def open(self) -> None: ...

    async def append(self, event: Mapping[str, Any]) -> StoredEvent: ...

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[StoredEvent]: ...

    def read_all(self) -> AsyncIterator[StoredEvent]: ...

    async def query(
        self,
        *,
        event_types: Sequence[str] | None = None,
        aggregate_ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]: ...

    async def close(self) -> None: ...


@runtime_checkable
class ReadsById(Protocol):
    """Optional: read one event back by its id (raises ``AdapterError`` with code ``not_found`` if absent)."""

    async def get(self, event_id: str) -> StoredEvent: ...


@runtime_checkable
class SnapshotCapable(Protocol):
    """Optional: projection snapshots. ``load_snapshot`` returns (at_sequence, state) of the newest intact one
    and raises ``AdapterError`` with code ``snapshot_not_found`` when there is none."""

    async def save_snapshot(self, name: str, state: Any, at_sequence: int, *, incremental: bool = False) -> int: ...

    async def load_snapshot(self, name: str) -> tuple[int, Any]: ...


_Row = TypeVar("_Row")


async def read_pages(fetch_after: Callable[[int], Awaitable[Sequence[_Row]]], page: int,
                     sequence_of: Callable[[_Row], int], to_event: Callable[[_Row], StoredEvent]
                     ) -> AsyncIterator[StoredEvent]:
    """``read_all`` for a store queried in pages: ``fetch_after(sequence)`` returns up to ``page`` rows after it,
    ascending; the log is read in constant memory, one page at a time, until a short page."""
    after = 0
    while True:
        rows = await fetch_after(after)
        for row in rows:
            yield to_event(row)
        if len(rows) < page:
            return
        after = sequence_of(rows[-1])


def check_query_limit(limit: object) -> int:
    """A query's ``limit`` must be a positive integer: otherwise the typed ``invalid_query`` error."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise AdapterError(f"limit must be a positive integer, got {limit!r}", code="invalid_query")
    return limit
