"""The answer to an append: the stored event (or a batch's events) as the client gets it back.

A batch answer repeats every event, and a dict per event (``Event.to_dict``) costs more than
encoding it. For JSON the events go to msgspec as structs built from the tuple in one C call
(``_JsonEvent(*event)``): msgspec writes a struct as an object with its fields in declared order, the
order of ``EVENT_FIELDS``, so the text holds the same members and values as the dict's. An event
msgspec cannot write (a lone surrogate in a string, an integer over 64 bits) and MessagePack answers
take the dicts and the codec's own encoder, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from lighthouse.models import EVENT_FIELDS, Event
from lighthouse.server.codec import JSON, Codec

__all__ = ["batch_answer", "event_answer"]


class _JsonEvent(msgspec.Struct, gc=False):
    """An event's JSON answer: ``Event.to_dict``'s members in its order (the enum is written as its value).
    Untracked by the collector (``gc=False``): it only points at an event's values, which cannot point back."""

    event_id: Any
    event_type: Any
    aggregate_id: Any
    aggregate_type: Any
    correlation_id: Any
    causation_id: Any
    source_agent: Any
    timestamp: Any
    data: Any
    metadata: Any
    schema_version: Any
    sequence: Any
    recorded_at: Any
    aggregate_version: Any


class _JsonBatch(msgspec.Struct, gc=False):
    events: list[_JsonEvent]


assert _JsonEvent.__struct_fields__ == EVENT_FIELDS, "the JSON answer must list the event's fields in order"
_encode: Final = msgspec.json.Encoder().encode
_CANNOT_WRITE: Final = (TypeError, ValueError, OverflowError, msgspec.EncodeError)


def event_answer(codec: Codec, event: Event) -> bytes:
    """``codec.encode(event.to_dict())``, without the dict for JSON."""
    if codec is JSON:
        try:
            return _encode(_JsonEvent(*event))
        except _CANNOT_WRITE:
            pass
    return codec.encode(event.to_dict())


def batch_answer(codec: Codec, events: Sequence[Event]) -> bytes:
    """``codec.encode({"events": [e.to_dict() for e in events]})``, without the dicts for JSON."""
    if codec is JSON:
        try:
            return _encode(_JsonBatch([_JsonEvent(*event) for event in events]))
        except _CANNOT_WRITE:
            pass
    return codec.encode({"events": [event.to_dict() for event in events]})
