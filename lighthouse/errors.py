"""Typed errors of the event store.

Every error carries a stable machine-readable ``code`` (the HTTP layer and the testkit adapter
report it verbatim) and says whether retrying the same call can help, so that clients can decide
without parsing messages.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BatchTooLarge",
    "ConcurrencyConflict",
    "DuplicateEvent",
    "EventNotFound",
    "EventTooLarge",
    "InvalidCursor",
    "InvalidEvent",
    "InvalidQuery",
    "InvalidSnapshot",
    "LighthouseError",
    "ResourceExhausted",
    "SnapshotNotFound",
    "StoreClosed",
    "StoreCorrupted",
    "StoreLocked",
    "StoreReadOnly",
    "SubscriberOverflow",
    "WriteFailed",
]


class LighthouseError(Exception):
    """Base of every error the store raises on purpose."""

    code: str = "error"
    retryable: bool = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body the server sends and clients parse."""
        return {"error": self.code, "message": self.message, "retryable": self.retryable, "details": self.details}


class InvalidEvent(LighthouseError):
    """The event is malformed (wrong type, missing field, unknown event type, not serialisable)."""

    code = "invalid_event"


class EventTooLarge(InvalidEvent):
    """The event's encoded size exceeds the per-event limit."""

    code = "event_too_large"


class BatchTooLarge(InvalidEvent):
    """A batch is empty, has too many events, or its encoded size exceeds the batch limit."""

    code = "batch_too_large"


class DuplicateEvent(InvalidEvent):
    """An event id already stored with different content (a retry with the same content is accepted)."""

    code = "duplicate_event"


class InvalidQuery(LighthouseError):
    """A query's filter or limit is out of range."""

    code = "invalid_query"


class InvalidCursor(InvalidQuery):
    """A pagination cursor this store did not issue for this filter."""

    code = "invalid_cursor"


class EventNotFound(LighthouseError):
    """No event with that id or sequence."""

    code = "not_found"


class ConcurrencyConflict(LighthouseError):
    """``expected_version`` does not match the aggregate's current version."""

    code = "concurrency_conflict"
    retryable = True


class StoreReadOnly(LighthouseError):
    """Writes are refused (disk full, I/O error, or too little free space); reads continue.

    Retryable: the store probes and returns to healthy by itself when the condition clears.
    """

    code = "store_read_only"
    retryable = True


class WriteFailed(StoreReadOnly):
    """This append's write or sync failed; it was not acknowledged and its frame was removed."""

    code = "write_failed"


class ResourceExhausted(LighthouseError):
    """The process ran out of memory or file descriptors while serving the call."""

    code = "resource_exhausted"
    retryable = True


class StoreLocked(LighthouseError):
    """Another process (or another open store) holds the data directory."""

    code = "store_locked"
    retryable = True


class StoreCorrupted(LighthouseError):
    """Stored bytes failed their checksum; the damaged range is quarantined and reported."""

    code = "store_corrupted"


class StoreClosed(LighthouseError):
    """The store was closed."""

    code = "store_closed"


class SubscriberOverflow(LighthouseError):
    """A subscriber fell too far behind; resubscribe from the last sequence it saw."""

    code = "subscriber_overflow"
    retryable = True


class InvalidSnapshot(LighthouseError):
    """A snapshot request is inconsistent (sequence beyond the log, state not serialisable, bad base)."""

    code = "invalid_snapshot"


class SnapshotNotFound(LighthouseError):
    """No intact snapshot under that name."""

    code = "snapshot_not_found"
