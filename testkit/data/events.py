"""The event vocabulary and store limits every generator respects, in one place.

Generators, invalid-input cases and load drivers must agree on what a valid event is; keeping the
types, the limits and the error codes together means a change to the store's contract is one edit.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, Final

import msgpack

__all__ = [
    "BATCH_TOO_LARGE",
    "EVENT_TOO_LARGE",
    "EVENT_TYPES",
    "INVALID_EVENT",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "SCHEMA_VERSION",
    "TrafficClass",
    "encoded_size",
    "random_uuid",
    "traffic_class",
    "valid_batches",
]

#: The store's ``EventType`` values, in the store's order (the lead cross-checks this against lighthouse).
EVENT_TYPES: Final[tuple[str, ...]] = (
    "command_received",
    "command_validated",
    "command_approved",
    "command_rejected",
    "command_escalated",
    "command_executed",
    "command_failed",
    "agent_registered",
    "agent_heartbeat",
    "agent_disconnected",
    "session_started",
    "session_ended",
    "pair_session_requested",
    "pair_session_accepted",
    "pair_suggestion_made",
    "pair_review_completed",
    "file_created",
    "file_modified",
    "file_deleted",
    "snapshot_created",
    "snapshot_restored",
    "system_started",
    "system_shutdown",
    "degradation_entered",
    "degradation_cleared",
    "corruption_detected",
    "custom",
)

MAX_EVENT_BYTES: Final[int] = 1 << 20
"""An event's msgpack-encoded size may not exceed 1 MiB."""
MAX_BATCH_EVENTS: Final[int] = 1000
"""A batch holds 1..1000 events."""
MAX_BATCH_BYTES: Final[int] = 10 << 20
"""A batch's encoded events may not exceed 10 MiB in total."""
SCHEMA_VERSION: Final[int] = 1

INVALID_EVENT: Final[str] = "invalid_event"
EVENT_TOO_LARGE: Final[str] = "event_too_large"
BATCH_TOO_LARGE: Final[str] = "batch_too_large"


class TrafficClass(StrEnum):
    """The original design's load mix: 70% validation, 20% state, 10% monitoring."""

    VALIDATION = "validation"
    STATE = "state"
    MONITORING = "monitoring"


_CLASS_OF_TYPE: Final[dict[str, TrafficClass]] = {
    **{t: TrafficClass.VALIDATION for t in EVENT_TYPES if t.startswith(("command_", "pair_"))},
    "custom": TrafficClass.VALIDATION,
    **{
        t: TrafficClass.STATE
        for t in (
            "file_created",
            "file_modified",
            "file_deleted",
            "snapshot_created",
            "snapshot_restored",
            "agent_registered",
            "agent_disconnected",
            "session_started",
            "session_ended",
        )
    },
    **{
        t: TrafficClass.MONITORING
        for t in (
            "agent_heartbeat",
            "system_started",
            "system_shutdown",
            "degradation_entered",
            "degradation_cleared",
            "corruption_detected",
        )
    },
}


def traffic_class(event_type: str) -> TrafficClass:
    """Which part of the 70/20/10 mix an event type belongs to."""
    try:
        return _CLASS_OF_TYPE[event_type]
    except KeyError:
        raise ValueError(f"unknown event type {event_type!r}") from None


def encoded_size(event: Mapping[str, Any]) -> int:
    """The event's msgpack-encoded size in bytes: the measure the store's 1 MiB limit applies to."""
    return len(msgpack.packb(event, use_bin_type=True))


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng``, so ids repeat exactly for the same seed."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def valid_batches(
    events: Iterable[Mapping[str, Any]],
    *,
    max_events: int = MAX_BATCH_EVENTS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> Iterator[list[Mapping[str, Any]]]:
    """Group events, in order, into batches that respect the store's count and size limits."""
    if not 1 <= max_events <= MAX_BATCH_EVENTS:
        raise ValueError(f"max_events must be in 1..{MAX_BATCH_EVENTS}, got {max_events}")
    if not MAX_EVENT_BYTES <= max_bytes <= MAX_BATCH_BYTES:
        raise ValueError(f"max_bytes must be in {MAX_EVENT_BYTES}..{MAX_BATCH_BYTES}, got {max_bytes}")
    batch: list[Mapping[str, Any]] = []
    batch_bytes = 0
    for event in events:
        size = encoded_size(event)
        if size > MAX_EVENT_BYTES:
            raise ValueError(f"event {event.get('event_id')!r} is {size} bytes encoded, over the 1 MiB limit")
        if batch and (len(batch) == max_events or batch_bytes + size > max_bytes):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(event)
        batch_bytes += size
    if batch:
        yield batch
