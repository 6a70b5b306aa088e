"""The bridge folds each delivered run at once (``BridgeProjection.apply_run``): whatever the runs, the notes
and the state are those of folding the same events one at a time."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse.bridge.projection import BridgeProjection
from lighthouse.bridge.vocabulary import PAIR_ACTIONS
from lighthouse.models import Event, EventType
from testkit.data import AgentSessionGenerator


def stored_log() -> list[Event]:
    """Generated agent sessions (commands, escalations, pair sessions...) with plain custom events between them,
    some carrying pair actions or odd ones, stored with increasing sequences and a clock that once steps back."""
    gen = AgentSessionGenerator(7, agents=5, pair_rate=0.35, expert_timeout_rate=0.25, escalation_rate=0.2)
    wanted = {e["event_id"] for s in gen.sessions(6) for e in s.events}
    session_events = _take(gen, wanted)
    odd_actions: list[Any] = [None, "note", ["list"], {"k": 1}, *PAIR_ACTIONS]
    log: list[Event] = []
    for n, raw in enumerate(session_events):
        log.append(Event.from_dict(raw))
        for k in range(n % 5):  # 0-4 custom events between two session events: runs of events that only count
            author = f"bystander-{(n + k // 2) % 4}"  # one author twice in a row, in most runs
            log.append(Event(EventType.CUSTOM, aggregate_id=f"thing:{n % 3}", source_agent=author,
                             data={"action": odd_actions[(n + k) % len(odd_actions)], "pair_id": raw["event_id"]}))
    log.append(Event(EventType.CUSTOM, aggregate_id="thing:0", source_agent="bystander-0", data={}))
    stamps = [1_000.0 + i for i in range(len(log))]
    stamps[-1] = 10.0  # a clock that steps back at the end: the projection's clock keeps the newest
    return [event.replace(sequence=i + 1, recorded_at=stamps[i], aggregate_version=1) for i, event in enumerate(log)]


def _take(gen: AgentSessionGenerator, wanted: set[str]) -> list[dict[str, Any]]:
    out = []
    for event in gen.events():
        if event["event_id"] in wanted:
            out.append(event)
            if len(out) == len(wanted):
                return out
    raise AssertionError("unreachable: the stream is endless")


LOG = stored_log()


def one_by_one(events: list[Event], start: BridgeProjection | None = None) -> tuple[list[str | None], BridgeProjection]:
    projection = start or BridgeProjection()
    return [projection.apply(event) for event in events], projection


def same(a: BridgeProjection, b: BridgeProjection) -> bool:
    """Equal states, down to the order agents first appeared in (a snapshot's bytes)."""
    return pickle.dumps(a.state) == pickle.dumps(b.state)


def test_the_log_exercises_both_paths() -> None:
    notes, projection = one_by_one(LOG)
    kinds = {event.event_type for event in LOG}
    assert {EventType.COMMAND_ESCALATED, EventType.PAIR_SESSION_ACCEPTED, EventType.CUSTOM} <= kinds
    assert any(note is not None for note in notes) and notes.count(None) > len(LOG) // 2
    assert len(projection.state["agents"]) > 5 and projection.state["pair_sessions"]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, len(LOG)), max_size=12), repeats=st.lists(st.integers(0, len(LOG) - 1), max_size=6))
def test_any_runs_fold_as_one_event_at_a_time(cuts: list[int], repeats: list[int]) -> None:
    events = list(LOG)
    for at in sorted(repeats, reverse=True):  # deliveries seen before (a resumed subscription): "already applied"
        events.insert(at + 1, events[at])
    expected_notes, expected = one_by_one(events)
    bounds = [0, *sorted(set(cuts)), len(events)]
    folded = BridgeProjection()
    notes: list[str | None] = []
    for start, end in zip(bounds, bounds[1:]):
        notes.extend(folded.apply_run(events[start:end]))
    assert notes == expected_notes
    assert same(folded, expected)


def test_a_run_that_meets_an_unstored_event_keeps_what_came_before_it() -> None:
    head = LOG[:40]
    unstored = Event(EventType.CUSTOM, aggregate_id="thing:x", source_agent="late", data={})
    folded = BridgeProjection()
    with pytest.raises(ValueError, match="stored events"):
        folded.apply_run([*head, unstored, LOG[40]])
    _, expected = one_by_one(head)
    assert same(folded, expected)


def test_a_handler_that_raises_leaves_the_state_one_event_at_a_time_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    """``apply`` moves the sequence before a handler runs; a handler error it does not catch must not be undone."""
    def broken(*_: Any) -> None:
        raise RuntimeError("handler bug")

    from lighthouse.bridge import projection as module
    monkeypatch.setitem(module._HANDLERS, EventType.FILE_CREATED, broken)
    run = [Event(EventType.CUSTOM, aggregate_id="t", source_agent="a", data={}),
           Event(EventType.FILE_CREATED, aggregate_id="f", source_agent="a", data={"path": "x"})]
    run = [e.replace(sequence=i + 1, recorded_at=100.0 + i, aggregate_version=1) for i, e in enumerate(run)]
    expected = BridgeProjection()
    expected.apply(run[0])
    with pytest.raises(RuntimeError):
        expected.apply(run[1])
    folded = BridgeProjection()
    with pytest.raises(RuntimeError):
        folded.apply_run(run)
    assert same(folded, expected) and folded.last_sequence == 2
