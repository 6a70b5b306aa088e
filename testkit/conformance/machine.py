"""The hypothesis state machine that drives one adapter against a model of what it must hold.

The model is the list of acknowledged events in sequence order. Every rule calls the adapter, holds
the answer against the model, and raises :class:`~testkit.conformance.rules.RuleViolation` naming
the rule it broke; an invariant checks ``read_all`` after every step. Each example runs on a fresh
data directory and its own event loop (adapters are async, hypothesis is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from testkit.adapters.base import AdapterError, EventStoreAdapter, StoredEvent
from testkit.conformance.rules import RuleViolation

__all__ = ["INVALID_EVENTS", "MachineStats", "conformance_machine"]

_T = TypeVar("_T")
_EVENT_TYPES = ("command_received", "file_modified", "agent_heartbeat")
_AGGREGATES = ("agent:a", "command:b", "file:c")


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: {k: v for k, v in event.items() if k != key}


def _with(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: {**event, key: value}


class _Unencodable:
    """A value no store can serialise."""

    def __repr__(self) -> str:
        return "<unencodable>"


#: How a valid event is made invalid, by name (the name appears in failure messages).
INVALID_EVENTS: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "missing aggregate_id": _without("aggregate_id"),
    "empty aggregate_id": _with("aggregate_id", ""),
    "aggregate_id is not a string": _with("aggregate_id", 42),
    "missing event_type": _without("event_type"),
    "event_id is not a string": _with("event_id", 42),
    "data is not a mapping": _with("data", [1, 2]),
    "data holds an unencodable value": _with("data", {"value": _Unencodable()}),
}

_data_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**31), 2**31), st.text(max_size=12))
_contents = st.fixed_dictionaries({
    "event_type": st.sampled_from(_EVENT_TYPES),
    "aggregate_id": st.sampled_from(_AGGREGATES),
    "data": st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6), _data_values, max_size=3),
})


@dataclass
class MachineStats:
    """Counts across the examples of one run (the report's denominator)."""

    examples: int = 0
    checks: int = 0
    adapter_name: str | None = None


def _same_content(stored: StoredEvent, event: Mapping[str, Any]) -> str | None:
    """What differs between a stored event and the event that was sent, or None."""
    expected = {"event_id": event["event_id"], "event_type": event["event_type"],
                "aggregate_id": event["aggregate_id"], "data": dict(event.get("data") or {})}
    got = {"event_id": stored.event_id, "event_type": str(stored.event_type),
           "aggregate_id": stored.aggregate_id, "data": dict(stored.data or {})}
    wrong = [f"{k}: sent {expected[k]!r}, got {got[k]!r}" for k in expected if expected[k] != got[k]]
    return "; ".join(wrong) or None


def conformance_machine(
    factory: Callable[[Path], EventStoreAdapter], root: Path, stats: MachineStats
) -> type[RuleBasedStateMachine]:
    """A state machine class bound to ``factory`` (called with a fresh data directory per example)."""

    class AdapterConformance(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            stats.examples += 1
            self.data_dir = Path(tempfile.mkdtemp(prefix="example-", dir=root))
            self.loop = asyncio.Runner()
            self.log: list[tuple[int, dict[str, Any]]] = []  # (sequence, event) acknowledged, in order
            self.batches: list[list[dict[str, Any]]] = []
            self.counter = 0
            self.adapter: EventStoreAdapter | None = None
            self.adapter = self._open()

        # -- plumbing ---------------------------------------------------------------------------------
        def _open(self) -> EventStoreAdapter:
            try:
                adapter = factory(self.data_dir)
                stats.adapter_name = stats.adapter_name or getattr(adapter, "name", None)
                self.loop.run(adapter.open())
            except Exception as exc:
                raise RuleViolation("open", f"opening the adapter raised {type(exc).__name__}: {exc}") from exc
            return adapter

        def _call(self, rule_name: str, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
            """Run one adapter call; a refusal or crash on valid input breaks ``rule_name``."""
            try:
                return self.loop.run(call())  # type: ignore[arg-type]
            except AdapterError as exc:
                raise RuleViolation(rule_name, f"{what} refused valid input: AdapterError(code={exc.code!r}): "
                                               f"{exc}") from exc
            except Exception as exc:
                raise RuleViolation(rule_name, f"{what} raised {type(exc).__name__}: {exc}") from exc

        def _store(self) -> EventStoreAdapter:
            assert self.adapter is not None
            return self.adapter

        def _new_event(self, content: Mapping[str, Any]) -> dict[str, Any]:
            self.counter += 1
            return {"event_id": f"conformance-{self.counter:05d}", **content}

        def _read_all(self, rule_name: str) -> list[StoredEvent]:
            async def collect() -> list[StoredEvent]:
                return [event async for event in self._store().read_all()]

            return self._call(rule_name, "read_all()", collect)

        def _check_log(self, rule_name: str, after: str) -> None:
            """read_all() must equal the model exactly."""
            got = self._read_all(rule_name)
            got_ids = [e.event_id for e in got]
            want_ids = [e["event_id"] for _, e in self.log]
            if got_ids != want_ids:
                missing = [i for i in want_ids if i not in got_ids]
                extra = [i for i in got_ids if i not in want_ids]
                raise RuleViolation(rule_name, f"after {after}, read_all() returned {len(got)} events, the "
                                               f"acknowledged log holds {len(want_ids)}: missing {missing[:5]}, "
                                               f"unexpected {extra[:5]}, order {got_ids[:8]} vs {want_ids[:8]}")
            for stored, (sequence, event) in zip(got, self.log, strict=True):
                wrong = _same_content(stored, event)
                if stored.sequence != sequence or wrong:
                    raise RuleViolation(rule_name, f"after {after}, read_all() returned {stored.event_id} with "
                                                   f"sequence {stored.sequence} (acknowledged {sequence}) {wrong or ''}")

        def _acknowledge(self, rule_name: str, sent: Sequence[dict[str, Any]], got: Any) -> None:
            """Hold the answer to an append of ``sent`` against the model, then extend the model."""
            if not isinstance(got, list) or len(got) != len(sent):
                raise RuleViolation(rule_name, f"returned {got!r} for {len(sent)} event(s)")
            for stored, event in zip(got, sent, strict=True):
                if not isinstance(stored, StoredEvent):
                    raise RuleViolation(rule_name, f"returned a {type(stored).__name__}, not a StoredEvent")
                wrong = _same_content(stored, event)
                if wrong:
                    raise RuleViolation(rule_name, f"returned different content for {event['event_id']}: {wrong}")
            previous = self.log[-1][0] if self.log else None
            for stored in got:
                if not isinstance(stored.sequence, int) or stored.sequence < 1:
                    raise RuleViolation("gapless_sequences", f"{stored.event_id} got sequence {stored.sequence!r}")
                if previous is not None and stored.sequence != previous + 1:
                    raise RuleViolation("gapless_sequences", f"{stored.event_id} got sequence {stored.sequence} "
                                                             f"right after {previous}")
                previous = stored.sequence
            self.log.extend((stored.sequence, event) for stored, event in zip(got, sent, strict=True))
            self.batches.append(list(sent))

        def _refused(self, rule_name: str, what: str, call: Callable[[], Awaitable[Any]],
                     codes: Sequence[str]) -> AdapterError:
            """Run a call that must raise AdapterError with one of ``codes`` and change nothing."""
            try:
                result = self.loop.run(call())  # type: ignore[arg-type]
            except AdapterError as exc:
                if exc.code not in codes:
                    raise RuleViolation("typed_errors", f"{what} raised AdapterError with code {exc.code!r}, "
                                                        f"expected one of {list(codes)}") from exc
                return exc
            except Exception as exc:
                raise RuleViolation("typed_errors", f"{what} raised {type(exc).__name__} instead of "
                                                    f"AdapterError: {exc}") from exc
            raise RuleViolation(rule_name, f"{what} was accepted (returned {result!r:.200})")

        # -- rules ------------------------------------------------------------------------------------
        @rule(content=_contents)
        def append(self, content: dict[str, Any]) -> None:
            event = self._new_event(content)
            stored = self._call("append", "append(valid event)", lambda: self._store().append(event))
            self._acknowledge("append", [event], [stored])

        @rule(contents=st.lists(_contents, min_size=1, max_size=4))
        def append_batch(self, contents: list[dict[str, Any]]) -> None:
            events = [self._new_event(c) for c in contents]
            got = self._call("append_batch", f"append_batch({len(events)} valid events)",
                             lambda: self._store().append_batch(events))
            self._acknowledge("append_batch", events, got)

        @rule(content=_contents, kind=st.sampled_from(sorted(INVALID_EVENTS)))
        def append_invalid(self, content: dict[str, Any], kind: str) -> None:
            bad = INVALID_EVENTS[kind](self._new_event(content))
            error = self._refused("typed_errors", f"append(event with {kind})", lambda: self._store().append(bad),
                                  ("invalid_event",))
            if error.retryable:
                raise RuleViolation("typed_errors", f"invalid input ({kind}) was marked retryable")
            self._check_log("typed_errors", f"a refused append ({kind})")

        @rule(contents=st.lists(_contents, min_size=1, max_size=4), kind=st.sampled_from(sorted(INVALID_EVENTS)),
              data=st.data())
        def append_batch_with_invalid(self, contents: list[dict[str, Any]], kind: str, data: st.DataObject) -> None:
            events = [self._new_event(c) for c in contents]
            position = data.draw(st.integers(0, len(events)), label="position")
            events.insert(position, INVALID_EVENTS[kind](self._new_event(data.draw(_contents, label="bad"))))
            self._refused("batch_all_or_nothing", f"append_batch({len(events)} events, #{position} with {kind})",
                          lambda: self._store().append_batch(events), ("invalid_event",))
            self._check_log("batch_all_or_nothing", f"a refused batch ({kind} at #{position})")

        @precondition(lambda self: bool(self.log))
        @rule(data=st.data())
        def retry_event(self, data: st.DataObject) -> None:
            sequence, event = data.draw(st.sampled_from(self.log), label="stored event")
            self._retry("retry of one stored event", [event], [sequence], lambda: self._store().append(dict(event)))

        @precondition(lambda self: bool(self.batches))
        @rule(data=st.data())
        def retry_batch(self, data: st.DataObject) -> None:
            batch = data.draw(st.sampled_from(self.batches), label="stored batch")
            sequences = {e["event_id"]: s for s, e in self.log}
            self._retry(f"retry of a stored batch of {len(batch)}", batch, [sequences[e["event_id"]] for e in batch],
                        lambda: self._store().append_batch([dict(e) for e in batch]))

        def _retry(self, what: str, events: list[dict[str, Any]], sequences: list[int],
                   call: Callable[[], Awaitable[Any]]) -> None:
            try:
                got = self.loop.run(call())  # type: ignore[arg-type]
            except AdapterError as exc:
                if exc.code != "duplicate_event":
                    raise RuleViolation("idempotent_retry", f"{what} raised AdapterError({exc.code!r}), expected "
                                                            f"the stored copy or 'duplicate_event': {exc}") from exc
            except Exception as exc:
                raise RuleViolation("typed_errors", f"{what} raised {type(exc).__name__}: {exc}") from exc
            else:
                got_list = got if isinstance(got, list) else [got]
                answered = [getattr(e, "sequence", None) for e in got_list]
                if answered != sequences:
                    raise RuleViolation("idempotent_retry", f"{what} answered sequences {answered}, the events are "
                                                            f"stored at {sequences}")
            self._check_log("idempotent_retry", what)

        @precondition(lambda self: bool(self.log))
        @rule(data=st.data(), content=_contents)
        def reuse_event_id(self, data: st.DataObject, content: dict[str, Any]) -> None:
            _, event = data.draw(st.sampled_from(self.log), label="stored event")
            other = {**content, "event_id": event["event_id"], "data": {**content["data"], "conflict": True}}
            self._refused("idempotent_retry", f"append(new content under stored id {event['event_id']})",
                          lambda: self._store().append(other), ("duplicate_event",))
            self._check_log("idempotent_retry", "a conflicting reuse of an event id")

        @rule(types=st.none() | st.sets(st.sampled_from(_EVENT_TYPES), min_size=1),
              aggregates=st.none() | st.sets(st.sampled_from(_AGGREGATES), min_size=1),
              limit=st.integers(1, 6))
        def query(self, types: set[str] | None, aggregates: set[str] | None, limit: int) -> None:
            want = [(s, e) for s, e in self.log
                    if (types is None or e["event_type"] in types)
                    and (aggregates is None or e["aggregate_id"] in aggregates)][:limit]
            what = f"query(event_types={sorted(types) if types else None}, " \
                   f"aggregate_ids={sorted(aggregates) if aggregates else None}, limit={limit})"
            got = self._call("query", what, lambda: self._store().query(
                event_types=sorted(types) if types else None,
                aggregate_ids=sorted(aggregates) if aggregates else None, limit=limit))
            got_pairs = [(e.sequence, e.event_id) for e in got]
            want_pairs = [(s, e["event_id"]) for s, e in want]
            if got_pairs != want_pairs:
                raise RuleViolation("query", f"{what} returned (sequence, id) {got_pairs}, expected {want_pairs}")

        @rule()
        def reopen(self) -> None:
            self._call("durable_reopen", "close()", self._store().close)
            self.adapter = None
            try:
                self.adapter = factory(self.data_dir)
                self.loop.run(self.adapter.open())
            except Exception as exc:
                raise RuleViolation("durable_reopen", f"reopening the data directory raised "
                                                      f"{type(exc).__name__}: {exc}") from exc
            self._check_log("durable_reopen", "close() and a new open()")

        @invariant()
        def read_all_matches(self) -> None:
            stats.checks += 1
            self._check_log("read_all", "the last step")

        def teardown(self) -> None:
            try:
                if self.adapter is not None:
                    with contextlib.suppress(Exception):  # a rule already judged this adapter
                        self.loop.run(self.adapter.close())
            finally:
                self.loop.close()
                shutil.rmtree(self.data_dir, ignore_errors=True)

    return AdapterConformance
