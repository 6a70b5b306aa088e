"""What every adapter checks before it touches its store, so bad input gets the same typed error everywhere.

The conformance suite (:mod:`testkit.conformance`) holds every adapter to these rules: an event is a
mapping with a non-empty string ``event_type`` and ``aggregate_id``, a non-empty string ``event_id``,
and ``data`` / ``metadata`` mappings msgpack can encode. Anything else is
``AdapterError(code="invalid_event")`` and, inside a batch, stores nothing of the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from testkit.adapters.base import AdapterError, StoredEvent

__all__ = [
    "DUPLICATE_EVENT",
    "INVALID_EVENT",
    "already_stored",
    "decode_event",
    "encode_event",
    "stored_copy",
    "validate_batch",
    "validate_event",
]

INVALID_EVENT = "invalid_event"
DUPLICATE_EVENT = "duplicate_event"
_REQUIRED_STRINGS = ("event_type", "aggregate_id")
_OPTIONAL_STRINGS = ("source_agent", "correlation_id", "causation_id")


def _invalid(message: str) -> AdapterError:
    return AdapterError(message, code=INVALID_EVENT, retryable=False)


def validate_event(event: Any) -> dict[str, Any]:
    """A plain dict copy of ``event`` (with an ``event_id`` chosen when absent); raise ``invalid_event`` otherwise."""
    if not isinstance(event, Mapping):
        raise _invalid(f"an event must be a mapping, got {type(event).__name__}")
    checked = dict(event)
    checked.setdefault("event_id", str(uuid.uuid4()))
    for name in ("event_id", *_REQUIRED_STRINGS):
        value = checked.get(name)
        if not isinstance(value, str) or not value:
            raise _invalid(f"{name} must be a non-empty string, got {value!r}")
    for name in _OPTIONAL_STRINGS:
        value = checked.get(name)
        if value is not None and not isinstance(value, str):
            raise _invalid(f"{name} must be a string or absent, got {type(value).__name__}")
    for name in ("data", "metadata"):
        value = checked.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise _invalid(f"{name} must be a mapping, got {type(value).__name__}")
    encode_event(checked)
    return checked


def validate_batch(events: Sequence[Any]) -> list[dict[str, Any]]:
    """Every event of a batch checked before any is written: one bad event refuses the whole batch."""
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
        raise _invalid("a batch must be a sequence of events")
    if not events:
        raise _invalid("a batch needs at least one event")
    checked = [validate_event(e) for e in events]
    ids = [e["event_id"] for e in checked]
    if len(set(ids)) != len(ids):
        raise _invalid("a batch names the same event_id twice")
    return checked


def encode_event(event: Mapping[str, Any]) -> bytes:
    """The event as msgpack bytes; unencodable content is ``invalid_event``."""
    try:
        return msgpack.packb(
            {k: event.get(k) for k in ("event_id", "event_type", "aggregate_id", "source_agent",
                                       "correlation_id", "causation_id", "data", "metadata")},
            use_bin_type=True,
        )
    except MemoryError:
        raise AdapterError("out of memory encoding the event", code="resource_exhausted", retryable=True) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise _invalid(f"event content is not serialisable: {exc}") from None


def stored_copy(event: Mapping[str, Any], sequence: int) -> StoredEvent:
    """The :class:`StoredEvent` for a checked event dict (as :func:`validate_event` returns, or decoded bytes)."""
    return StoredEvent(
        event_id=event["event_id"],
        sequence=sequence,
        event_type=str(event["event_type"]),
        aggregate_id=event["aggregate_id"],
        source_agent=event.get("source_agent") or "system",
        data=dict(event.get("data") or {}),
        correlation_id=event.get("correlation_id"),
        causation_id=event.get("causation_id"),
    )


def already_stored(checked: Sequence[Mapping[str, Any]], stored: Mapping[str, tuple[int, bytes]]) -> list[StoredEvent] | None:
    """Retry by event id: ``None`` when no event of the batch is stored yet; the stored copies when all are,
    each with the same content; ``duplicate_event`` when only some are, or an id is reused for other content.

    ``stored`` maps the batch's already-stored event ids to their sequence and :func:`encode_event` bytes.
    """
    if not stored:
        return None
    if len(stored) != len(checked):
        raise AdapterError("some events of this batch are already stored, others are not", code=DUPLICATE_EVENT)
    copies = []
    for event in checked:
        sequence, payload = stored[event["event_id"]]
        if payload != encode_event(event):
            raise AdapterError(f"event {event['event_id']} is already stored with different content",
                               code=DUPLICATE_EVENT)
        copies.append(stored_copy(decode_event(payload), sequence))
    return copies


def decode_event(payload: bytes) -> dict[str, Any]:
    """The inverse of :func:`encode_event`."""
    decoded: dict[str, Any] = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return decoded
