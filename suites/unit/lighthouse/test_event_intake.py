"""The one-pass builder of common events builds exactly what the full field-by-field path builds, or nothing."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse.bridge.vocabulary import BRIDGE_EVENT_TYPES
from lighthouse.errors import LighthouseError
from lighthouse.models import CLIENT_FIELD_COUNT, MAX_BATCH_EVENTS, Event, EventType
from lighthouse.server.auth import Principal, Role
from lighthouse.server.codec import decode_body
from lighthouse.server.event_intake import quick_batch, quick_event, quick_single
from lighthouse.server.problems import ApiError
from lighthouse.server.routes.events import event_from_body

AGENT = Principal("intake-agent", Role.AGENT, expires_at=2**40)
ADMIN = Principal("intake-admin", Role.ADMIN, expires_at=2**40)

edge_ids = st.sampled_from(["e-1", "a:b", "x" * 256, "x" * 257, "", "lh:1", "LH:2", "lH:3", "lh-4", "/x", "é", ".x",
                            "e-1\n", None])
ids = st.one_of(edge_ids, edge_ids, st.text(max_size=5), st.integers() | st.booleans() | st.floats())  # edges: 1/2
numbers = st.one_of(st.none(), st.integers(), st.floats(), st.booleans(), st.sampled_from([1e15, -1e15, 1e15 + 1, 2**31,
                                                                                          2**31 - 1, 0, 1, 2.0]))
mappings = st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.lists(st.integers()),
                     st.text(max_size=2))
VALID = {"event_id": "e-1", "event_type": "custom", "aggregate_id": "agg:1", "timestamp": 1_700_000_000.5,
         "data": {"k": 1}}
FIELDS = {
    "event_id": ids, "aggregate_id": ids, "aggregate_type": ids, "correlation_id": ids, "causation_id": ids,
    "source_agent": ids, "event_type": st.one_of(st.sampled_from([k.value for k in EventType]), ids),
    "timestamp": numbers, "schema_version": numbers, "data": mappings, "metadata": mappings,
    "sequence": numbers, "colour": ids,
}
one_change = st.one_of([st.fixed_dictionaries({name: values}) for name, values in FIELDS.items()])
changes = st.builds(lambda first, second: {**first, **second}, one_change, st.one_of(st.just({}), one_change))
#: a valid event with a few fields changed or dropped, so that most examples sit near the line
bodies = st.builds(lambda change, dropped: {k: v for k, v in {**VALID, **change}.items() if k not in dropped},
                   changes, st.sets(st.sampled_from(sorted(VALID)), max_size=2))


def full_path(raw: Any, principal: Principal) -> Event | Exception:
    try:
        return event_from_body(raw, principal)
    except (LighthouseError, ApiError) as exc:
        return exc


def assert_same_event(quick: Event, full: Event, raw: dict[str, Any], *, copied: bool = True) -> None:
    if raw.get("timestamp") is None:  # both stamped it with the time they ran
        assert abs(quick[7] - full[7]) < 60
        quick, full = quick.replace(timestamp=0.0), full.replace(timestamp=0.0)
    assert quick == full
    assert [type(v) for v in quick] == [type(v) for v in full]
    if copied:  # copies, as the full path makes (a typed batch's mappings are its own: nothing else holds them)
        assert quick[8] is not raw.get("data") and quick[9] is not raw.get("metadata")
    # the store packs a batch's records from the tuple's first fields: the same bytes as client_record(), or the
    # same refusal for a value msgpack cannot hold (an integer over 64 bits: the store refuses it as InvalidEvent)
    assert packed(quick[:CLIENT_FIELD_COUNT]) == packed(full.client_record())


def packed(value: Any) -> bytes | str:
    try:
        return msgpack.packb(value)  # type: ignore[no-any-return]
    except (OverflowError, TypeError, ValueError) as exc:
        return f"unpackable: {type(exc).__name__}"


@settings(max_examples=500, deadline=None)
@given(raw=bodies, principal=st.sampled_from([AGENT, ADMIN]))
def test_what_it_builds_is_what_the_full_path_builds(raw: dict[str, Any], principal: Principal) -> None:
    quick = quick_event(raw, principal.agent_id, bridge_types=principal is ADMIN)
    full = full_path(raw, principal)
    if quick is not None:
        assert isinstance(full, Event), full
        assert_same_event(quick, full, raw)


EDGE_IDS = ["e-1", "a:b", "x" * 256, "x" * 257, "é" * 256, "", "lh:1", "LH:2", "lH:3", "lh-4", "e-1\n", "/x", "é",
            ".x", None, 7, True, 1.5, ["e"]]
EDGE_NUMBERS = [None, 0, 1, -1, 2, 2.0, 1.5, 1e15, -1e15, 1e15 + 1, 2**31 - 1, 2**31, 2**64, True, False, math.nan,
                math.inf, "1"]
EDGE_MAPPINGS = [None, {}, {"k": [1]}, [], "x", 1]
EDGES: dict[str, list[Any]] = {
    "event_id": EDGE_IDS, "aggregate_id": EDGE_IDS, "aggregate_type": EDGE_IDS, "correlation_id": EDGE_IDS,
    "causation_id": EDGE_IDS, "source_agent": EDGE_IDS, "event_type": [k.value for k in EventType] + EDGE_IDS,
    "timestamp": EDGE_NUMBERS, "schema_version": EDGE_NUMBERS, "data": EDGE_MAPPINGS, "metadata": EDGE_MAPPINGS,
    "sequence": [None, 1], "colour": [1],
}
EDGE_CHANGES = [(name, value) for name, values in EDGES.items() for value in values]


def test_every_pair_of_edge_values_is_built_as_the_full_path_builds_it() -> None:
    """Every edge value of every field, alone and with every edge value of another field (or a dropped field)."""
    quick_count = 0
    singles: list[dict[str, Any]] = [{name: value} for name, value in EDGE_CHANGES]
    pairs = ({a: x, b: y} for (a, x), (b, y) in itertools.combinations(EDGE_CHANGES, 2) if a != b)
    for change in itertools.chain(singles, pairs):
        for dropped in (None, *VALID):
            raw = {k: v for k, v in {**VALID, **change}.items() if k != dropped}
            for principal in (AGENT, ADMIN):
                quick = quick_event(raw, principal.agent_id, bridge_types=principal is ADMIN)
                if quick is not None:
                    full = full_path(raw, principal)
                    assert isinstance(full, Event), (raw, full)
                    assert_same_event(quick, full, raw)
                    quick_count += 1
    assert quick_count > 1000  # the quick path was really taken, over and over


COMMON = {"event_id": "e-1", "event_type": "custom", "aggregate_id": "bench:1", "timestamp": time.time(),
          "data": {"payload": "x" * 20}}


@pytest.mark.parametrize("raw", [
    COMMON,
    {**COMMON, "timestamp": 1_700_000_000, "schema_version": 3, "metadata": {"k": "v"}, "aggregate_type": ""},
    {**COMMON, "correlation_id": "c", "causation_id": "d", "source_agent": "someone-else", "timestamp": None},
    {"event_id": "e-2", "event_type": "file_created", "aggregate_id": "noprefix"},
])
def test_the_common_case_takes_the_quick_path(raw: dict[str, Any]) -> None:
    quick = quick_event(raw, AGENT.agent_id)
    assert quick is not None
    full = full_path(raw, AGENT)
    assert isinstance(full, Event)
    assert_same_event(quick, full, raw)
    assert quick[6] == AGENT.agent_id


@pytest.mark.parametrize("change", [
    {"event_id": None}, {"event_id": "lh:x"}, {"event_id": "a/b"}, {"event_id": "x" * 257}, {"event_type": "nope"},
    {"event_type": "system_started"}, {"event_type": "command_received"}, {"aggregate_id": ""}, {"timestamp": True},
    {"timestamp": math.nan}, {"timestamp": 1e16}, {"schema_version": 2.0}, {"schema_version": 0},
    {"schema_version": 2**31}, {"aggregate_type": "x" * 257}, {"data": []}, {"metadata": "x"}, {"sequence": 1}, {"colour": 1}, {"correlation_id": ""},
])
def test_anything_else_is_left_to_the_full_path(change: dict[str, Any]) -> None:
    assert quick_event({**COMMON, **change}, AGENT.agent_id) is None


@pytest.mark.parametrize("kind", sorted(k.value for k in BRIDGE_EVENT_TYPES))
def test_an_admin_writes_the_bridge_types_through_the_quick_path(kind: str) -> None:
    raw = {**COMMON, "event_type": kind}
    assert quick_event(raw, AGENT.agent_id) is None  # an agent is refused there (403), by the full path
    assert isinstance(full_path(raw, AGENT), ApiError)
    quick = quick_event(raw, ADMIN.agent_id, bridge_types=True)
    full = full_path(raw, ADMIN)
    assert quick is not None and isinstance(full, Event)
    assert_same_event(quick, full, raw)
    assert quick_event({**raw, "event_type": "system_started"}, ADMIN.agent_id, bridge_types=True) is None


def test_only_objects_are_events() -> None:
    assert quick_event([COMMON], AGENT.agent_id) is None
    assert quick_event(COMMON, "") is None


def generic_batch(body: bytes, principal: Principal) -> list[Event | Exception] | Exception:
    """What the general path makes of a JSON batch body: its decode, then each event's own verdict."""
    try:
        decoded = decode_body(body, "application/json")
    except ApiError as exc:
        return exc
    return [full_path(raw, principal) for raw in decoded["events"]]


def assert_batch_as_general_path(body: bytes, principal: Principal) -> bool:
    """``quick_batch`` builds what the general path builds, event by event, or leaves the body to it; True if built."""
    built = quick_batch(body, principal.agent_id, bridge_types=principal is ADMIN)
    if built is None:
        return False
    events, expected = built
    general = generic_batch(body, principal)
    assert isinstance(general, list), general
    raws = json.loads(body)["events"]
    assert len(events) == len(general) == len(raws)
    for quick, full, raw in zip(events, general, raws):
        assert isinstance(full, Event), (raw, full)
        assert_same_event(quick, full, raw, copied=False)
    assert expected == json.loads(body).get("expected_versions")
    return True


@settings(max_examples=300, deadline=None)
@given(raws=st.lists(st.one_of(bodies, st.just(VALID)), min_size=1, max_size=3),  # VALID: more of them are built
       principal=st.sampled_from([AGENT, ADMIN]))
def test_a_typed_batch_builds_what_the_full_path_builds(raws: list[dict[str, Any]], principal: Principal) -> None:
    try:
        body = json.dumps({"events": raws}).encode()
    except (TypeError, ValueError):
        return
    assert_batch_as_general_path(body, principal)


def edge_events() -> Iterator[dict[str, Any]]:
    """VALID with each edge value of each field, alone or with another field dropped."""
    for name, value in EDGE_CHANGES:
        for dropped in (None, *VALID):
            yield {k: v for k, v in {**VALID, name: value}.items() if k != dropped}


def test_typed_batches_of_every_edge_value_are_built_as_the_full_path_builds_them() -> None:
    bodies = [json.dumps({"events": [COMMON, raw]}).encode() for raw in edge_events()]  # NaN/Infinity: not JSON
    built = sum(assert_batch_as_general_path(body, principal) for body in bodies for principal in (AGENT, ADMIN))
    assert built > 150  # the typed path was really taken


@pytest.mark.parametrize("body", [
    {"events": [COMMON] * 3},
    {"events": [COMMON, {**COMMON, "timestamp": 1_700_000_000, "metadata": {"k": [1, {"x": None}]}}],
     "expected_versions": {"bench:1": 0}},
    {"events": [{"event_id": "e-2", "event_type": "file_created", "aggregate_id": "noprefix", "source_agent": "x"}]},
])
def test_common_batches_take_the_typed_path(body: dict[str, Any]) -> None:
    assert assert_batch_as_general_path(json.dumps(body).encode(), AGENT)


@pytest.mark.parametrize("body", [
    b"", b"[]", b'{"events": []}', b'{"events": {}}', b'{"events": [], "colour": 1}', b'{"events": [1]}',
    json.dumps({"events": [COMMON] * (MAX_BATCH_EVENTS + 1)}).encode(),
    json.dumps({"events": [COMMON], "expected_versions": [1]}).encode(),
    json.dumps({"events": [COMMON, {**COMMON, "event_id": "lh:1"}]}).encode(),
    json.dumps({"events": [{**COMMON, "source_agent": 7}]}).encode(),  # the general path takes it (and ignores it)
    b'{"events": [' + json.dumps(COMMON).encode() + b'], "events": []}',  # the last of a repeated key counts
])
def test_anything_else_is_left_to_the_general_path(body: bytes) -> None:
    assert quick_batch(body, AGENT.agent_id) is None


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("field", ["data", "metadata"])
def test_a_typed_batch_refuses_the_nesting_the_general_path_refuses(field: str) -> None:
    """The deepest data the general path accepts is built; one level more is left to it (which refuses it)."""
    verdicts = {}
    for levels in (59, 60, 61):
        body = json.dumps({"events": [{**COMMON, field: {"k": nested(levels)}}]}).encode()
        general = generic_batch(body, AGENT)
        verdicts[levels] = isinstance(general, list)
        assert assert_batch_as_general_path(body, AGENT) == verdicts[levels]
    assert verdicts[59] and not verdicts[61]  # the limit lies in the range tried
    deep = {"events": [COMMON], "expected_versions": {"k": nested(63)}}
    assert isinstance(generic_batch(json.dumps(deep).encode(), AGENT), ApiError)
    assert quick_batch(json.dumps(deep).encode(), AGENT.agent_id) is None


def assert_single_as_general_path(body: bytes, principal: Principal) -> bool:
    """``quick_single`` builds what the general path (decode, then ``event_from_body``) builds from the JSON body
    of one event, or leaves the body to it; True if built."""
    built = quick_single(body, principal.agent_id, bridge_types=principal is ADMIN)
    if built is None:
        return False
    full = full_path(decode_body(body, "application/json"), principal)
    assert isinstance(full, Event), full
    assert_same_event(built, full, json.loads(body), copied=False)
    return True


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(bodies, st.just(VALID)), principal=st.sampled_from([AGENT, ADMIN]))
def test_a_typed_single_event_builds_what_the_full_path_builds(raw: dict[str, Any], principal: Principal) -> None:
    try:
        body = json.dumps(raw).encode()
    except (TypeError, ValueError):
        return
    assert_single_as_general_path(body, principal)


def test_single_events_of_every_edge_value_are_built_as_the_full_path_builds_them() -> None:
    bodies = [json.dumps(raw).encode() for raw in edge_events()]
    built = sum(assert_single_as_general_path(body, principal) for body in bodies for principal in (AGENT, ADMIN))
    assert built > 150  # the typed path was really taken


@pytest.mark.parametrize("body", [
    b"", b"[]", b"1", b'{"events": []}', json.dumps([COMMON]).encode(),
    json.dumps({**COMMON, "event_id": "lh:1"}).encode(), json.dumps({**COMMON, "sequence": 1}).encode(),
    json.dumps({**COMMON, "source_agent": 7}).encode(),  # the general path takes it (and ignores it)
    json.dumps({**COMMON, "event_type": "system_started"}).encode(),
])
def test_any_other_single_body_is_left_to_the_general_path(body: bytes) -> None:
    assert quick_single(body, AGENT.agent_id) is None


def test_a_single_event_needs_an_author_it_can_name() -> None:
    assert quick_single(json.dumps(COMMON).encode(), "") is None
    assert quick_single(json.dumps(COMMON).encode(), "x" * 257) is None


@pytest.mark.parametrize("first, last", [("custom", "system_started"), ("system_started", "custom")])
def test_of_a_repeated_key_the_last_counts_as_in_the_general_path(first: str, last: str) -> None:
    """Both orders: the typed decoder takes the last value, as the generic one does (a server type is refused)."""
    body = json.dumps({**COMMON, "event_type": first}).encode()[:-1] + f', "event_type": "{last}"}}'.encode()
    assert decode_body(body, "application/json")["event_type"] == last
    built = quick_single(body, AGENT.agent_id)
    assert (built is not None) == (last == "custom")
    if built is not None:
        assert assert_single_as_general_path(body, AGENT)


@pytest.mark.parametrize("field", ["data", "metadata"])
def test_a_typed_single_event_refuses_the_nesting_the_general_path_refuses(field: str) -> None:
    verdicts = {}
    for levels in range(58, 66):
        body = json.dumps({**COMMON, field: {"k": nested(levels)}}).encode()
        try:
            decode_body(body, "application/json")
            verdicts[levels] = True
        except ApiError:
            verdicts[levels] = False
        assert assert_single_as_general_path(body, AGENT) == verdicts[levels]
    assert verdicts[58] and not verdicts[65]  # the limit lies in the range tried
