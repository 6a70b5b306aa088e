"""Invalid inputs: every kind exists, each case is really bad in the way it claims, and seeds repeat."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import msgpack
import pytest

from testkit.data import (
    BATCH_TOO_LARGE,
    EVENT_TOO_LARGE,
    EVENT_TYPES,
    INVALID_EVENT,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    REQUIRED_FIELDS,
    AgentSessionGenerator,
    InvalidCase,
    InvalidEventGenerator,
    InvalidKind,
    encoded_size,
)
from testkit.data.invalid import DEEP_NESTING_LEVELS


@pytest.fixture(scope="module")
def cases() -> list[InvalidCase]:
    return list(InvalidEventGenerator(17).cases())


def depth(value: Any) -> int:
    """Nesting depth of dicts, measured without recursion."""
    levels = 0
    while isinstance(value, dict) and value:
        value = next(iter(value.values()))
        levels += 1
    return levels


def is_serialisable(value: Any) -> bool:
    try:
        msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError):
        return False
    return True


def test_every_kind_is_covered_with_the_contracts_error_codes(cases: list[InvalidCase]) -> None:
    assert {c.kind for c in cases} == set(InvalidKind)
    assert {c.expected_error for c in cases} == {INVALID_EVENT, EVENT_TOO_LARGE, BATCH_TOO_LARGE}
    for case in cases:
        kind, payload, error = case  # unpacks as the contract says
        assert (kind, error) == (case.kind, case.expected_error)
        expected_type = {"event": dict, "batch": list, "raw": bytes}[case.target]
        assert isinstance(payload, expected_type)
        assert len(repr(case)) < 200  # never prints a 10 MiB payload


def by_kind(cases: list[InvalidCase], kind: InvalidKind) -> list[InvalidCase]:
    found = [c for c in cases if c.kind is kind]
    assert found
    return found


def test_single_event_cases_are_bad_in_exactly_the_stated_way(cases: list[InvalidCase]) -> None:
    for case in by_kind(cases, InvalidKind.MISSING_FIELD):
        assert set(REQUIRED_FIELDS) - set(case.payload)  # type: ignore[arg-type]
    assert sorted(c.detail for c in by_kind(cases, InvalidKind.MISSING_FIELD)) == sorted(
        f"without {name}" for name in REQUIRED_FIELDS)
    for case in by_kind(cases, InvalidKind.WRONG_TYPE):
        event = case.payload
        assert isinstance(event, dict)
        assert (not isinstance(event["event_type"], str) or not isinstance(event["aggregate_id"], str)
                or not isinstance(event["data"], dict) or not isinstance(event["metadata"], dict)
                or not isinstance(event["schema_version"], int))
    for case in by_kind(cases, InvalidKind.UNKNOWN_EVENT_TYPE):
        assert case.payload["event_type"] not in EVENT_TYPES  # type: ignore[index]
    for case in by_kind(cases, InvalidKind.OVERSIZED):
        assert encoded_size(case.payload) > MAX_EVENT_BYTES  # type: ignore[arg-type]
    (deep,) = by_kind(cases, InvalidKind.DEEP_NESTING)
    assert depth(deep.payload["data"]) == DEEP_NESTING_LEVELS  # type: ignore[index]
    for case in by_kind(cases, InvalidKind.NON_SERIALISABLE):
        assert not is_serialisable(case.payload)
    ids = [c.payload for k in (InvalidKind.EMPTY_ID, InvalidKind.TOO_LONG_ID, InvalidKind.NON_STR_ID)
           for c in by_kind(cases, k)]
    bad_values = Counter(repr(e[name])[:12] for e in ids for name in ("event_id", "aggregate_id")  # type: ignore[index]
                         if not isinstance(e[name], str) or not e[name] or len(e[name]) > 256)  # type: ignore[index]
    assert sum(bad_values.values()) == 6  # empty, too long and non-str, for both ids


def test_each_event_case_damages_one_field_of_a_valid_generated_event() -> None:
    template = next(iter(AgentSessionGenerator(1).events(1)))
    missing = object()
    checked = 0
    for case in InvalidEventGenerator(2, template=template).cases():
        if case.target != "event" or case.kind is InvalidKind.DEEP_NESTING:
            continue
        event = case.payload
        assert isinstance(event, dict)
        differing = {k for k in set(template) | set(event)
                     if k != "event_id" and event.get(k, missing) is not template.get(k, missing)
                     and event.get(k, missing) != template.get(k, missing)}
        assert len(differing) <= 1, (case, differing)
        checked += 1
    assert checked > 20


def test_batch_cases_break_only_the_batch_rules(cases: list[InvalidCase]) -> None:
    (empty,) = by_kind(cases, InvalidKind.EMPTY_BATCH)
    assert empty.payload == []
    (many,) = by_kind(cases, InvalidKind.BATCH_TOO_MANY)
    assert len(many.payload) == MAX_BATCH_EVENTS + 1
    assert all(is_serialisable(e) and encoded_size(e) <= MAX_EVENT_BYTES for e in many.payload)  # type: ignore
    (big,) = by_kind(cases, InvalidKind.BATCH_TOO_BIG)
    sizes = [encoded_size(e) for e in big.payload]  # type: ignore[arg-type]
    assert max(sizes) <= MAX_EVENT_BYTES and len(sizes) <= MAX_BATCH_EVENTS and sum(sizes) > MAX_BATCH_BYTES
    (mixed,) = by_kind(cases, InvalidKind.BATCH_WITH_INVALID)
    assert [e["event_type"] in EVENT_TYPES for e in mixed.payload] == [True, True, True, False, True]  # type: ignore


def test_raw_cases_do_not_decode_into_an_event(cases: list[InvalidCase]) -> None:
    raws = [c for c in cases if c.target == "raw"]
    assert len(raws) >= 8
    for case in raws:
        assert isinstance(case.payload, bytes)
        outcomes = []
        for decode in (lambda b: msgpack.unpackb(b, raw=False), lambda b: json.loads(b)):
            try:
                decoded = decode(case.payload)
            except (ValueError, RecursionError, msgpack.UnpackException):
                outcomes.append("refused")
            else:
                outcomes.append("mapping" if isinstance(decoded, dict) and depth(decoded) < 100 else "not an event")
        assert "mapping" not in outcomes, (case, outcomes)


def test_the_same_seed_gives_the_same_cases() -> None:
    def fingerprint(seed: int) -> list[Any]:
        out = []
        for case in InvalidEventGenerator(seed).cases():
            payload = case.payload
            if case.kind in (InvalidKind.NON_SERIALISABLE, InvalidKind.DEEP_NESTING):
                payload = {k: v for k, v in payload.items() if k != "data"}  # type: ignore[union-attr]
            out.append((case.kind.value, case.detail, msgpack.packb(payload, use_bin_type=True)))
        return out

    assert fingerprint(5) == fingerprint(5)
    assert fingerprint(5) != fingerprint(6)


def test_draw_picks_among_the_requested_targets() -> None:
    generator = InvalidEventGenerator(9)
    assert {generator.draw().target for _ in range(200)} == {"event"}
    assert {generator.draw(("raw",)).target for _ in range(50)} == {"raw"}
    with pytest.raises(ValueError, match="no invalid kind"):
        generator.draw(())
    with pytest.raises(TypeError):
        InvalidEventGenerator(1.5)  # type: ignore[arg-type]
