"""Every kind of bad input a store must refuse, with the error code it must refuse it with.

Bad-input tests iterate :meth:`InvalidEventGenerator.cases` (each kind once) or draw at random. A case
unpacks as ``kind, payload, expected_error`` and also says whether it targets a single append
(``event``), a batch append (``batch``) or a wire decoder (``raw`` bytes).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
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
        self._deep: dict[str, Any] | None = None
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
            for make in self._variants(kind):
                yield make()

    def draw(self, targets: Sequence[Target] = ("event",)) -> InvalidCase:
        """One random case among kinds aimed at ``targets`` (single events by default: cheap to mix into load)."""
        kinds = [k for k in InvalidKind if _TARGET_OF[k] in targets]
        if not kinds:
            raise ValueError(f"no invalid kind targets {targets!r}")
        return self._rng.choice(self._variants(self._rng.choice(kinds)))()

    def _variants(self, kind: InvalidKind) -> list[Callable[[], InvalidCase]]:
        """Builders (not cases: a case may hold 10 MiB) for each variant of ``kind``."""
        variants: list[Callable[[], InvalidCase]] = getattr(self, f"_{kind.value}")()
        return variants

    def _case(self, kind: InvalidKind, payload: Any, error: str, detail: str) -> InvalidCase:
        return InvalidCase(kind, payload, error, _TARGET_OF[kind], detail)

    def _damaged(self, kind: InvalidKind, error: str, detail: str, field: str, value: Callable[[], Any]) -> InvalidCase:
        """A valid event with one field replaced (``value`` returns _DELETE to remove it)."""
        event = self.valid_event()
        new = value()
        if new is _DELETE:
            del event[field]
        else:
            event[field] = new
        return self._case(kind, event, error, detail)

    def _event_variants(
        self, kind: InvalidKind, error: str, changes: Sequence[tuple[str, Callable[[], Any], str]]
    ) -> list[Callable[[], InvalidCase]]:
        return [partial(self._damaged, kind, error, detail, name, value) for name, value, detail in changes]

    # single events -------------------------------------------------------------------------------------------

    def _missing_field(self) -> list[Callable[[], InvalidCase]]:
        return self._event_variants(InvalidKind.MISSING_FIELD, INVALID_EVENT,
                                    [(name, lambda: _DELETE, f"without {name}") for name in self._required])

    def _wrong_type(self) -> list[Callable[[], InvalidCase]]:
        changes = [("event_type", 42), ("aggregate_id", 12345), ("data", [1, 2, 3]), ("data", "not a mapping"),
                   ("metadata", ["not", "a", "mapping"]), ("schema_version", "one")]
        return self._event_variants(InvalidKind.WRONG_TYPE, INVALID_EVENT,
                                    [(name, partial(_copy, value), f"{name}={value!r}") for name, value in changes])

    def _unknown_event_type(self) -> list[Callable[[], InvalidCase]]:
        return self._event_variants(InvalidKind.UNKNOWN_EVENT_TYPE, INVALID_EVENT, [
            ("event_type", partial(_copy, value), f"event_type={value!r}")
            for value in ("command_teleported", "", "COMMAND_RECEIVED ")
        ])

    def _oversized(self) -> list[Callable[[], InvalidCase]]:
        return self._event_variants(InvalidKind.OVERSIZED, EVENT_TOO_LARGE, [
            ("data", lambda: {"blob": "x" * (MAX_EVENT_BYTES + 64 * 1024)}, "one 1.06 MiB string"),
            ("data", lambda: {f"part{i:04d}": "y" * 1000 for i in range(1100)}, "1,100 fields of 1,000 bytes"),
        ])

    def _deep_nesting(self) -> list[Callable[[], InvalidCase]]:
        return self._event_variants(InvalidKind.DEEP_NESTING, INVALID_EVENT, [
            ("data", self._deep_data, f"data {DEEP_NESTING_LEVELS} levels deep"),
        ])

    def _non_serialisable(self) -> list[Callable[[], InvalidCase]]:
        values: list[tuple[str, Callable[[], Any]]] = [
            ("object()", object), ("a set", lambda: {1, 2, 3}), ("a complex number", lambda: 1 + 2j),
            ("a function", lambda: len),
        ]
        return self._event_variants(InvalidKind.NON_SERIALISABLE, INVALID_EVENT, [
            ("data", partial(_wrap, make), f"data holds {label}") for label, make in values
        ])

    def _deep_data(self) -> dict[str, Any]:
        """Built once and shared: building (and freeing) 10,000 levels costs milliseconds each time."""
        if self._deep is None:
            self._deep = _nest(DEEP_NESTING_LEVELS)
        return self._deep

    def _bad_ids(self, kind: InvalidKind, value: Any, label: str) -> list[Callable[[], InvalidCase]]:
        return self._event_variants(kind, INVALID_EVENT, [
            (name, partial(_copy, value), f"{name} {label}") for name in ("event_id", "aggregate_id")
        ])

    def _empty_id(self) -> list[Callable[[], InvalidCase]]:
        return self._bad_ids(InvalidKind.EMPTY_ID, "", "empty")

    def _too_long_id(self) -> list[Callable[[], InvalidCase]]:
        return self._bad_ids(InvalidKind.TOO_LONG_ID, "i" * TOO_LONG_ID_CHARS, f"{TOO_LONG_ID_CHARS} chars")

    def _non_str_id(self) -> list[Callable[[], InvalidCase]]:
        return self._bad_ids(InvalidKind.NON_STR_ID, 123456789, "an int")

    # batches -------------------------------------------------------------------------------------------------

    def _empty_batch(self) -> list[Callable[[], InvalidCase]]:
        return [lambda: self._case(InvalidKind.EMPTY_BATCH, [], INVALID_EVENT, "no events")]

    def _batch_too_many(self) -> list[Callable[[], InvalidCase]]:
        def build() -> InvalidCase:
            batch = [self.valid_event() for _ in range(MAX_BATCH_EVENTS + 1)]
            return self._case(InvalidKind.BATCH_TOO_MANY, batch, BATCH_TOO_LARGE, f"{len(batch)} events")
        return [build]

    def _batch_too_big(self) -> list[Callable[[], InvalidCase]]:
        def build() -> InvalidCase:
            blob = "z" * (MAX_EVENT_BYTES - 64 * 1024)  # shared: each event is valid, the batch is not
            count = MAX_BATCH_BYTES // len(blob) + 2
            batch = []
            for _ in range(count):
                event = self.valid_event()
                event["data"] = {"blob": blob}
                batch.append(event)
            return self._case(InvalidKind.BATCH_TOO_BIG, batch, BATCH_TOO_LARGE, f"{count} events of 0.94 MiB")
        return [build]

    def _batch_with_invalid(self) -> list[Callable[[], InvalidCase]]:
        def build() -> InvalidCase:
            batch = [self.valid_event() for _ in range(5)]
            batch[3]["event_type"] = "command_teleported"
            return self._case(InvalidKind.BATCH_WITH_INVALID, batch, INVALID_EVENT, "4 valid events and 1 invalid")
        return [build]

    # raw bytes -----------------------------------------------------------------------------------------------

    def _raw(self, kind: InvalidKind, make: Callable[[], bytes], detail: str) -> Callable[[], InvalidCase]:
        return lambda: self._case(kind, make(), INVALID_EVENT, detail)

    def _raw_garbage(self) -> list[Callable[[], InvalidCase]]:
        return [
            self._raw(InvalidKind.RAW_GARBAGE, lambda: b"\xc1" + self._rng.randbytes(63),
                      "msgpack reserved byte 0xc1 then noise"),
            self._raw(InvalidKind.RAW_GARBAGE, lambda: b"\xff\xfe not json {{{", "not JSON"),
        ]

    def _raw_truncated(self) -> list[Callable[[], InvalidCase]]:
        def packed() -> bytes:
            data: bytes = msgpack.packb(self.valid_event(), use_bin_type=True)
            return data[: len(data) // 2]

        def text() -> bytes:
            data = json.dumps(self.valid_event()).encode()
            return data[: len(data) // 2]

        return [self._raw(InvalidKind.RAW_TRUNCATED, packed, "msgpack cut in half"),
                self._raw(InvalidKind.RAW_TRUNCATED, text, "JSON cut in half")]

    def _raw_not_a_mapping(self) -> list[Callable[[], InvalidCase]]:
        return [self._raw(InvalidKind.RAW_NOT_A_MAPPING, lambda: msgpack.packb([1, 2, 3]), "msgpack array"),
                self._raw(InvalidKind.RAW_NOT_A_MAPPING, lambda: b'"just a string"', "JSON string")]

    def _raw_deep_nesting(self) -> list[Callable[[], InvalidCase]]:
        levels = DEEP_NESTING_LEVELS
        return [
            # fixmap{"n": ...} nested, innermost {}
            self._raw(InvalidKind.RAW_DEEP_NESTING, lambda: b"\x81\xa1n" * levels + b"\x80",
                      f"msgpack {levels} levels deep"),
            self._raw(InvalidKind.RAW_DEEP_NESTING, lambda: b'{"n":' * levels + b"{}" + b"}" * levels,
                      f"JSON {levels} levels deep"),
        ]


_DELETE: Final = object()


def _copy(value: Any) -> Any:
    return value


def _wrap(make: Callable[[], Any]) -> dict[str, Any]:
    return {"value": make()}


_TARGET_OF: Final[dict[InvalidKind, Target]] = {
    kind: ("batch" if kind.value.startswith(("batch_", "empty_batch")) else
           "raw" if kind.value.startswith("raw_") else "event")
    for kind in InvalidKind
}
