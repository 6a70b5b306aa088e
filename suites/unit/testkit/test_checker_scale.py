"""The checker at 10^6 operations: correct on a clean log, exact about a single deletion.

No time is asserted here (figures come from ``python -m testkit.checkers.benchmark``); the test proves
the checker handles this size at all, in linear memory, and stays precise.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from testkit.checkers import History, check_durability

OPS = 1_000_000


class Recovered(NamedTuple):
    """The smallest StoredEvent-like record: what the checker reads from a log."""

    event_id: str
    sequence: int
    aggregate_id: str


def build() -> tuple[History, list[Recovered]]:
    """10^6 operations: appends, every 10th a batch of 5, every 50th with an unknown outcome (half kept)."""
    history = History()
    log: list[Recovered] = []
    seq = 0
    no_digest = [None]
    no_digests = [None] * 5
    for op_number in range(OPS):
        size = 5 if op_number % 10 == 0 else 1
        ids = [f"e{op_number}.{i}" for i in range(size)]
        op = history.invoke("append" if size == 1 else "append_batch", [{"event_id": i} for i in ids],
                            digests=no_digest if size == 1 else no_digests)
        if op_number % 50 == 7:
            if op_number % 100 == 7:  # the store kept it, the client never heard back
                for event_id in ids:
                    seq += 1
                    log.append(Recovered(event_id, seq, "agg"))
            history.unknown(op, "TimeoutError")
            continue
        first = seq + 1
        for event_id in ids:
            seq += 1
            log.append(Recovered(event_id, seq, "agg"))
        history.ok(op, range(first, seq + 1))
    return history, log


@pytest.fixture
def gc_paused() -> Iterator[None]:
    """Building 3 million objects with the cyclic GC on spends most of the time rescanning them."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("gc_paused")
def test_a_million_operations_are_checked_exactly() -> None:
    history, log = build()
    assert len(history) == OPS
    verdict = check_durability(history, log)
    assert verdict.ok, verdict.summary()
    assert verdict.counts["operations"] == OPS
    assert verdict.counts["unknown_present"] == verdict.counts["unknown_absent"] == 10_000
    assert verdict.counts["acknowledged"] == verdict.counts["acknowledged_present"] == len(log) - 10_000

    victim = log.pop(next(i for i, r in enumerate(log) if r.event_id == "e500001.0"))  # an acked single append
    verdict = check_durability(history, log)
    assert verdict.violation_counts["hole"] == 1 and sum(verdict.violation_counts.values()) == 1
    assert verdict.violations[0].event_ids == (victim.event_id,)
