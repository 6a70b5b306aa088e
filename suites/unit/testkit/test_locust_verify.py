"""The distributed run's read-back keeps what the check by id reads, and the check still catches a loss."""

from __future__ import annotations

from testkit.adapters.base import StoredEvent
from testkit.checkers import History, OpKind, check_durability
from testkit.load.locust.verify import for_the_check


def _recovered(event_id: str, sequence: int, aggregate: str, version: int) -> StoredEvent:
    # the names are built at run time, as a decoder builds them: separate string objects for one value
    return StoredEvent(event_id, sequence, "".join(["command_", "received"]), "".join([aggregate, ""]),
                       "".join(["agent-", "7"]), {"payload": "x" * 1000}, "corr", "cause", version)


def test_keeps_what_the_check_reads_and_drops_the_payload() -> None:
    event = _recovered("e-1", 5, "agg-1", 3)
    kept = for_the_check(event)
    assert (kept.event_id, kept.sequence, kept.event_type, kept.aggregate_id, kept.source_agent,
            kept.aggregate_version) == ("e-1", 5, "command_received", "agg-1", "agent-7", 3)
    assert dict(kept.data) == {}


def test_repeated_names_are_held_once() -> None:
    first, second = (for_the_check(_recovered(f"e-{n}", n, "agg-1", n)) for n in (1, 2))
    assert first.event_type is second.event_type
    assert first.aggregate_id is second.aggregate_id
    assert first.source_agent is second.source_agent


def test_the_check_by_id_still_finds_a_lost_write_and_an_out_of_order_version() -> None:
    history = History()
    for n in (1, 2, 3):
        op = history.invoke(OpKind.APPEND, [{"event_id": f"e-{n}"}], digests=[None])
        history.ok(op, [n])
    whole = [_recovered("e-1", 1, "agg-1", 2), _recovered("e-2", 2, "agg-1", 1)]  # e-3 lost; agg-1 goes 2 -> 1
    verdicts = [check_durability(history, events, verify_digests=False)
                for events in (whole, [for_the_check(event) for event in whole])]
    assert not verdicts[0].ok
    assert verdicts[1].counts == verdicts[0].counts
    assert sorted(v.kind for v in verdicts[1].violations) == sorted(v.kind for v in verdicts[0].violations)
    assert {str(v.kind) for v in verdicts[1].violations} >= {"lost", "aggregate_order"}
