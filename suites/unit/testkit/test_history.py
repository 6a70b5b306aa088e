"""The operation history: outcomes, the journal, and surviving the client's own crash."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from testkit.adapters import AdapterError, SqliteAdapter, StoredEvent
from testkit.checkers import History, JournalError, OpKind, OpStatus, check_durability

REPO = Path(__file__).resolve().parents[3]


def event(n: int, **data: Any) -> dict[str, Any]:
    return {"event_id": f"ev-{n}", "event_type": "custom", "aggregate_id": f"agg:{n % 4}",
            "source_agent": "tester-1", "data": {"n": n, **data}}


# recording -------------------------------------------------------------------------------------------------


def test_outcomes_are_recorded_per_operation() -> None:
    history = History(client_id="c1")
    a = history.invoke("append", [event(1)])
    b = history.invoke(OpKind.APPEND_BATCH, [event(2), event(3)])
    c = history.invoke("append", [event(4)])
    d = history.invoke("append", [event(5)])
    history.ok(a, [1])
    history.fail(c, "store_read_only: disk full")
    history.unknown(b, "TimeoutError")
    assert [op.status for op in history] == [OpStatus.OK, OpStatus.UNKNOWN, OpStatus.FAIL, OpStatus.PENDING]
    first = history[a]
    assert first.event_ids == ("ev-1",) and first.sequences == (1,) and first.client_id == "c1"
    assert first.digests is not None and len(first.digests[0] or "") == 32
    assert first.completed_at is not None and first.completed_at >= first.invoked_at
    assert history[b].kind is OpKind.APPEND_BATCH and history[b].error == "TimeoutError"
    assert history[d].completed_at is None
    assert history.status_counts() == {"pending": 1, "ok": 1, "fail": 1, "unknown": 1}


def test_misuse_raises_clear_errors() -> None:
    history = History()
    op = history.invoke("append", [event(1)])
    with pytest.raises(ValueError, match="1 events, got 2 sequences"):
        history.ok(op, [1, 2])
    history.ok(op, [1])
    with pytest.raises(ValueError, match="already completed as ok"):
        history.fail(op, "late")
    with pytest.raises(ValueError, match="at least one event"):
        history.invoke("append_batch", [])
    with pytest.raises(ValueError, match="exactly one event"):
        history.invoke("append", [event(2), event(3)])
    with pytest.raises(ValueError, match="unknown operation kind"):
        history.invoke("delete", [event(2)])
    with pytest.raises(IndexError):
        history.unknown(99, "no such op")
    with pytest.raises(ValueError, match="sync"):
        History(sync="sometimes")  # type: ignore[arg-type]


def test_track_turns_exceptions_into_fail_or_unknown() -> None:
    history = History()
    with history.track("append", [event(1)]) as call:
        call.ok(StoredEvent("ev-1", 1, "custom", "agg:1", "tester-1"))
    with pytest.raises(AdapterError), history.track("append", [event(2)]):
        raise AdapterError("read only", code="store_read_only")
    with pytest.raises(AdapterError), history.track("append", [event(3)]):
        raise AdapterError("fsync failed", code="write_failed", retryable=True)
    with pytest.raises(TimeoutError), history.track("append", [event(4)]):
        raise TimeoutError("no answer in 5 s")
    with history.track("append", [event(5)]):
        pass  # the caller forgot to record an outcome
    statuses = [op.status for op in history]
    assert statuses == [OpStatus.OK, OpStatus.FAIL, OpStatus.UNKNOWN, OpStatus.UNKNOWN, OpStatus.UNKNOWN]
    assert history[1].error is not None and history[1].error.startswith("store_read_only")
    assert history[0].sequences == (1,)


def test_recording_against_a_real_store_checks_clean(tmp_path: Path) -> None:
    async def run() -> tuple[History, list[StoredEvent]]:
        store = SqliteAdapter(tmp_path / "sqlite")
        await store.open()
        history = History(tmp_path / "client.journal")
        try:
            for n in range(20):
                await history.append(store, event(n))
            await history.append_batch(store, [event(n) for n in range(20, 30)])
            with pytest.raises(AdapterError):  # refused before writing: a definite failure
                await history.append(store, event(30, bad={1, 2}))
            with pytest.raises(AdapterError):  # the id is already stored: outcome unknown, event present once
                await history.append(store, event(5))
            recovered = [e async for e in store.read_all()]
        finally:
            history.close()
            await store.close()
        return history, recovered

    history, recovered = asyncio.run(run())
    assert [op.status.value for op in history][-2:] == ["fail", "unknown"]
    verdict = check_durability(History.load(tmp_path / "client.journal"), recovered)
    assert verdict.ok, verdict.to_dict()
    assert verdict.counts["acknowledged_present"] == 30 and verdict.counts["failed_absent"] == 1


# the journal -----------------------------------------------------------------------------------------------


def record_sample(path: Path, **options: Any) -> History:
    history = History(path, client_id="writer", **options)
    for n in range(6):
        op = history.invoke("append", [event(n)])
        history.ok(op, [n + 1])
    batch = history.invoke("append_batch", [event(6), event(7)])
    history.fail(batch, "batch_too_large")
    lost = history.invoke("append", [event(8)])
    history.unknown(lost, "connection reset")
    history.invoke("append", [event(9)])  # pending when the client stopped
    history.close()
    return history


@pytest.mark.parametrize("sync", ["record", "group", "none"])
def test_a_journal_loads_back_to_the_same_history(tmp_path: Path, sync: str) -> None:
    live = record_sample(tmp_path / "h.journal", sync=sync, group_size=3)
    loaded = History.load(tmp_path / "h.journal")
    assert not loaded.torn_tail
    assert len(loaded) == len(live) == 9
    for before, after in zip(live, loaded):
        assert (after.event_ids, after.kind, after.client_id, after.digests, after.invoked_at) == (
            before.event_ids, before.kind, before.client_id, before.digests, before.invoked_at)
        if before.status is OpStatus.PENDING:  # the client stopped mid-call
            assert after.status is OpStatus.UNKNOWN and "mid-call" in (after.error or "")
        else:
            assert (after.status, after.sequences, after.error, after.completed_at) == (
                before.status, before.sequences, before.error, before.completed_at)


def record_boundaries(data: bytes) -> list[int]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    ends = []
    for _ in unpacker:
        ends.append(unpacker.tell())
    return ends


def test_a_torn_last_record_is_dropped_at_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "h.journal"
    record_sample(path)
    data = path.read_bytes()
    ends = record_boundaries(data)
    last_start = ends[-2]  # the last record is the invoke of ev-9
    for cut in range(last_start + 1, len(data)):
        torn = tmp_path / f"cut{cut}.journal"
        torn.write_bytes(data[:cut])
        loaded = History.load(torn)
        assert loaded.torn_tail
        assert len(loaded) == 8 and loaded[7].status is OpStatus.UNKNOWN
    cut_at_boundary = tmp_path / "boundary.journal"
    cut_at_boundary.write_bytes(data[:last_start])
    assert not History.load(cut_at_boundary).torn_tail


def test_zeros_after_the_last_record_are_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "h.journal"
    record_sample(path)
    with open(path, "ab") as handle:
        handle.write(b"\0" * 4096)  # a power cut after the file grew but before its data reached the disk
    loaded = History.load(path)
    assert loaded.torn_tail and len(loaded) == 9


def test_damage_before_the_end_is_an_error_not_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "h.journal"
    record_sample(path)
    data = path.read_bytes()
    boundary = record_boundaries(data)[2]
    path.write_bytes(data[:boundary] + b"\xc1" + data[boundary:])
    with pytest.raises(JournalError, match="damaged at byte"):
        History.load(path)
    completed_again = msgpack.packb(["o", 0, time.monotonic_ns(), None, None])
    path.write_bytes(data[:boundary] + completed_again + data[boundary:])
    with pytest.raises(JournalError, match="completed twice"):
        History.load(path)


def test_a_restarted_client_resumes_its_journal_after_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "h.journal"
    record_sample(path)
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # the previous incarnation died mid-record
    resumed = History(path, client_id="writer")
    assert resumed.torn_tail and len(resumed) == 8  # the invoke of ev-9 was torn away
    op = resumed.invoke("append", [event(10)])
    resumed.ok(op, [7])
    resumed.close()
    loaded = History.load(path)
    assert not loaded.torn_tail and len(loaded) == 9
    assert [o.status.value for o in loaded][-3:] == ["fail", "unknown", "ok"]
    assert loaded[8].event_ids == ("ev-10",) and loaded[8].sequences == (7,)


def test_journals_of_several_clients_merge_into_one_timeline(tmp_path: Path) -> None:
    clients = [History(tmp_path / f"c{i}.journal", client_id=f"c{i}") for i in range(3)]
    for n in range(30):
        history = clients[n % 3]
        op = history.invoke("append", [event(n)])
        history.ok(op, [n + 1])
    for history in clients:
        history.close()
    merged = History.load(*(tmp_path / f"c{i}.journal" for i in range(3)))
    assert [op.event_ids[0] for op in merged] == [f"ev-{n}" for n in range(30)]
    assert [op.client_id for op in merged] == [f"c{n % 3}" for n in range(30)]
    recovered = [StoredEvent(f"ev-{n}", n + 1, "custom", f"agg:{n % 4}", "tester-1", {"n": n}) for n in range(30)]
    assert check_durability(merged, recovered).ok


# surviving the client's crash ------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from testkit.checkers import History
    journal, mode = Path(sys.argv[1]), sys.argv[2]
    history = History(journal, client_id="doomed", sync="group", group_size=64)
    n = 0
    while True:
        op = history.invoke("append", [{"event_id": f"ev-{n}", "event_type": "custom",
                                        "aggregate_id": "agg:1", "data": {"n": n}}])
        if mode == "hang" and n == 500:
            Path(sys.argv[3]).write_text("in the call")  # tell the parent: now blocked inside a call
            time.sleep(600)
        history.ok(op, [n + 1])
        n += 1
""")


def run_child(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    journal, marker = tmp_path / "child.journal", tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(journal), mode, str(marker)], env=env, cwd=REPO)
    return child, journal, marker


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def kill(child: subprocess.Popen[bytes]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL  # the fault really happened


def test_a_sigkilled_client_keeps_every_record_it_wrote(tmp_path: Path) -> None:
    child, journal, _ = run_child(tmp_path, "loop")
    try:
        wait_for(lambda: journal.exists() and journal.stat().st_size > 200_000, "the child to journal ops")
    finally:
        kill(child)
    history = History.load(journal)
    assert len(history) > 1000
    assert [op.event_ids[0] for op in history] == [f"ev-{n}" for n in range(len(history))]
    statuses = [op.status for op in history]
    assert set(statuses[:-1]) == {OpStatus.OK}  # every completed call survived, up to the kill
    assert statuses[-1] in (OpStatus.OK, OpStatus.UNKNOWN)
    assert [op.sequences for op in history if op.status is OpStatus.OK] == [
        (n + 1,) for n in range(statuses.count(OpStatus.OK))]


def test_a_client_killed_inside_a_call_leaves_that_call_unknown(tmp_path: Path) -> None:
    child, journal, marker = run_child(tmp_path, "hang")
    try:
        wait_for(marker.exists, "the child to block inside call 500")
    finally:
        kill(child)
    history = History.load(journal)
    assert len(history) == 501
    assert history[500].status is OpStatus.UNKNOWN and "mid-call" in (history[500].error or "")
    assert all(op.status is OpStatus.OK for op in list(history)[:500])


def test_resuming_closes_the_calls_a_previous_incarnation_left_open(tmp_path: Path) -> None:
    path = tmp_path / "h.journal"
    record_sample(path)  # ends with the invoke of ev-9 and no outcome
    History(path, client_id="writer").close()
    loaded = History.load(path)
    assert not loaded.torn_tail
    assert loaded[8].event_ids == ("ev-9",) and loaded[8].status is OpStatus.UNKNOWN
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(path.read_bytes())
    *_, last = unpacker
    assert last[:2] == ["u", 8]  # the resumed client wrote the outcome into the journal itself
