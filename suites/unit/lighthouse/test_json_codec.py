"""The fast JSON library gives the answers the standard library gave: the same values, the same refusals.

Request bodies are decoded by msgspec first and by ``json`` only when msgspec refuses; append answers are
encoded by msgspec (``lighthouse.server.answers``). Both are checked here against the plain standard-library path on generated documents,
valid and broken (mutated bytes, other encodings, NaN, huge numbers, lone surrogates, deep nesting).
"""

from __future__ import annotations

import codecs
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse.models import EVENT_FIELDS, Event, EventType
from lighthouse.server import codec as codec_module
from lighthouse.server.answers import batch_answer, event_answer
from lighthouse.server.codec import JSON, MSGPACK, decode_body
from lighthouse.server.problems import ApiError

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**70, max_value=2**70), st.floats(),
    st.text(max_size=6), st.sampled_from(["\ud800", "é", "\u2028", "\x00", '"\\']),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                            max_size=4), max_leaves=25)


def verdict(decode: Any, raw: bytes) -> tuple[str, Any]:
    """A comparable outcome: the value's repr (1, 1.0 and True differ) or the refusal's status, code and message."""
    try:
        return "ok", repr(decode(raw))
    except ApiError as exc:
        return "refused", (exc.status, exc.body())


def stdlib(raw: bytes) -> tuple[str, Any]:
    return verdict(codec_module._decode_json_by_stdlib, raw)  # the decoder before msgspec, unchanged


def current(raw: bytes) -> tuple[str, Any]:
    return verdict(lambda body: decode_body(body, "application/json"), raw)


def documents() -> st.SearchStrategy[bytes]:
    rendered = st.builds(lambda v, ascii_only, indent: json.dumps(v, ensure_ascii=ascii_only, indent=indent)
                         .encode("utf-8", "surrogatepass"), values, st.booleans(), st.sampled_from([None, 0, 2]))
    mutated = st.builds(_mutate, rendered, st.integers(min_value=0), st.binary(max_size=3), st.integers(0, 3))
    encoded = st.builds(lambda v, enc: json.dumps(v).encode(enc), values, st.sampled_from(
        ["utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"]))
    return st.one_of(rendered, mutated, encoded, st.binary(min_size=1, max_size=12))


def _mutate(raw: bytes, at: int, insert: bytes, remove: int) -> bytes:
    at = at % (len(raw) + 1)
    return raw[:at] + insert + raw[at + remove:]


@settings(max_examples=600, deadline=None)
@given(raw=documents())
def test_decoding_matches_the_standard_library(raw: bytes) -> None:
    if not raw:
        raw = b" "
    assert current(raw) == stdlib(raw)


@pytest.mark.parametrize("raw", [
    b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e400", b'"\\ud800"', b'"\xed\xa0\x80"', b"\xef\xbb\xbf{}",
    b"1" * 5000, b"1" * 500, b"18446744073709551616", b"-9223372036854775809", b"[" * 70 + b"]" * 70,
    b"[" * 3000 + b"]" * 3000, b'{"a":1,"a":2}', b"[1,]", b"{'a':1}", b'"\x01"', b"-0", b"-0.0", b"1E5", b"0.1e-400",
    codecs.BOM_UTF16_LE + '{"a": 1}'.encode("utf-16-le"),
])
def test_edge_cases_decode_as_the_standard_library_does(raw: bytes) -> None:
    assert current(raw) == stdlib(raw)


def test_msgspec_takes_the_common_body() -> None:
    """The fast path is the one taken (were it always refusing, the checks above would prove nothing)."""
    body = b'{"event_id":"e-1","event_type":"custom","aggregate_id":"a:1","timestamp":1.5,"data":{"x":[1,2.5,"y"]}}'
    assert codec_module._FAST_JSON_DECODE(body) == json.loads(body)
    assert current(body) == stdlib(body) == ("ok", repr(json.loads(body)))


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    if isinstance(value, list):
        return all(map(_finite, value))
    return True


def _stored(data: Any, kind: EventType, n: int) -> Event:
    event = Event(kind, aggregate_id=f"agg:{n}", event_id=f"e-{n}", data={"v": data}, metadata={"n": n},
                  correlation_id="c" if n % 2 else None, timestamp=1_700_000_000.25 + n)
    return event.replace(sequence=n + 1, recorded_at=1_700_000_001.5, aggregate_version=n)


@settings(max_examples=300, deadline=None)
@given(data=st.lists(values.filter(_finite), min_size=1, max_size=4), kind=st.sampled_from(list(EventType)),
       from_disk=st.booleans())
def test_append_answers_say_what_the_standard_library_wrote(data: list[Any], kind: EventType, from_disk: bool) -> None:
    """The same members, order and values as ``JSON.encode(event.to_dict())`` (the answer before msgspec)."""
    events = [_stored(value, kind, n) for n, value in enumerate(data)]
    if from_disk:  # events read back hold the type as a plain string
        events = [e.replace(event_type=str(e[1])) for e in events]
    single = event_answer(JSON, events[0])
    assert list(json.loads(single)) == list(EVENT_FIELDS)
    assert repr(json.loads(single)) == repr(json.loads(JSON.encode(events[0].to_dict())))
    batch = batch_answer(JSON, events)
    assert repr(json.loads(batch)) == repr(json.loads(JSON.encode({"events": [e.to_dict() for e in events]})))
    assert outcome(batch_answer, MSGPACK, events) == outcome(MSGPACK.encode, {"events": [e.to_dict() for e in events]})
    assert outcome(event_answer, MSGPACK, events[0]) == outcome(MSGPACK.encode, events[0].to_dict())


def outcome(call: Any, *args: Any) -> Any:
    """The bytes, or the kind of error (MessagePack cannot hold a lone surrogate, with or without the answers)."""
    try:
        return call(*args)
    except UnicodeEncodeError as exc:
        return type(exc)


@pytest.mark.parametrize("data", ["\ud800", 2**70, -2**64])
def test_what_msgspec_cannot_write_is_written_by_the_standard_library(data: Any) -> None:
    event = _stored(data, EventType.CUSTOM, 1)
    assert event_answer(JSON, event) == JSON.encode(event.to_dict())
    assert batch_answer(JSON, [event, event]) == JSON.encode({"events": [event.to_dict()] * 2})


@pytest.mark.parametrize("leaf", ['"s"', "1", "1.5", "null", "true", "[]", "{}", "[1]", '{"k":1}'])
@pytest.mark.parametrize("depth", [62, 63, 64, 65])
def test_the_nesting_line_is_where_the_standard_library_path_draws_it(leaf: str, depth: int) -> None:
    as_lists = ("[" * depth + leaf + "]" * depth).encode()
    as_objects = ('{"k":' * depth + leaf + "}" * depth).encode()
    mixed = ('[{"k":' * (depth // 2) + leaf + "}]" * (depth // 2)).encode()
    for raw in (as_lists, as_objects, mixed):
        assert current(raw) == stdlib(raw)
    empty_at_depth = ("[" * depth + "[]" + "]" * depth).encode()  # an empty container may sit at the line itself
    assert current(empty_at_depth)[0] == ("ok" if depth <= 64 else "refused")
