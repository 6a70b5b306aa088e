"""lighthouse: an append-only, durable event store for a multi-agent coordination platform."""

from lighthouse.errors import (
    BatchTooLarge,
    ConcurrencyConflict,
    DuplicateEvent,
    EventNotFound,
    EventTooLarge,
    InvalidCursor,
    InvalidEvent,
    InvalidQuery,
    InvalidSnapshot,
    LighthouseError,
    ResourceExhausted,
    SnapshotNotFound,
    StoreClosed,
    StoreCorrupted,
    StoreLocked,
    StoreReadOnly,
    SubscriberOverflow,
    WriteFailed,
)
from lighthouse.health import HealthState, StoreHealth
from lighthouse.models import Event, EventFilter, EventType, QueryResult, Snapshot
from lighthouse.store import EventStore, StoreStats
from lighthouse.subscriptions import Subscription
from lighthouse.upcasting import UpcasterRegistry

__version__ = "0.1.0"

__all__ = [
    "BatchTooLarge",
    "ConcurrencyConflict",
    "DuplicateEvent",
    "Event",
    "EventFilter",
    "EventNotFound",
    "EventStore",
    "EventTooLarge",
    "EventType",
    "HealthState",
    "InvalidCursor",
    "InvalidEvent",
    "InvalidQuery",
    "InvalidSnapshot",
    "LighthouseError",
    "QueryResult",
    "ResourceExhausted",
    "Snapshot",
    "SnapshotNotFound",
    "StoreClosed",
    "StoreCorrupted",
    "StoreHealth",
    "StoreLocked",
    "StoreReadOnly",
    "StoreStats",
    "SubscriberOverflow",
    "Subscription",
    "UpcasterRegistry",
    "WriteFailed",
    "__version__",
]
