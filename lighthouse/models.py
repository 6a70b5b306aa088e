"""The event model: what agents write, what the store returns, and how to ask for it.

``Event`` is an immutable tuple subclass: the store decodes hundreds of thousands of events per
second during replay, and a tuple is built in one C call where a dataclass costs a Python
``__init__`` per event. User code constructs events with keywords and gets validation.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lighthouse.errors import InvalidEvent, InvalidQuery

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_QUERY_LIMIT",
    "Event",
    "EventFilter",
    "EventType",
    "QueryResult",
    "Snapshot",
    "default_aggregate_type",
]

MAX_EVENT_BYTES = 1024 * 1024
MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 10 * 1024 * 1024
MAX_QUERY_LIMIT = 10_000
_MAX_ID_CHARS = 256


class EventType(StrEnum):
    """Event types of the multi-agent coordination platform."""

    COMMAND_RECEIVED = "command_received"
    COMMAND_VALIDATED = "command_validated"
    COMMAND_APPROVED = "command_approved"
    COMMAND_REJECTED = "command_rejected"
    COMMAND_ESCALATED = "command_escalated"
    COMMAND_EXECUTED = "command_executed"
    COMMAND_FAILED = "command_failed"
    AGENT_REGISTERED = "agent_registered"
    AGENT_HEARTBEAT = "agent_heartbeat"
    AGENT_DISCONNECTED = "agent_disconnected"
    SESSION_STARTED = "session_started"
    SESSION_ENDED = "session_ended"
    PAIR_SESSION_REQUESTED = "pair_session_requested"
    PAIR_SESSION_ACCEPTED = "pair_session_accepted"
    PAIR_SUGGESTION_MADE = "pair_suggestion_made"
    PAIR_REVIEW_COMPLETED = "pair_review_completed"
    FILE_CREATED = "file_created"
    FILE_MODIFIED = "file_modified"
    FILE_DELETED = "file_deleted"
    SNAPSHOT_CREATED = "snapshot_created"
    SNAPSHOT_RESTORED = "snapshot_restored"
    SYSTEM_STARTED = "system_started"
    SYSTEM_SHUTDOWN = "system_shutdown"
    DEGRADATION_ENTERED = "degradation_entered"
    DEGRADATION_CLEARED = "degradation_cleared"
    CORRUPTION_DETECTED = "corruption_detected"
    CUSTOM = "custom"

    @classmethod
    def parse(cls, value: Any) -> EventType:
        """Accept the enum or its string value; anything else is an ``InvalidEvent``."""
        if isinstance(value, EventType):
            return value
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        raise InvalidEvent(f"unknown event type {value!r}", field="event_type")


#: Position of each field in the tuple. The first eleven are what the client chose and are stored
#: as one record; the last three are assigned by the store and stored once per frame.
EVENT_FIELDS = (
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
    "sequence",
    "recorded_at",
    "aggregate_version",
)
CLIENT_FIELD_COUNT = 11

_EventTuple = namedtuple("_EventTuple", EVENT_FIELDS)  # type: ignore[misc]


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_event_id() -> str:
    """A random (version 4) UUID in its text form, as ``str(uuid.uuid4())`` gives, at a third of its cost
    (no ``UUID`` object in between: an application builds one per event)."""
    h = "%032x" % ((int.from_bytes(os.urandom(16)) & _V4_CLEAR) | _V4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def default_aggregate_type(aggregate_id: str, kind: EventType) -> str:
    """An event's ``aggregate_type`` when none is given: the id's prefix before ``:``, else the type's first word."""
    return aggregate_id.partition(":")[0] if ":" in aggregate_id else kind.value.partition("_")[0]


def _optional_id(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str and 0 < len(value) <= _MAX_ID_CHARS:  # the common case, checked first
        return value
    return _required_id(name, value)


def _required_id(name: str, value: Any) -> str:
    if type(value) is str and 0 < len(value) <= _MAX_ID_CHARS:
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string, got {type(value).__name__}", field=name)
    if not value or len(value) > _MAX_ID_CHARS:
        raise InvalidEvent(f"{name} must be 1..{_MAX_ID_CHARS} characters", field=name)
    return value


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is dict:  # the common case: a copy, without the abstract-base-class check
        return value.copy()
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"{name} must be a mapping, got {type(value).__name__}", field=name)
    return dict(value)


class Event(_EventTuple):
    """One immutable event. ``sequence``, ``recorded_at`` and ``aggregate_version`` are set by the store.

    Construct with keywords: ``Event(EventType.COMMAND_RECEIVED, aggregate_id="command:1", data={...})``.
    ``event_type`` accepts the enum or its string value; ids accept ``uuid.UUID``; ``causation_id`` may
    name another event's id.
    """

    __slots__ = ()

    def __new__(
        cls,
        event_type: EventType | str,
        *,
        aggregate_id: str,
        aggregate_type: str | None = None,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        event_id: str | uuid.UUID | None = None,
        correlation_id: str | uuid.UUID | None = None,
        causation_id: str | uuid.UUID | None = None,
        source_agent: str = "system",
        timestamp: float | None = None,
        schema_version: int = 1,
        sequence: int | None = None,
        recorded_at: float | None = None,
        aggregate_version: int | None = None,
    ) -> Event:
        kind = event_type if type(event_type) is EventType else EventType.parse(event_type)
        aggregate = _required_id("aggregate_id", aggregate_id)
        if aggregate_type is None:
            aggregate_type = default_aggregate_type(aggregate, kind)
        elif not isinstance(aggregate_type, str) or len(aggregate_type) > _MAX_ID_CHARS:
            raise InvalidEvent("aggregate_type must be a string", field="aggregate_type")
        if timestamp is None:
            timestamp = time.time()
        elif isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
            raise InvalidEvent("timestamp must be a finite number of seconds since the epoch", field="timestamp")
        if isinstance(schema_version, bool) or not isinstance(schema_version, int) or schema_version < 1:
            raise InvalidEvent("schema_version must be an integer >= 1", field="schema_version")
        return tuple.__new__(
            cls,
            (
                _required_id("event_id", event_id) if event_id is not None else new_event_id(),
                kind,
                aggregate,
                aggregate_type,
                _optional_id("correlation_id", correlation_id),
                _optional_id("causation_id", causation_id),
                _required_id("source_agent", source_agent),
                float(timestamp),
                _mapping("data", data),
                _mapping("metadata", metadata),
                schema_version,
                sequence,
                recorded_at,
                aggregate_version,
            ),
        )

    @property  # type: ignore[override]
    def event_type(self) -> EventType:
        # Decoded events hold the string value; StrEnum lookup turns it back into the enum (a freshly built
        # event holds the enum itself: every subscriber asks for it, so it is not looked up again).
        kind = self[1]
        return kind if type(kind) is EventType else EventType(kind)

    def client_record(self) -> tuple[Any, ...]:
        """The fields the client chose, in storage order (event type as its string value)."""
        return (self[0], str(self[1]), *self[2:CLIENT_FIELD_COUNT])

    def replace(self, **changes: Any) -> Event:
        """A copy with some fields changed (``namedtuple._replace`` without bypassing the type)."""
        return self._replace(**changes)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (event type as its string value)."""
        out = dict(zip(EVENT_FIELDS, self))
        out["event_type"] = str(self[1])
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        """Build from a dict such as :meth:`to_dict` produced or a client sent; unknown keys are an error."""
        if not isinstance(raw, Mapping):
            raise InvalidEvent("an event must be a JSON object")
        unknown = set(raw) - set(EVENT_FIELDS)
        if unknown:
            raise InvalidEvent(f"unknown event fields: {sorted(unknown)}", fields=sorted(unknown))
        if "event_type" not in raw:
            raise InvalidEvent("event_type is required", field="event_type")
        if "aggregate_id" not in raw:
            raise InvalidEvent("aggregate_id is required", field="aggregate_id")
        kwargs = {k: v for k, v in raw.items() if k != "event_type"}
        return cls(raw["event_type"], **kwargs)

    def __repr__(self) -> str:
        return (
            f"Event(sequence={self.sequence}, event_type={str(self[1])!r}, event_id={self.event_id!r}, "
            f"aggregate_id={self.aggregate_id!r})"
        )


def _string_set(name: str, values: Iterable[Any] | None) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = (values,)
    out = frozenset(values)
    if not out or not all(isinstance(v, str) and v for v in out):
        raise InvalidQuery(f"{name} must be a non-empty collection of non-empty strings", field=name)
    return out


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a query, replay or subscription wants. Empty means everything.

    Set fields are ANDed together; values inside one field are ORed.
    """

    event_types: frozenset[EventType] | None = None
    aggregate_ids: frozenset[str] | None = None
    source_agents: frozenset[str] | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    from_sequence: int | None = None
    to_sequence: int | None = None
    recorded_after: float | None = None
    recorded_before: float | None = None

    def __post_init__(self) -> None:
        if self.event_types is not None:
            raw = (self.event_types,) if isinstance(self.event_types, str) else self.event_types
            try:
                kinds = frozenset(EventType.parse(t) for t in raw)
            except InvalidEvent as exc:
                raise InvalidQuery(str(exc), field="event_types") from None
            if not kinds:
                raise InvalidQuery("event_types must not be empty", field="event_types")
            object.__setattr__(self, "event_types", kinds)
        object.__setattr__(self, "aggregate_ids", _string_set("aggregate_ids", self.aggregate_ids))
        object.__setattr__(self, "source_agents", _string_set("source_agents", self.source_agents))
        for name in ("correlation_id", "causation_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidQuery(f"{name} must be a non-empty string", field=name)
        for name in ("from_sequence", "to_sequence"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidQuery(f"{name} must be a non-negative integer", field=name)
        for name in ("recorded_after", "recorded_before"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise InvalidQuery(f"{name} must be a finite number of seconds since the epoch", field=name)

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)  # type: ignore[attr-defined]

    def matches(self, event: Event) -> bool:
        """The exact predicate; indexes only narrow candidates, this decides."""
        return self.predicate()(event)

    def field_tests(self) -> tuple[tuple[int, frozenset[Any]], ...]:
        """(position in ``Event``, allowed values) of every value field this filter sets (not the bounds)."""
        return tuple((position, allowed) for position, allowed in (
            (1, self.event_types),
            (2, self.aggregate_ids),
            (6, self.source_agents),
            (4, None if self.correlation_id is None else frozenset((self.correlation_id,))),
            (5, None if self.causation_id is None else frozenset((self.causation_id,))),
        ) if allowed is not None)

    def predicate(self) -> Callable[[Event], bool]:
        """``matches`` as one test that looks only at the fields this filter sets: for many events."""
        members = self.field_tests()
        first = -math.inf if self.from_sequence is None else self.from_sequence
        last = math.inf if self.to_sequence is None else self.to_sequence
        after = -math.inf if self.recorded_after is None else self.recorded_after
        before = math.inf if self.recorded_before is None else self.recorded_before
        timed = self.recorded_after is not None or self.recorded_before is not None

        def test(event: Event) -> bool:
            for position, allowed in members:
                if event[position] not in allowed:
                    return False
            if not first <= event[11] <= last:
                return False
            return not timed or (after <= event[12] and (event[12] < before))

        return test

    def fingerprint(self) -> str:
        """A stable text form, bound into cursors so a cursor cannot be replayed against another filter."""
        parts = []
        for name in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            if isinstance(value, frozenset):
                value = sorted(str(v) for v in value)
            parts.append(f"{name}={value!r}")
        return ";".join(parts)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One page of a query; pass ``next_cursor`` back to get the next page (``None``: no more)."""

    events: list[Event]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A projection's state as of ``at_sequence``: replaying the events after it gives the current state."""

    name: str
    at_sequence: int
    state: Any
    created_at: float
    incremental_chain: int = 0
    details: dict[str, Any] = field(default_factory=dict)
