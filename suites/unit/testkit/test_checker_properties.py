"""Properties of the checker over every legal crash of a model store, found by hypothesis.

The model store applies writes as frames (a batch is one frame), makes a prefix of frames durable at
each sync, acknowledges only durable writes, and on a crash keeps the durable prefix plus any longer
prefix of applied frames. Clients invoke, get refused, time out, and see acks in any interleaving.
Whatever hypothesis picks, the checker must accept the recovered log, and must reject it after any
single damage: an acknowledged event deleted, an event duplicated, an event's content changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.adapters.base import StoredEvent
from testkit.checkers import History, OpStatus, check_durability, durability
from testkit.data import AgentSessionGenerator

SETTINGS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class CrashRun:
    history: History
    recovered: list[StoredEvent]
    frames: list[list[StoredEvent]] = field(default_factory=list)


def _stored(event: dict[str, Any], seq: int) -> StoredEvent:
    return StoredEvent(event["event_id"], seq, event["event_type"], event["aggregate_id"], event["source_agent"],
                       event["data"], event["correlation_id"], event["causation_id"])


def simulate(data: st.DataObject) -> CrashRun:
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    source = AgentSessionGenerator(seed, agents=3, payload_sizes=_small_payloads()).events()
    history = History()
    frames: list[list[StoredEvent]] = []
    waiting: list[tuple[int, list[dict[str, Any]]]] = []  # invoked, not yet applied by the store
    applied: list[tuple[int, int]] = []  # (op, frame) applied, no answer given yet
    durable = 0
    next_seq = 1
    for _ in range(data.draw(st.integers(1, 60), label="steps")):
        actions = ["invoke"] + (["apply", "refuse", "time out"] if waiting else []) + ["sync"]
        actions += ["ack", "time out applied"] if applied else []
        action = data.draw(st.sampled_from(actions))
        if action == "invoke":
            size = data.draw(st.integers(1, 4))
            events = [next(source) for _ in range(size)]
            kind = "append" if size == 1 and data.draw(st.booleans()) else "append_batch"
            waiting.append((history.invoke(kind, events), events))
        elif action in ("apply", "refuse", "time out"):
            op, events = waiting.pop(data.draw(st.integers(0, len(waiting) - 1)))
            if action == "apply":
                frames.append([_stored(e, next_seq + i) for i, e in enumerate(events)])
                next_seq += len(events)
                applied.append((op, len(frames) - 1))
            elif action == "refuse":
                history.fail(op, "store_read_only: disk full")
            else:
                history.unknown(op, "TimeoutError: no answer")
        elif action == "sync":
            durable = len(frames)
        else:
            ready = [i for i, (_, frame) in enumerate(applied) if frame < durable or action == "time out applied"]
            if not ready:
                continue
            op, frame = applied.pop(data.draw(st.sampled_from(ready)))
            if action == "ack":
                history.ok(op, [e.sequence for e in frames[frame]])
            else:
                history.unknown(op, "connection reset")
    kept = data.draw(st.integers(durable, len(frames)), label="frames surviving the crash")
    recovered = [event for frame in frames[:kept] for event in frame]
    return CrashRun(history, recovered, frames[:kept])


def _small_payloads() -> Any:
    from testkit.data import PayloadSizes

    return PayloadSizes(min_bytes=50, median_bytes=120, max_bytes=2000)


def _acked_present(run: CrashRun) -> list[str]:
    acked = {e for op in run.history if op.status is OpStatus.OK for e in op.event_ids}
    return [e.event_id for e in run.recovered if e.event_id in acked]


@SETTINGS
@given(st.data())
def test_every_legal_crash_is_accepted(data: st.DataObject) -> None:
    run = simulate(data)
    verdict = check_durability(run.history, run.recovered)
    assert verdict.ok, verdict.to_dict()
    assert verdict.counts["acknowledged_present"] == verdict.counts["acknowledged"]


@SETTINGS
@given(st.data())
def test_deleting_any_acknowledged_event_is_caught(data: st.DataObject) -> None:
    run = simulate(data)
    candidates = _acked_present(run)
    if not candidates:
        return
    victim = data.draw(st.sampled_from(candidates), label="deleted event")
    damaged = [e for e in run.recovered if e.event_id != victim]
    verdict = check_durability(run.history, damaged)
    assert not verdict.ok
    named = {e for v in verdict.violations if v.kind in ("lost", "hole", "torn_batch") for e in v.event_ids}
    assert victim in named, verdict.to_dict()


@SETTINGS
@given(st.data())
def test_duplicating_any_event_is_caught(data: st.DataObject) -> None:
    run = simulate(data)
    if not run.recovered:
        return
    copy = data.draw(st.sampled_from(run.recovered), label="duplicated event")
    damaged = [*run.recovered, replace(copy, sequence=run.recovered[-1].sequence + 1)]
    verdict = check_durability(run.history, damaged)
    assert verdict.violation_counts["duplicate"] == 1
    assert verdict.of_kind("duplicate")[0].event_ids == (copy.event_id,)


@SETTINGS
@given(st.data())
def test_changing_any_event_content_is_caught(data: st.DataObject) -> None:
    run = simulate(data)
    if not run.recovered:
        return
    index = data.draw(st.integers(0, len(run.recovered) - 1), label="damaged position")
    damaged = list(run.recovered)
    damaged[index] = replace(damaged[index], data={**damaged[index].data, "tampered": True})
    verdict = check_durability(run.history, damaged)
    assert [v.event_ids for v in verdict.violations] == [(damaged[index].event_id,)]
    assert verdict.violations[0].kind == "corrupted"


@SETTINGS
@given(st.data())
def test_judging_the_log_in_chunks_changes_no_verdict(data: st.DataObject) -> None:
    """The scan keeps a chunk of events at a time; a phantom, a duplicate or an aggregate going backwards
    that straddles chunks is reported exactly as when the whole log is one chunk."""
    run = simulate(data)
    versions: dict[str, int] = {}
    damaged = []
    for event in run.recovered:  # the versions a store would give, so that one going backwards can be made
        versions[event.aggregate_id] = versions.get(event.aggregate_id, 0) + 1
        damaged.append(replace(event, aggregate_version=versions[event.aggregate_id]))
    if damaged:
        for _ in range(data.draw(st.integers(0, 4), label="damages")):
            position = data.draw(st.integers(0, len(damaged) - 1))
            victim = damaged[position]
            damage = data.draw(st.sampled_from(["delete", "duplicate", "phantom twice", "version"]))
            if damage == "delete" and len(damaged) > 1:
                del damaged[position]
            elif damage == "duplicate":
                damaged.append(replace(victim, sequence=damaged[-1].sequence + 1))
            elif damage == "phantom twice":
                phantom = replace(victim, event_id=f"phantom-{position}")
                damaged.insert(position, phantom)
                damaged.append(replace(phantom, sequence=damaged[-1].sequence + 1))
            else:
                damaged[position] = replace(victim, aggregate_version=1)
    whole = check_durability(run.history, damaged)
    with mock.patch.object(durability, "_SCAN_CHUNK", data.draw(st.integers(1, 4), label="chunk")):
        chunked = check_durability(run.history, iter(damaged))
    assert chunked.to_dict()["counts"] == whole.to_dict()["counts"]
    assert chunked.violation_counts == whole.violation_counts

    def by_kind(verdict: Any) -> list[tuple[str, tuple[str, ...], tuple[int, ...], str]]:
        return sorted((v.kind, v.event_ids, v.sequences, v.detail) for v in verdict.violations)

    assert by_kind(chunked) == by_kind(whole)
