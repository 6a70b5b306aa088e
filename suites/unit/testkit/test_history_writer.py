"""``HistoryWriter`` records to the journal alone: the same journal as ``History`` for the same calls, and
memory that stays flat however many operations it records (what a Locust worker needs for an hour or a day)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from testkit.checkers import History, HistoryWriter, OpStatus


def event(n: int) -> dict[str, Any]:
    return {"event_id": f"ev-{n}", "event_type": "custom", "aggregate_id": f"agg:{n % 4}", "data": {"n": n}}


def record(recorder: History | HistoryWriter) -> None:
    """Every kind of call: acknowledged with and without sequences, refused, unknown, another client's, and
    one left in flight when the recorder closes (a journal read calls it unknown: the client stopped mid-call)."""
    ops = [recorder.invoke("append", [event(n)]) for n in range(4)]
    recorder.ok(ops[0], [1])
    recorder.ok(ops[2])
    batch = recorder.invoke("append_batch", [event(10), event(11)], digests=["d-10", None])
    recorder.fail(ops[1], "invalid_event")
    recorder.ok(batch, [7, 8])
    other = recorder.invoke("append_batch", [event(12), event(13)], client_id="agent-7", digests=[None, None])
    recorder.unknown(other, "ConnectionResetError")
    recorder.invoke("append", [event(20)])  # in flight at close
    recorder.unknown(ops[3], "timeout")
    recorder.close()


def comparable(history: History) -> list[tuple[Any, ...]]:
    return [(op.client_id, op.kind, op.event_ids, op.digests, op.status, op.sequences, op.error) for op in history]


def test_it_journals_what_a_history_journals(tmp_path: Path) -> None:
    record(History(tmp_path / "history.journal", client_id="w"))
    writer = HistoryWriter(tmp_path / "writer.journal", client_id="w")
    record(writer)
    by_history, by_writer = History.load(tmp_path / "history.journal"), History.load(tmp_path / "writer.journal")
    assert comparable(by_writer) == comparable(by_history)
    statuses = [op.status for op in by_writer]
    assert statuses.count(OpStatus.OK) == 3 and statuses.count(OpStatus.UNKNOWN) == 3 and OpStatus.FAIL in statuses
    assert by_writer[5].client_id == "agent-7" and by_writer[4].digests == ("d-10", None)
    assert [op.invoked_at for op in by_writer] == sorted(op.invoked_at for op in by_writer)
    assert writer.in_flight == 1  # the call it closed on


def test_its_memory_stays_flat_while_a_history_grows(tmp_path: Path) -> None:
    def growth(recorder: History | HistoryWriter, operations: int) -> int:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(operations):
                op = recorder.invoke("append_batch", [{"event_id": f"e-{n}-{k}"} for k in range(10)],
                                     digests=[None] * 10)
                recorder.ok(op)
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            recorder.close()

    operations = 20_000  # 200,000 events
    kept = growth(History(tmp_path / "h.journal", sync="none"), operations)
    written = growth(HistoryWriter(tmp_path / "w.journal", sync="none"), operations)
    assert kept > 10_000_000, kept  # a History holds every id: the figure the writer is measured against
    assert written < 200_000, written
    assert len(History.load(tmp_path / "w.journal")) == operations


def test_misuse_raises_clear_errors(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "w.journal")
    op = writer.invoke("append", [event(1)])
    with pytest.raises(ValueError, match="1 events, got 2 sequences"):
        writer.ok(op, [1, 2])
    writer.ok(op, [1])
    with pytest.raises(ValueError, match="not in flight"):
        writer.fail(op, "late")
    with pytest.raises(ValueError, match="not in flight"):
        writer.unknown(99, "no such op")
    with pytest.raises(ValueError, match="exactly one event"):
        writer.invoke("append", [event(2), event(3)])
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.invoke("append", [event(4)])
    with pytest.raises(ValueError, match="already holds a journal"):
        HistoryWriter(tmp_path / "w.journal")
    with pytest.raises(ValueError, match="sync"):
        HistoryWriter(tmp_path / "x.journal", sync="sometimes")  # type: ignore[arg-type]
    assert [o.status for o in History.load(tmp_path / "w.journal")] == [OpStatus.OK]


def test_two_writers_started_on_one_journal_at_once_cannot_both_write_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.journal"
    path.touch()  # an empty file (say, made by mkstemp) is a new journal
    first = HistoryWriter(path, client_id="first")
    with pytest.raises(ValueError, match="being written by another writer"):
        HistoryWriter(path, client_id="second")  # before the first wrote anything it syncs
    first.ok(first.invoke("append", [event(1)]), sequences=[1])
    first.close()
    with pytest.raises(ValueError, match="already holds a journal"):
        HistoryWriter(path, client_id="third")
    columns = History.load(path).columns()
    assert columns.client_ids == ["first"] and columns.event_ids == [("ev-1",)] and list(columns.status) == [1]
