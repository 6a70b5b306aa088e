"""The durability checker on crafted histories: each invariant is caught, correct histories pass."""

from __future__ import annotations

import gc
import json
from dataclasses import replace
from typing import Any

import pytest

from testkit.adapters.base import StoredEvent
from testkit.checkers import History, Verdict, ViolationKind, check_durability


class Scenario:
    """A client history plus the log a store kept, built step by step like a real run."""

    def __init__(self) -> None:
        self.history = History()
        self.log: list[StoredEvent] = []
        self.next_seq = 1

    @staticmethod
    def event(n: int, aggregate: str | None = None) -> dict[str, Any]:
        return {"event_id": f"e{n}", "event_type": "custom", "aggregate_id": aggregate or f"agg:{n % 3}",
                "source_agent": "builder-1", "data": {"n": n, "text": f"payload {n}"}}

    def store(self, events: list[dict[str, Any]]) -> list[StoredEvent]:
        stored = []
        for e in events:
            stored.append(StoredEvent(e["event_id"], self.next_seq, e["event_type"], e["aggregate_id"],
                                      e["source_agent"], dict(e["data"])))
            self.next_seq += 1
        self.log.extend(stored)
        return stored

    def write(self, *numbers: int, outcome: str = "ok", kept: bool = True, report_sequences: bool = True) -> int:
        """One append (one number) or batch (several); ``kept``: the store wrote it; ``outcome``: what it said."""
        events = [self.event(n) for n in numbers]
        op = self.history.invoke("append" if len(events) == 1 else "append_batch", events)
        stored = self.store(events) if kept else []
        if outcome == "ok":
            self.history.ok(op, [s.sequence for s in stored] if report_sequences else None)
        elif outcome == "fail":
            self.history.fail(op, "store_read_only: refused")
        elif outcome == "unknown":
            self.history.unknown(op, "TimeoutError")
        return op

    def check(self, **options: Any) -> Verdict:
        return check_durability(self.history, self.log, **options)

    def drop(self, event_id: str) -> None:
        before = len(self.log)
        self.log = [e for e in self.log if e.event_id != event_id]
        assert len(self.log) == before - 1, "the scenario must really remove the event"


def kinds(verdict: Verdict) -> set[str]:
    return {k for k, n in verdict.violation_counts.items() if n}


@pytest.fixture
def sc() -> Scenario:
    return Scenario()


def test_a_correct_history_passes_with_every_count_right(sc: Scenario) -> None:
    for n in range(1, 6):
        sc.write(n)
    sc.write(6, 7, 8)
    verdict = sc.check()
    assert verdict.ok, verdict.to_dict()
    assert verdict.counts["acknowledged"] == verdict.counts["acknowledged_present"] == 8
    assert verdict.counts["recovered"] == 8
    assert verdict.counts["digests_verified"] == 8
    assert verdict.violations == ()
    assert gc.isenabled()  # the checker pauses the cyclic GC only while it runs


def test_unknown_outcomes_may_be_present_or_absent(sc: Scenario) -> None:
    sc.write(1)
    sc.write(2, outcome="unknown", kept=True)
    sc.write(3)
    sc.write(4, outcome="unknown", kept=False)
    sc.write(5, 6, outcome="unknown", kept=True)
    op = sc.history.invoke("append", [sc.event(7)])  # still in flight when the store was read
    assert op == 5
    verdict = sc.check()
    assert verdict.ok, verdict.to_dict()
    assert verdict.counts["unknown_present"] == 3
    assert verdict.counts["unknown_absent"] == 2


def test_calls_without_an_answer_are_told_apart_from_indefinite_answers(sc: Scenario, tmp_path: Any) -> None:
    """A call still in flight when its client stopped (closed as unknown on loading the journal) is counted as
    never answered; a call that timed out is unknown too, but was answered by the client's own timeout."""
    journal = tmp_path / "client.journal"
    sc.history = History(journal, sync="none")
    sc.write(1)
    sc.write(2, outcome="unknown", kept=True)  # timed out, but written
    sc.history.invoke("append_batch", [sc.event(3), sc.event(4)])  # cut off: the store kept it
    sc.store([sc.event(3), sc.event(4)])
    sc.history.invoke("append", [sc.event(5)])  # cut off: the store never got it
    sc.history.close()
    loaded = History.load(journal)
    assert loaded.without_outcome() == [2, 3]
    verdict = check_durability(loaded, sc.log)
    assert verdict.ok, verdict.to_dict()
    assert verdict.counts["unknown_present"] == 3 and verdict.counts["unknown_absent"] == 1
    assert verdict.counts["no_outcome_present"] == 2 and verdict.counts["no_outcome_absent"] == 1
    assert "3 never got an answer: present=2 absent=1" in verdict.summary()
    live = check_durability(sc.history, sc.log)  # before loading, the same calls are still pending
    assert live.counts["no_outcome_present"] == 2 and live.counts["no_outcome_absent"] == 1


def test_a_lost_acknowledged_write_at_the_tail_is_lost(sc: Scenario) -> None:
    for n in range(1, 5):
        sc.write(n)
    sc.drop("e4")
    verdict = sc.check()
    assert not verdict.ok
    assert kinds(verdict) == {"lost"}
    (violation,) = verdict.of_kind(ViolationKind.LOST)
    assert violation.event_ids == ("e4",) and violation.sequences == (4,)


def test_an_acknowledged_write_missing_before_surviving_ones_is_a_hole(sc: Scenario) -> None:
    for n in range(1, 6):
        sc.write(n)
    sc.drop("e2")
    verdict = sc.check()
    assert kinds(verdict) == {"hole"}  # one report: the gap at sequence 2 is the same hole
    (violation,) = verdict.violations
    assert violation.event_ids == ("e2",) and violation.sequences == (2,)


def test_a_hole_is_found_without_acknowledged_sequences_through_real_time(sc: Scenario) -> None:
    for n in range(1, 4):
        sc.write(n, report_sequences=False)
    sc.drop("e1")
    verdict = sc.check(gapless=False)
    assert kinds(verdict) == {"hole"}
    assert verdict.violations[0].event_ids == ("e1",)


def test_a_sequence_gap_of_an_unacknowledged_write_is_a_hole_for_a_gapless_store(sc: Scenario) -> None:
    sc.write(1)
    sc.write(2, outcome="unknown")
    sc.write(3)
    sc.drop("e2")
    verdict = sc.check()
    assert kinds(verdict) == {"hole"}
    assert verdict.violations[0].sequences == (2, 2)
    assert sc.check(gapless=False).ok  # a store that may skip numbers: an unknown write may vanish


def test_a_log_that_does_not_start_at_the_first_sequence_has_a_hole(sc: Scenario) -> None:
    sc.write(1, outcome="unknown")
    sc.write(2, outcome="unknown")
    sc.drop("e1")
    verdict = sc.check()
    assert kinds(verdict) == {"hole"} and verdict.violations[0].sequences == (1, 1)


def test_a_duplicate_is_reported_with_both_sequences(sc: Scenario) -> None:
    for n in range(1, 4):
        sc.write(n)
    sc.log.append(replace(sc.log[1], sequence=4))
    verdict = sc.check()
    assert kinds(verdict) == {"duplicate"}
    assert verdict.violations[0].event_ids == ("e2",) and verdict.violations[0].sequences == (2, 4)


def test_reordering_against_real_time_is_caught(sc: Scenario) -> None:
    sc.write(1, report_sequences=False)
    sc.write(2, report_sequences=False)  # invoked after e1 was acknowledged: must come after it
    sc.log = [replace(sc.log[1], sequence=1), replace(sc.log[0], sequence=2)]
    verdict = sc.check()
    assert kinds(verdict) == {"reordered"}
    assert verdict.violations[0].event_ids == ("e2", "e1")


def test_reordering_with_acknowledged_sequences_is_also_a_sequence_mismatch(sc: Scenario) -> None:
    sc.write(1)
    sc.write(2)
    sc.log = [replace(sc.log[1], sequence=1), replace(sc.log[0], sequence=2)]
    assert kinds(sc.check()) == {"reordered", "sequence_mismatch"}


def test_concurrent_writes_may_land_in_either_order(sc: Scenario) -> None:
    first = sc.history.invoke("append", [sc.event(1)])
    second = sc.history.invoke("append", [sc.event(2)])
    sc.store([sc.event(2), sc.event(1)])  # the store ordered the later invoke first: legal, they overlapped
    sc.history.ok(second, [1])
    sc.history.ok(first, [2])
    assert sc.check().ok


def test_a_batch_out_of_its_own_order_is_reordered(sc: Scenario) -> None:
    sc.write(1, 2, 3, report_sequences=False)
    sc.log = [replace(sc.log[0], sequence=1), replace(sc.log[2], sequence=2), replace(sc.log[1], sequence=3)]
    assert kinds(sc.check()) == {"reordered"}


def test_sequences_that_do_not_increase_are_caught(sc: Scenario) -> None:
    for n in range(1, 4):
        sc.write(n, report_sequences=False)
    sc.log = [sc.log[0], sc.log[2], replace(sc.log[1], sequence=3)]
    verdict = sc.check()
    assert "sequence_order" in kinds(verdict)


def test_a_phantom_is_caught_and_store_generated_events_are_not_phantoms(sc: Scenario) -> None:
    sc.write(1)
    sc.log.append(StoredEvent("ghost", 2, "custom", "agg:x", "nobody"))
    sc.log.append(StoredEvent("store-note", 3, "corruption_detected", "store", "lighthouse"))
    verdict = sc.check()
    assert kinds(verdict) == {"phantom"} and verdict.violation_counts["phantom"] == 2
    verdict = sc.check(store_generated=lambda e: e.event_type == "corruption_detected")
    assert verdict.violation_counts["phantom"] == 1 and verdict.violations[0].event_ids == ("ghost",)
    assert verdict.counts["store_generated"] == 1


def test_a_phantom_recovered_twice_is_also_a_duplicate(sc: Scenario) -> None:
    sc.write(1)
    sc.log.append(StoredEvent("ghost", 2, "custom", "agg:x", "nobody"))
    sc.log.append(StoredEvent("ghost", 3, "custom", "agg:x", "nobody"))
    verdict = sc.check()
    assert verdict.violation_counts["phantom"] == 2 and verdict.violation_counts["duplicate"] == 1
    assert verdict.of_kind("duplicate")[0].sequences == (2, 3)


def test_a_torn_batch_is_caught_whatever_its_outcome(sc: Scenario) -> None:
    sc.write(1, 2, 3, 4, outcome="unknown")
    sc.drop("e3")
    sc.drop("e4")
    verdict = sc.check()
    assert kinds(verdict) == {"torn_batch"}
    assert verdict.violations[0].event_ids == ("e3", "e4") and verdict.violations[0].sequences == (1, 2)


def test_a_torn_acknowledged_batch_is_torn_and_lost(sc: Scenario) -> None:
    sc.write(1, 2, 3)
    sc.drop("e3")
    assert kinds(sc.check()) == {"torn_batch", "lost"}


def test_a_corrupted_event_is_caught_by_its_digest(sc: Scenario) -> None:
    sc.write(1)
    sc.write(2)
    sc.log[1] = replace(sc.log[1], data={"n": 2, "text": "payload 3"})
    verdict = sc.check()
    assert kinds(verdict) == {"corrupted"} and verdict.violations[0].event_ids == ("e2",)
    assert sc.check(verify_digests=False).ok


def test_a_failed_write_that_appears_is_a_violation(sc: Scenario) -> None:
    sc.write(1)
    sc.write(2, outcome="fail", kept=True)
    sc.write(3, outcome="fail", kept=False)
    verdict = sc.check()
    assert kinds(verdict) == {"failed_write_present"} and verdict.violations[0].event_ids == ("e2",)
    assert verdict.counts["failed_absent"] == 1


def test_a_recovered_sequence_other_than_the_acknowledged_one_is_a_mismatch(sc: Scenario) -> None:
    op = sc.history.invoke("append", [sc.event(1)])
    sc.store([sc.event(1)])
    sc.history.ok(op, [7])
    verdict = sc.check()
    assert kinds(verdict) == {"sequence_mismatch"} and verdict.violations[0].sequences == (7, 1)


def test_aggregate_versions_must_increase(sc: Scenario) -> None:
    for n in (3, 6, 9):  # all on aggregate agg:0
        sc.write(n)
    sc.log = [replace(e, aggregate_version=v) for e, v in zip(sc.log, (1, 2, 2))]
    verdict = sc.check()
    assert kinds(verdict) == {"aggregate_order"} and verdict.violations[0].event_ids == ("e9",)


def test_a_retried_write_counts_once(sc: Scenario) -> None:
    sc.write(1, outcome="unknown", kept=True)  # the store wrote it but the answer timed out
    retry = sc.history.invoke("append", [sc.event(1)])
    sc.history.ok(retry, [1])  # the store recognised the id and acknowledged the original
    sc.write(2)
    assert sc.check().ok
    sc.log.append(replace(sc.log[0], sequence=3))  # ... but a store that wrote it twice is caught
    assert kinds(sc.check()) == {"duplicate"}


def test_losses_in_declared_ranges_are_reported_not_hidden(sc: Scenario) -> None:
    for n in range(1, 6):
        sc.write(n)
    sc.drop("e2")
    sc.drop("e3")
    verdict = sc.check(voided=[(2, 3)])
    assert verdict.ok, verdict.to_dict()
    assert verdict.declared_loss_count == 3  # two acknowledged events and the gap they leave
    assert {e for v in verdict.declared_losses for e in v.event_ids} == {"e2", "e3"}
    assert not sc.check(voided=[(2, 3)], declared_are_violations=True).ok
    partial = sc.check(voided=[(2, 2)])
    assert kinds(partial) == {"hole"} and partial.violations[0].event_ids == ("e3",)


def test_violation_lists_are_capped_but_counts_are_not(sc: Scenario) -> None:
    sc.write(1)
    sc.log.extend(StoredEvent(f"ghost{i}", i + 2, "custom", "agg:x", "nobody") for i in range(200))
    verdict = sc.check(max_examples=10)
    assert verdict.violation_counts["phantom"] == 200
    assert len(verdict.of_kind("phantom")) == 10


def test_the_verdict_serialises_and_summarises(sc: Scenario) -> None:
    for n in range(1, 4):
        sc.write(n)
    sc.drop("e3")
    verdict = sc.check()
    decoded = json.loads(json.dumps(verdict.to_dict()))
    assert decoded["ok"] is False and decoded["violation_counts"]["lost"] == 1
    assert decoded["violations"][0]["event_ids"] == ["e3"]
    assert "VIOLATED (lost=1)" in verdict.summary()


def test_empty_history_and_empty_log_pass() -> None:
    assert check_durability(History(), []).ok


def test_bad_declared_range_is_refused(sc: Scenario) -> None:
    with pytest.raises(ValueError, match="empty"):
        sc.check(voided=[(5, 2)])
