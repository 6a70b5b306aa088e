"""Print how long recording and checking a history of N operations takes on this machine.

    python -m testkit.checkers.benchmark --ops 1000000

Figures are CPU seconds of this process (``time.process_time``) and wall seconds, so a busy shared
machine does not inflate the claim; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from testkit.adapters.base import StoredEvent, content_digest
from testkit.checkers.durability import check_durability
from testkit.checkers.history import History

__all__ = ["main"]

T = TypeVar("T")


def _timed(label: str, ops: int, action: Callable[[], T]) -> T:
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<44} {cpu:7.2f} s cpu {wall:7.2f} s wall {cpu / ops * 1e6:8.2f} us/op (cpu)")
    return result


def _record(ops: int, journal: Path | None, digests: bool) -> tuple[History, list[StoredEvent]]:
    history = History(journal, sync="group", group_size=1024) if journal else History()
    recovered = []
    for i in range(ops):
        event = {"event_id": f"ev-{i}", "event_type": "custom", "aggregate_id": f"agg:{i % 1000}",
                 "data": {"n": i}}
        op = history.invoke("append", [event], digests=None if digests else [None])
        history.ok(op, (i + 1,))
        recovered.append(StoredEvent(f"ev-{i}", i + 1, "custom", f"agg:{i % 1000}", "bench", {"n": i}))
    history.close()
    return history, recovered


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    ops = args.ops
    print(f"history and durability checker, {ops:,} single-event appends")
    history, recovered = _timed("record in memory, no digests (+ build log)", ops, lambda: _record(ops, None, False))
    verdict = _timed("check, no digests", ops, lambda: check_durability(history, recovered))
    print(f"  {verdict.summary()}")
    del recovered[ops // 2]
    verdict = _timed("check with one acknowledged write deleted", ops, lambda: check_durability(history, recovered))
    print(f"  {verdict.summary()}")
    history, recovered = _timed("record in memory with digests (+ build log)", ops, lambda: _record(ops, None, True))
    verdict = _timed("check with digests", ops, lambda: check_durability(history, recovered))
    print(f"  {verdict.summary()}")
    _timed("content_digest alone", ops, lambda: [content_digest({"event_id": "e", "event_type": "custom",
                                                                  "aggregate_id": "a", "data": {"n": i}})
                                                  for i in range(ops)])
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "history.jsonl"
        _timed("record with a journal (fsync per 1024)", ops, lambda: _record(ops, journal, True))
        print(f"  journal: {journal.stat().st_size / ops:.0f} bytes per operation")
        loaded = _timed("load the journal", ops, lambda: History.load(journal))
        print(f"  loaded {len(loaded):,} operations")


if __name__ == "__main__":
    main()
