"""A stateful model test: random appends, batches, retries, conflicts, queries, reopens and torn tails,
checked step by step against a plain in-memory list of frames.

Small segments make rotation part of every run. A torn tail destroys the newest frame's bytes the
way a crash mid-write would (any prefix of it survives); the model forgets that frame too.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from lighthouse import ConcurrencyConflict, Event, EventFilter, EventStore, EventType

TYPES = [EventType.COMMAND_RECEIVED, EventType.COMMAND_APPROVED, EventType.AGENT_HEARTBEAT]
AGGREGATES = ["cmd:1", "cmd:2", "agent:x"]
AGENTS = ["alpha", "beta"]
SEGMENT_BYTES = 4096

specs = st.tuples(st.sampled_from(TYPES), st.sampled_from(AGGREGATES), st.sampled_from(AGENTS), st.integers(0, 400))


@dataclass
class Model:
    """What the log must hold: frames of events in sequence order."""

    frames: list[list[Event]] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return [e for frame in self.frames for e in frame]

    @property
    def next_sequence(self) -> int:
        return len(self.events) + 1

    def version_of(self, aggregate: str) -> int:
        return sum(1 for e in self.events if e.aggregate_id == aggregate)

    def matching(self, criteria: dict[str, Any]) -> list[int]:
        out = []
        for e in self.events:
            if "event_types" in criteria and e.event_type not in criteria["event_types"]:
                continue
            if "aggregate_ids" in criteria and e.aggregate_id not in criteria["aggregate_ids"]:
                continue
            if "source_agents" in criteria and e.source_agent not in criteria["source_agents"]:
                continue
            if "from_sequence" in criteria and e.sequence < criteria["from_sequence"]:
                continue
            out.append(e.sequence)
        return out


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, base: Path, disk: Any) -> None:
        super().__init__()
        self.disk = disk
        self.path = Path(tempfile.mkdtemp(dir=base)) / "store"
        self.loop = asyncio.new_event_loop()
        self.model = Model()
        self.ids = itertools.count()
        self.store = self.run(EventStore.open(self.path, segment_bytes=SEGMENT_BYTES))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    def new_event(self, spec: tuple[EventType, str, str, int]) -> Event:
        kind, aggregate, agent, pad = spec
        number = next(self.ids)
        return Event(
            kind, aggregate_id=aggregate, source_agent=agent, event_id=f"m{number}", timestamp=float(number),
            data={"n": number, "pad": "p" * pad},
        )  # fmt: skip

    def record(self, stored: list[Event], submitted: list[Event]) -> None:
        first = self.model.next_sequence
        assert [e.sequence for e in stored] == list(range(first, first + len(submitted)))
        assert [e.event_id for e in stored] == [e.event_id for e in submitted]
        counts = Counter(e.aggregate_id for e in self.model.events)
        for event in stored:
            counts[event.aggregate_id] += 1
            assert event.aggregate_version == counts[event.aggregate_id]
        self.model.frames.append(stored)

    # ------------------------------------------------------------------------------------------ writes

    @rule(spec=specs)
    def append(self, spec: tuple) -> None:
        event = self.new_event(spec)
        self.record([self.run(self.store.append(event))], [event])

    @rule(batch=st.lists(specs, min_size=1, max_size=6))
    def append_batch(self, batch: list[tuple]) -> None:
        events = [self.new_event(spec) for spec in batch]
        self.record(self.run(self.store.append_batch(events)), events)

    @precondition(lambda self: self.model.frames)
    @rule(data=st.data())
    def retry_a_stored_frame(self, data: st.DataObject) -> None:
        frame = data.draw(st.sampled_from(self.model.frames))
        originals = [  # what the client sent: the stored copies minus the store-set fields
            Event(
                e.event_type, aggregate_id=e.aggregate_id, source_agent=e.source_agent, event_id=e.event_id,
                timestamp=e.timestamp, data=e.data,
            )
            for e in frame
        ]  # fmt: skip
        again = self.run(self.store.append_batch(originals) if len(originals) > 1 else self.store.append(originals[0]))
        assert (again if isinstance(again, list) else [again]) == frame

    @rule(spec=specs, off_by=st.sampled_from([-1, 1, 5]))
    def stale_expected_version_is_refused(self, spec: tuple, off_by: int) -> None:
        event = self.new_event(spec)
        current = self.model.version_of(event.aggregate_id)
        if current + off_by < 0:
            return
        with pytest.raises(ConcurrencyConflict):
            self.run(self.store.append(event, expected_version=current + off_by))
        self.record([self.run(self.store.append(event, expected_version=current))], [event])

    # ------------------------------------------------------------------------------------------- reads

    @rule(
        types=st.none() | st.sets(st.sampled_from(TYPES), min_size=1),
        aggregates=st.none() | st.sets(st.sampled_from(AGGREGATES), min_size=1),
        agents=st.none() | st.sets(st.sampled_from(AGENTS), min_size=1),
        from_sequence=st.none() | st.integers(0, 40),
        limit=st.integers(1, 12),
        descending=st.booleans(),
    )
    def query_all_pages(self, types, aggregates, agents, from_sequence, limit, descending) -> None:
        criteria = {
            name: value
            for name, value in (
                ("event_types", types), ("aggregate_ids", aggregates), ("source_agents", agents),
                ("from_sequence", from_sequence),
            )
            if value is not None
        }  # fmt: skip
        flt = EventFilter(**criteria)

        async def pages() -> list[int]:
            out: list[int] = []
            cursor = None
            while True:
                page = await self.store.query(flt, limit=limit, cursor=cursor, descending=descending)
                out.extend(e.sequence for e in page.events)
                if page.next_cursor is None:
                    return out
                cursor = page.next_cursor

        want = self.model.matching(criteria)
        assert self.run(pages()) == (want[::-1] if descending else want)

    @precondition(lambda self: self.model.frames)
    @rule(data=st.data())
    def get_by_id_and_sequence(self, data: st.DataObject) -> None:
        expected = data.draw(st.sampled_from(self.model.events))
        assert self.run(self.store.get(expected.event_id)) == expected
        assert self.run(self.store.get(expected.sequence)) == expected

    # ---------------------------------------------------------------------------------- reopen and crash

    @rule()
    def reopen(self) -> None:
        self.run(self.store.close())
        self.store = self.run(EventStore.open(self.path, segment_bytes=SEGMENT_BYTES))
        self.check_everything_readable()

    @precondition(lambda self: self.model.frames)
    @rule(keep=st.floats(0, 1, exclude_max=True))
    def torn_tail(self, keep: float) -> None:
        """Crash mid-write of the newest frame: some prefix of it (maybe none) reached the disk."""
        self.run(self.store.close())
        segment = self.disk.last_segment(self.path)
        frames = self.disk.frames(segment)
        if frames:  # else the newest segment holds only its header: a crash now tears nothing
            newest, expected = frames[-1], self.model.frames[-1]
            assert (newest.first_seq, newest.count) == (expected[0].sequence, len(expected))
            assert newest.end == segment.stat().st_size
            self.disk.truncate(segment, newest.offset + int(keep * newest.size))
            self.model.frames.pop()
        self.store = self.run(EventStore.open(self.path, segment_bytes=SEGMENT_BYTES))
        assert self.store.health().state == "healthy"
        self.check_everything_readable()

    def check_everything_readable(self) -> None:
        async def replay() -> list[Event]:
            return [e async for e in self.store.replay()]

        assert self.run(replay()) == self.model.events

    @invariant()
    def head_and_counts_match_the_model(self) -> None:
        assert self.store.head_sequence == self.model.next_sequence - 1
        assert self.store.stats().events == len(self.model.events)
        health = self.store.health()
        assert health.writable and health.lost_sequences == [] and health.voided_sequences == []

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()


def test_the_store_behaves_like_a_list_of_frames(tmp_path: Path, disk) -> None:
    run_state_machine_as_test(
        lambda: StoreMachine(tmp_path, disk),
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
