"""Every kind of bad input a store must refuse, with the error code it must refuse it with.

Bad-input tests iterate :meth:`InvalidEventGenerator.cases` (each kind once) or draw at random. A case
unpacks as ``kind, payload, expected_error`` and also says whether it targets a single append
(``event``), a batch append (``batch``) or a wire decoder (``raw`` bytes).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

import msgpack

from testkit.data.events import (
    BATCH_TOO_LARGE,
    EVENT_TOO_LARGE,
    INVALID_EVENT,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    SCHEMA_VERSION,
    random_uuid,
)

__all__ = ["DEEP_NESTING_LEVELS", "REQUIRED_FIELDS", "InvalidCase", "InvalidEventGenerator", "InvalidKind"]

#: Fields whose absence must be refused. ``event_id`` is left out: a store may assign one itself.
REQUIRED_FIELDS: Final[tuple[str, ...]] = ("event_type", "aggregate_id")
DEEP_NESTING_LEVELS: Final[int] = 10_000
TOO_LONG_ID_CHARS: Final[int] = 10_000

Target = Literal["event", "batch", "raw"]


class InvalidKind(StrEnum):
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    OVERSIZED = "oversized"
    DEEP_NESTING = "deep_nesting"
    NON_SERIALISABLE = "non_serialisable"
    EMPTY_ID = "empty_id"
    TOO_LONG_ID = "too_long_id"
    NON_STR_ID = "non_str_id"
    EMPTY_BATCH = "empty_batch"
    BATCH_TOO_MANY = "batch_too_many"
    BATCH_TOO_BIG = "batch_too_big"
    BATCH_WITH_INVALID = "batch_with_invalid"
    RAW_GARBAGE = "raw_garbage"
    RAW_TRUNCATED = "raw_truncated"
    RAW_NOT_A_MAPPING = "raw_not_a_mapping"
    RAW_DEEP_NESTING = "raw_deep_nesting"


@dataclass(frozen=True, slots=True)
class InvalidCase:
    """One bad input. ``payload`` is an event dict, a list of event dicts, or raw bytes (see ``target``)."""

    kind: InvalidKind
    payload: dict[str, Any] | list[dict[str, Any]] | bytes
    expected_error: str
    target: Target
    detail: str

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``kind, payload, expected_error``."""
        return iter((self.kind, self.payload, self.expected_error))

    def __repr__(self) -> str:  # payloads can be 10 MiB or 10,000 levels deep: never print them
        return f"InvalidCase({self.kind.value}, target={self.target}, expected={self.expected_error}, {self.detail})"


def _nest(levels: int) -> dict[str, Any]:
    """A dict nested ``levels`` deep, built without recursion."""
    nested: dict[str, Any] = {}
    for _ in range(levels):
        nested = {"n": nested}
    return nested


class InvalidEventGenerator:
    """Seeded source of invalid inputs, built by damaging a valid template event one way at a time."""

    def __init__(
        self,
        seed: int,
        *,
        template: Mapping[str, Any] | None = None,
        required_fields: Sequence[str] = REQUIRED_FIELDS,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self._rng = random.Random(seed)
        self._template = dict(template) if template is not None else None
        self._required = tuple(required_fields)
        if not self._required:
            raise ValueError("required_fields must name at least one field")

    def valid_event(self) -> dict[str, Any]:
        """A fresh valid event (new id) to damage; the template's content if one was given."""
        rng = self._rng
        if self._template is not None:
            event = dict(self._template)
            event["event_id"] = random_uuid(rng)
            return event
        agent = f"builder-{rng.randint(1, 9)}"
        return {
            "event_id": random_uuid(rng),
            "event_type": "command_received",
            "aggregate_id": f"command:{random_uuid(rng)}",
            "aggregate_type": "command",
            "correlation_id": random_uuid(rng),
            "causation_id": None,
            "source_agent": agent,
            "timestamp": 1709539200.0 + rng.random() * 3600,
            "data": {"command_id": random_uuid(rng), "agent_id": agent, "tool": "Bash",
                     "tool_input": {"command": "git status"}},
            "metadata": {"generator": "testkit.data/invalid"},
            "schema_version": SCHEMA_VERSION,
        }

    def cases(self) -> Iterator[InvalidCase]:
        """Every variant of every kind, once, in a fixed order."""
        for kind in InvalidKind:
            yield from self._variants(kind)

    def draw(self, targets: Sequence[Target] = ("event",)) -> InvalidCase:
        """One random case among kinds aimed at ``targets`` (single events by default: cheap to mix into load)."""
        kinds = [k for k in InvalidKind if _TARGET_OF[k] in targets]
        if not kinds:
            raise ValueError(f"no invalid kind targets {targets!r}")
        variants = list(self._variants(self._rng.choice(kinds)))
        return self._rng.choice(variants)

    def _variants(self, kind: InvalidKind) -> Iterator[InvalidCase]:
        yield from getattr(self, f"_{kind.value}")()

    def _case(self, kind: InvalidKind, payload: Any, error: str, detail: str) -> InvalidCase:
        return InvalidCase(kind, payload, error, _TARGET_OF[kind], detail)

    # single events -------------------------------------------------------------------------------------------

    def _missing_field(self) -> Iterator[InvalidCase]:
        for name in self._required:
            event = self.valid_event()
            del event[name]
            yield self._case(InvalidKind.MISSING_FIELD, event, INVALID_EVENT, f"without {name}")

    def _wrong_type(self) -> Iterator[InvalidCase]:
        for name, value in (("event_type", 42), ("aggregate_id", 12345), ("data", [1, 2, 3]),
                            ("data", "not a mapping"), ("metadata", ["not", "a", "mapping"]),
                            ("schema_version", "one")):
            event = self.valid_event()
            event[name] = value
            yield self._case(InvalidKind.WRONG_TYPE, event, INVALID_EVENT, f"{name}={value!r}")

    def _unknown_event_type(self) -> Iterator[InvalidCase]:
        for value in ("command_teleported", "", "COMMAND_RECEIVED "):
            event = self.valid_event()
            event["event_type"] = value
            yield self._case(InvalidKind.UNKNOWN_EVENT_TYPE, event, INVALID_EVENT, f"event_type={value!r}")

    def _oversized(self) -> Iterator[InvalidCase]:
        event = self.valid_event()
        event["data"] = {"blob": "x" * (MAX_EVENT_BYTES + 64 * 1024)}
        yield self._case(InvalidKind.OVERSIZED, event, EVENT_TOO_LARGE, "one 1.06 MiB string")
        event = self.valid_event()
        event["data"] = {f"part{i:04d}": "y" * 1000 for i in range(1100)}
        yield self._case(InvalidKind.OVERSIZED, event, EVENT_TOO_LARGE, "1,100 fields of 1,000 bytes")

    def _deep_nesting(self) -> Iterator[InvalidCase]:
        event = self.valid_event()
        event["data"] = _nest(DEEP_NESTING_LEVELS)
        yield self._case(InvalidKind.DEEP_NESTING, event, INVALID_EVENT, f"data {DEEP_NESTING_LEVELS} levels deep")

    def _non_serialisable(self) -> Iterator[InvalidCase]:
        for label, value in (("object()", object()), ("a set", {1, 2, 3}), ("a complex number", 1 + 2j),
                             ("a function", len)):
            event = self.valid_event()
            event["data"] = {"value": value}
            yield self._case(InvalidKind.NON_SERIALISABLE, event, INVALID_EVENT, f"data holds {label}")

    def _bad_ids(self, kind: InvalidKind, value: Any, label: str) -> Iterator[InvalidCase]:
        for name in ("event_id", "aggregate_id"):
            event = self.valid_event()
            event[name] = value
            yield self._case(kind, event, INVALID_EVENT, f"{name} {label}")

    def _empty_id(self) -> Iterator[InvalidCase]:
        yield from self._bad_ids(InvalidKind.EMPTY_ID, "", "empty")

    def _too_long_id(self) -> Iterator[InvalidCase]:
        yield from self._bad_ids(InvalidKind.TOO_LONG_ID, "i" * TOO_LONG_ID_CHARS, f"{TOO_LONG_ID_CHARS} chars")

    def _non_str_id(self) -> Iterator[InvalidCase]:
        yield from self._bad_ids(InvalidKind.NON_STR_ID, 123456789, "an int")

    # batches -------------------------------------------------------------------------------------------------

    def _empty_batch(self) -> Iterator[InvalidCase]:
        yield self._case(InvalidKind.EMPTY_BATCH, [], INVALID_EVENT, "no events")

    def _batch_too_many(self) -> Iterator[InvalidCase]:
        batch = [self.valid_event() for _ in range(MAX_BATCH_EVENTS + 1)]
        yield self._case(InvalidKind.BATCH_TOO_MANY, batch, BATCH_TOO_LARGE, f"{len(batch)} events")

    def _batch_too_big(self) -> Iterator[InvalidCase]:
        blob = "z" * (MAX_EVENT_BYTES - 64 * 1024)  # shared: each event is valid, the batch is not
        count = MAX_BATCH_BYTES // len(blob) + 2
        batch = []
        for _ in range(count):
            event = self.valid_event()
            event["data"] = {"blob": blob}
            batch.append(event)
        yield self._case(InvalidKind.BATCH_TOO_BIG, batch, BATCH_TOO_LARGE, f"{count} events of 0.94 MiB")

    def _batch_with_invalid(self) -> Iterator[InvalidCase]:
        batch = [self.valid_event() for _ in range(5)]
        batch[3]["event_type"] = "command_teleported"
        yield self._case(InvalidKind.BATCH_WITH_INVALID, batch, INVALID_EVENT, "4 valid events and 1 invalid")

    # raw bytes -----------------------------------------------------------------------------------------------

    def _raw_garbage(self) -> Iterator[InvalidCase]:
        yield self._case(InvalidKind.RAW_GARBAGE, b"\xc1" + self._rng.randbytes(63), INVALID_EVENT,
                         "msgpack reserved byte 0xc1 then noise")
        yield self._case(InvalidKind.RAW_GARBAGE, b"\xff\xfe not json {{{", INVALID_EVENT, "not JSON")

    def _raw_truncated(self) -> Iterator[InvalidCase]:
        event = self.valid_event()
        packed = msgpack.packb(event, use_bin_type=True)
        yield self._case(InvalidKind.RAW_TRUNCATED, packed[: len(packed) // 2], INVALID_EVENT, "msgpack cut in half")
        text = json.dumps(event).encode()
        yield self._case(InvalidKind.RAW_TRUNCATED, text[: len(text) // 2], INVALID_EVENT, "JSON cut in half")

    def _raw_not_a_mapping(self) -> Iterator[InvalidCase]:
        yield self._case(InvalidKind.RAW_NOT_A_MAPPING, msgpack.packb([1, 2, 3]), INVALID_EVENT, "msgpack array")
        yield self._case(InvalidKind.RAW_NOT_A_MAPPING, b'"just a string"', INVALID_EVENT, "JSON string")

    def _raw_deep_nesting(self) -> Iterator[InvalidCase]:
        levels = DEEP_NESTING_LEVELS
        packed = b"\x81\xa1n" * levels + b"\x80"  # fixmap{ "n": ... } nested, innermost {}
        yield self._case(InvalidKind.RAW_DEEP_NESTING, packed, INVALID_EVENT, f"msgpack {levels} levels deep")
        text = b'{"n":' * levels + b"{}" + b"}" * levels
        yield self._case(InvalidKind.RAW_DEEP_NESTING, text, INVALID_EVENT, f"JSON {levels} levels deep")


_TARGET_OF: Final[dict[InvalidKind, Target]] = {
    kind: ("batch" if kind.value.startswith(("batch_", "empty_batch")) else
           "raw" if kind.value.startswith("raw_") else "event")
    for kind in InvalidKind
}
