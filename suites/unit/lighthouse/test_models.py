"""The event model and the error catalogue: what a client can construct, and what it is told when it cannot."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lighthouse
from lighthouse import Event, EventFilter, EventStore, EventType
from lighthouse.errors import (
    BatchTooLarge,
    ConcurrencyConflict,
    DuplicateEvent,
    EventTooLarge,
    InvalidCursor,
    InvalidEvent,
    InvalidQuery,
    LighthouseError,
    StoreReadOnly,
    WriteFailed,
)
from lighthouse.models import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_QUERY_LIMIT


@pytest.mark.parametrize("kind", list(EventType))
def test_event_type_accepts_the_enum_and_its_string_value(kind: EventType) -> None:
    from_enum = Event(kind, aggregate_id="a:1")
    from_text = Event(kind.value, aggregate_id="a:1")
    assert from_enum.event_type is kind
    assert from_text.event_type is kind


def test_event_types_cover_the_coordination_platform() -> None:
    expected = {
        "command_received", "command_validated", "command_approved", "command_rejected", "command_escalated",
        "command_executed", "command_failed", "agent_registered", "agent_heartbeat", "agent_disconnected",
        "session_started", "session_ended", "pair_session_requested", "pair_session_accepted",
        "file_created", "file_modified", "file_deleted", "snapshot_created", "snapshot_restored",
        "system_started", "system_shutdown", "degradation_entered", "degradation_cleared",
        "corruption_detected", "custom",
    }  # fmt: skip
    assert expected <= {t.value for t in EventType}
    assert any("suggestion" in t.value for t in EventType)
    assert any("review" in t.value for t in EventType)


@pytest.mark.parametrize("bad", ["no_such_type", "", "COMMAND_RECEIVED", 3, None, b"custom"])
def test_unknown_event_type_is_an_invalid_event(bad: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        Event(bad, aggregate_id="a:1")  # type: ignore[arg-type]
    assert caught.value.details.get("field") == "event_type"


def test_ids_are_uuid_strings_by_default_and_accept_uuid_objects() -> None:
    generated = Event(EventType.CUSTOM, aggregate_id="a:1")
    assert isinstance(generated.event_id, str)
    assert uuid.UUID(generated.event_id).version == 4
    given_id, correlation, causation = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    event = Event(
        EventType.CUSTOM, aggregate_id="a:1", event_id=given_id, correlation_id=correlation, causation_id=causation
    )
    assert (event.event_id, event.correlation_id, event.causation_id) == (
        str(given_id),
        str(correlation),
        str(causation),
    )
    assert Event(EventType.CUSTOM, aggregate_id="a:1").event_id != generated.event_id


def test_causation_id_naming_a_stored_event_finds_its_consequences(tmp_path: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(tmp_path / "s") as store:
            cause = await store.append(Event(EventType.COMMAND_RECEIVED, aggregate_id="command:1"))
            effect = await store.append(
                Event(EventType.COMMAND_APPROVED, aggregate_id="command:1", causation_id=cause.event_id)
            )
            await store.append(Event(EventType.COMMAND_APPROVED, aggregate_id="command:2"))
            page = await store.query(EventFilter(causation_id=cause.event_id))
            assert [e.event_id for e in page.events] == [effect.event_id]
            assert (await store.get(page.events[0].causation_id)).event_id == cause.event_id

    run(scenario())


def test_aggregate_type_defaults_to_the_aggregate_id_prefix() -> None:
    assert Event(EventType.CUSTOM, aggregate_id="command:42").aggregate_type == "command"
    assert Event(EventType.CUSTOM, aggregate_id="x", aggregate_type="pair").aggregate_type == "pair"


def test_events_are_immutable() -> None:
    event = Event(EventType.CUSTOM, aggregate_id="a:1")
    with pytest.raises(AttributeError):
        event.aggregate_id = "b:2"  # type: ignore[misc]
    changed = event.replace(aggregate_id="b:2")
    assert (event.aggregate_id, changed.aggregate_id, changed.event_id) == ("a:1", "b:2", event.event_id)


@pytest.mark.parametrize(
    "field, value",
    [
        ("aggregate_id", ""),
        ("aggregate_id", "x" * 257),
        ("aggregate_id", 7),
        ("aggregate_id", None),
        ("event_id", ""),
        ("event_id", 7),
        ("correlation_id", b"bytes"),
        ("causation_id", 1.5),
        ("source_agent", None),
        ("source_agent", ""),
        ("aggregate_type", 3),
        ("timestamp", math.nan),
        ("timestamp", math.inf),
        ("timestamp", True),
        ("timestamp", "2024-01-01"),
        ("schema_version", 0),
        ("schema_version", True),
        ("schema_version", "1"),
        ("schema_version", 1.0),
        ("data", [1, 2]),
        ("data", "text"),
        ("metadata", 5),
    ],
)
def test_every_field_rejects_the_wrong_type_with_an_invalid_event(field: str, value: object) -> None:
    fields: dict[str, object] = {"aggregate_id": "a:1", field: value}
    with pytest.raises(InvalidEvent) as caught:
        Event(EventType.CUSTOM, **fields)  # type: ignore[arg-type]
    assert caught.value.details.get("field") == field
    assert caught.value.code == "invalid_event"


def test_id_of_exactly_the_limit_is_accepted() -> None:
    assert len(Event(EventType.CUSTOM, aggregate_id="x" * 256).aggregate_id) == 256


def test_from_dict_rejects_unknown_and_missing_fields() -> None:
    with pytest.raises(InvalidEvent, match="unknown event fields"):
        Event.from_dict({"event_type": "custom", "aggregate_id": "a", "sneaky": 1})
    with pytest.raises(InvalidEvent, match="event_type"):
        Event.from_dict({"aggregate_id": "a"})
    with pytest.raises(InvalidEvent, match="aggregate_id"):
        Event.from_dict({"event_type": "custom"})
    with pytest.raises(InvalidEvent):
        Event.from_dict(["event_type", "custom"])  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(
    kind=st.sampled_from(list(EventType)),
    aggregate=st.text(min_size=1, max_size=40),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    version=st.integers(1, 50),
)
@settings(max_examples=60, deadline=None)
def test_to_dict_and_from_dict_round_trip(kind: EventType, aggregate: str, data: dict, version: int) -> None:
    event = Event(kind, aggregate_id=aggregate, data=data, schema_version=version, source_agent="agent")
    again = Event.from_dict(event.to_dict())
    assert again == event
    assert again.to_dict()["event_type"] == kind.value


def test_limits_are_the_documented_ones() -> None:
    assert MAX_EVENT_BYTES == 1024 * 1024
    assert (MAX_BATCH_EVENTS, MAX_BATCH_BYTES) == (1000, 10 * 1024 * 1024)
    assert MAX_QUERY_LIMIT == 10_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event_types": ["nope"]},
        {"event_types": []},
        {"aggregate_ids": []},
        {"aggregate_ids": [1]},
        {"source_agents": [""]},
        {"correlation_id": ""},
        {"causation_id": 5},
        {"from_sequence": -1},
        {"to_sequence": True},
        {"recorded_after": "yesterday"},
        {"recorded_after": float("nan")},
        {"recorded_before": float("inf")},
    ],
)
def test_event_filter_rejects_bad_fields_with_invalid_query(kwargs: dict) -> None:
    with pytest.raises(InvalidQuery):
        EventFilter(**kwargs)


def test_event_filter_accepts_a_single_string_and_parses_types() -> None:
    flt = EventFilter(event_types="custom", aggregate_ids="a:1")
    assert flt.event_types == frozenset({EventType.CUSTOM})
    assert flt.aggregate_ids == frozenset({"a:1"})
    assert EventFilter().is_empty and not flt.is_empty


ERROR_TYPES = [
    exported
    for exported in (getattr(lighthouse, name) for name in lighthouse.__all__)
    if isinstance(exported, type) and issubclass(exported, LighthouseError)
]


def test_every_error_has_a_distinct_stable_code_and_a_retry_flag() -> None:
    codes = {cls: cls.code for cls in ERROR_TYPES if cls is not LighthouseError}
    assert len(set(codes.values())) == len(codes), codes
    for cls in codes:
        assert isinstance(cls.retryable, bool)
        body = cls("boom", detail=1).to_dict()
        assert body == {"error": cls.code, "message": "boom", "retryable": cls.retryable, "details": {"detail": 1}}


def test_retry_flags_say_whether_retrying_can_help() -> None:
    assert ConcurrencyConflict.retryable and StoreReadOnly.retryable and WriteFailed.retryable
    assert not InvalidEvent.retryable and not DuplicateEvent.retryable and not InvalidCursor.retryable
    # Size errors are input errors: a client catching InvalidEvent also sees them.
    assert issubclass(EventTooLarge, InvalidEvent) and issubclass(BatchTooLarge, InvalidEvent)
    assert issubclass(WriteFailed, StoreReadOnly) and issubclass(InvalidCursor, InvalidQuery)
