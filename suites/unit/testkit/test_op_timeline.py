"""testkit.op_timeline: a campaign's journals, fault records and judged recoveries become one OpTimeline on one
clock, with the events a violation names explained (who wrote them, when they were acknowledged, what was read
back) and marked on the timeline; the record passes the results schema."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from testkit.adapters.base import StoredEvent
from testkit.checkers import History, check_durability
from testkit.faults.records import FaultClock
from testkit.op_timeline import OpTimelineBuilder
from testkit.plugin import TestRecorder
from testkit.results import OP_OK, OP_UNKNOWN, TestRecord


def _event(number: int) -> dict[str, object]:
    return {"event_id": f"evt-{number}", "event_type": "agent_heartbeat", "aggregate_id": "agent:a", "data": {}}


def _stored(number: int, sequence: int) -> StoredEvent:
    return StoredEvent(f"evt-{number}", sequence, "agent_heartbeat", "agent:a", "a", {})


def _campaign(journal_dir: Path) -> tuple[OpTimelineBuilder, list[StoredEvent]]:
    """Two incarnations: i0 acknowledges evt-0..3 and is killed with evt-4 in flight; i1 acknowledges evt-5."""
    builder = OpTimelineBuilder()
    journal_dir.mkdir()
    first = History(journal_dir / "journal-00000.jsonl", client_id="i0", sync="none")
    for number in range(4):
        op = first.invoke("append", [_event(number)], client_id="i0-c0")
        first.ok(op, [number + 1])
    first.invoke("append", [_event(4)], client_id="i0-c0")  # never answered: the worker dies
    first.close()
    clock = FaultClock()
    time.sleep(0.002)
    builder.fault(clock.record("sigkill", True, "worker killed"))
    second = History(journal_dir / "journal-00001.jsonl", client_id="i1", sync="none")
    op = second.invoke("append", [_event(5)], client_id="i1-c0")
    second.ok(op, [6])
    second.close()
    # Recovery lost evt-3 (acknowledged at sequence 4) and never had evt-4.
    return builder, [_stored(0, 1), _stored(1, 2), _stored(2, 3), _stored(5, 6)]


def test_a_campaign_becomes_one_timeline_with_its_loss_explained(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    builder, recovered = _campaign(journal_dir)
    from testkit.faults.workload import load_history

    history = load_history(journal_dir)
    verdict = check_durability(history, recovered, voided=[(5, 5)])
    judgement = SimpleNamespace(ok=verdict.ok, verdict=verdict, missing_acked=frozenset({"evt-3"}),
                                declared_acked_losses=(), broken={"no_lost_ack": 1})
    builder.cycle(judgement, SimpleNamespace(open_seconds=0.012), journal_dir)
    timeline, verdicts = builder.build()

    assert timeline.total_ops == len(timeline.ops) == 6
    assert timeline.workers == ["i0-c0", "i1-c0"]
    statuses = [op[2] for op in timeline.ops]
    assert statuses.count(OP_OK) == 5 and statuses.count(OP_UNKNOWN) == 1
    assert [op[1] for op in timeline.ops if op[2] == OP_UNKNOWN] == [None]  # died mid-call: no latency
    assert min(op[0] for op in timeline.ops) == 0.0
    (start, end, label), = timeline.faults
    assert label == "sigkill" and 0 < start <= end
    last_i0 = max(op[0] for op in timeline.ops if op[3] == 0)
    first_i1 = min(op[0] for op in timeline.ops if op[3] == 1)
    assert last_i0 <= start <= first_i1  # the kill sits between the incarnations on the one clock
    (_, recovery_s, acknowledged, present), = timeline.cycles
    assert (recovery_s, acknowledged, present) == (0.012, 5, 4)
    assert sum(row[1] for row in timeline.bins) == 5  # every acknowledged operation is in the rate bins

    assert not verdict.ok
    (explained,) = verdicts
    lost = [v for v in explained["violations"] if "evt-3" in v["event_ids"]]
    assert lost, explained["violations"]
    event = lost[0]["events"][0]
    assert event["worker"] == "i0-c0" and event["answer"] == "acknowledged" and event["read_back"] == "absent"
    assert event["invoked_s"] <= event["answered_s"] <= start
    assert any(mark[2] == 0 and mark[0] == event["invoked_s"] for mark in timeline.marks)


def test_the_record_passes_the_results_schema(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    builder, recovered = _campaign(journal_dir)
    from testkit.faults.workload import load_history

    verdict = check_durability(load_history(journal_dir), recovered, voided=[(5, 5)])
    builder.cycle(SimpleNamespace(ok=False, verdict=verdict, missing_acked=frozenset({"evt-3"}),
                                  declared_acked_losses=(), broken={"no_lost_ack": 1}), None, journal_dir)
    recorder = TestRecorder("suites/chaos/test_x.py::test_y", 1, session=None)  # type: ignore[arg-type]
    builder.record(recorder)
    totals = recorder.verdicts[0]
    assert totals["checker"] == "history (whole campaign)" and not totals["ok"]
    assert totals["counts"]["lost_acknowledged"] == 1 and totals["counts"]["failed_checks"] == 1
    record = TestRecord.from_dict({"nodeid": "t", "outcome": "passed", "duration": 1.0, "verdicts": recorder.verdicts,
                                   "op_timeline": recorder.operations})
    assert record.op_timeline is not None and record.op_timeline.total_ops == 6


def test_a_malformed_timeline_names_the_field() -> None:
    import pytest

    from testkit.results import ResultsSchemaError

    base = {"nodeid": "t", "outcome": "passed", "duration": 1.0}
    cases = [
        ({"op_timeline": {"workers": ["w"], "ops": [[0.0, 0.1, 7, 0]]}}, r"ops\[0\]\[2\]: status"),
        ({"op_timeline": {"workers": ["w"], "ops": [[0.0, 0.1, 1, 3]]}}, r"ops\[0\]\[3\]: worker"),
        ({"op_timeline": {"workers": [], "ops": [], "faults": [[2.0, 1.0, "sigkill"]]}}, r"faults\[0\]"),
        ({"expectations": ["caught"]}, r"expectations\[0\]"),
    ]
    for extra, message in cases:
        with pytest.raises(ResultsSchemaError, match=message):
            TestRecord.from_dict({**base, **extra})
