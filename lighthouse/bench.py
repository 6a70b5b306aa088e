"""``lighthouse bench``: what this machine does, lighthouse and stdlib sqlite3 on the same workload.

Every figure is measured in this run, for both systems, and printed with the ratio between them.
SQLite runs in WAL mode with ``synchronous=FULL`` (durable commits), one transaction per event for
single appends and one per batch for batches: the honest peer for a durable append.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from lighthouse.loop_probes import TimedSteps, idle_loop_lateness, loop_lateness, p99_and_max
from lighthouse.models import Event, EventFilter, EventType
from lighthouse.store import EventStore

__all__ = ["add_bench_arguments", "run_bench"]

_TYPES = [EventType.COMMAND_RECEIVED, EventType.COMMAND_APPROVED, EventType.AGENT_HEARTBEAT, EventType.FILE_MODIFIED]


def make_event(i: int) -> Event:
    """A realistic ~200-byte coordination event."""
    return Event(
        _TYPES[i % len(_TYPES)],
        aggregate_id=f"command:{i // 4}",
        source_agent=f"agent-{i % 16}",
        correlation_id=f"corr-{i // 4}",
        data={"tool": "Bash", "command": f"pytest tests/unit -k case_{i}", "cwd": "/work/project", "risk": "low"},
    )


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "p999_ms": float(np.percentile(arr, 99.9)),
        "max_ms": float(arr.max()),
    }


# ---------------------------------------------------------------- lighthouse


async def _lh_appends(path: Path, n: int, concurrency: int) -> dict[str, Any]:
    samples: list[int] = []
    stalls: list[int] = []
    steps: list[int] = []  # the appenders' steps: how long each held the loop at a time
    beyond_write: list[int] = []  # the same, less the store's write and sync inside the step
    events = [make_event(i) for i in range(n)]  # built before timing: client-side cost is not the store's
    async with EventStore(path) as store:
        counter = iter(events)

        async def worker() -> None:
            for event in counter:
                t0 = time.perf_counter_ns()
                await store.append(event)
                samples.append(time.perf_counter_ns() - t0)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        probe = loop.create_task(loop_lateness(stop, stalls))
        t0 = time.perf_counter()
        if concurrency == 1:  # a lone appender's write runs inside its step: how long it held the loop beyond it
            timed = [TimedSteps(worker(), steps, inner_clock=lambda: store.write_seconds, beyond_inner=beyond_write)]
        else:  # the writer task writes (on the I/O thread) while appenders' steps run: nothing to take away
            timed = [TimedSteps(worker(), steps) for _ in range(concurrency)]
        await asyncio.gather(*(loop.create_task(coro) for coro in timed))
        elapsed = time.perf_counter() - t0
        stop.set()
        await probe
    return {
        "events_per_s": n / elapsed,
        "elapsed_s": elapsed,
        **_percentiles(samples),
        **p99_and_max(stalls, "loop_stall"),
        **p99_and_max(steps, "loop_step"),
        **(p99_and_max(beyond_write, "loop_step_beyond_write") if beyond_write else {}),
    }


async def _lh_batches(path: Path, batches: int, size: int) -> dict[str, Any]:
    samples: list[int] = []
    all_batches = [[make_event(b * size + i) for i in range(size)] for b in range(batches)]
    async with EventStore(path) as store:
        t0 = time.perf_counter()
        for events in all_batches:
            s = time.perf_counter_ns()
            await store.append_batch(events)
            samples.append(time.perf_counter_ns() - s)
        elapsed = time.perf_counter() - t0
    return {"events_per_s": batches * size / elapsed, **_percentiles(samples)}


async def _lh_batches_built_in_loop(path: Path, batches: int, size: int) -> dict[str, Any]:
    """Batches as an application appends them: the ``Event`` objects are built inside the timed loop."""
    samples: list[int] = []
    async with EventStore(path) as store:
        t0 = time.perf_counter()
        for b in range(batches):
            s = time.perf_counter_ns()
            await store.append_batch([make_event(b * size + i) for i in range(size)])
            samples.append(time.perf_counter_ns() - s)
        elapsed = time.perf_counter() - t0
    return {"events_per_s": batches * size / elapsed, **_percentiles(samples)}


_HOT = "command:hot"


def _sparse_event(i: int) -> Event:
    """Every 100th event belongs to one aggregate: 1,000 of them spread over 100 frames of 1,000."""
    return make_event(i) if i % 100 else Event(_TYPES[0], aggregate_id=_HOT, source_agent="agent-0", data={"i": i})


async def _lh_sparse(path: Path, queries: int) -> dict[str, Any]:
    async with EventStore(path) as store:
        for b in range(100):
            await store.append_batch([_sparse_event(b * 1000 + i) for i in range(1000)])
        samples = []
        for _ in range(queries):
            s = time.perf_counter_ns()
            result = await store.query(EventFilter(aggregate_ids=[_HOT]), limit=1000)
            samples.append(time.perf_counter_ns() - s)
            assert len(result.events) == 1000
    return _percentiles(samples)


async def _lh_fill(path: Path, n: int) -> None:
    async with EventStore(path) as store:
        for start in range(0, n, 1000):
            await store.append_batch([make_event(i) for i in range(start, min(n, start + 1000))])


async def _lh_reads(path: Path, queries: int) -> dict[str, Any]:
    async with EventStore(path) as store:
        head = store.head_sequence
        t0 = time.perf_counter()
        count = 0
        async for _event in store.replay():
            count += 1
        replay_s = time.perf_counter() - t0
        samples = []
        rng = np.random.default_rng(7)
        for _ in range(queries):
            start = int(rng.integers(1, max(2, head - 1000)))
            s = time.perf_counter_ns()
            result = await store.query(EventFilter(from_sequence=start), limit=1000)
            samples.append(time.perf_counter_ns() - s)
            assert len(result.events) == 1000
        filtered = []
        # as many as the other queries: with a fifth of them, "p99" was their maximum, that is whichever query
        # a full garbage collection (13-15 ms here) happened to land in
        for _ in range(queries):
            agent = f"agent-{int(rng.integers(0, 16))}"
            s = time.perf_counter_ns()
            await store.query(EventFilter(event_types=[EventType.COMMAND_APPROVED], source_agents=[agent]), limit=1000)
            filtered.append(time.perf_counter_ns() - s)
    return {
        "replay_events_per_s": count / replay_s,
        "replayed": count,
        "query_1000": _percentiles(samples),
        "filtered_query": _percentiles(filtered),
    }


def _measure_open(path: Path) -> dict[str, Any]:
    """Run in a fresh interpreter so resident memory is the store's alone."""
    code = (
        "import asyncio, json, sys, time, gc, psutil\n"
        "from lighthouse.store import EventStore\n"
        "p = psutil.Process(); gc.collect(); before = p.memory_info().rss\n"
        "async def main():\n"
        "    t = time.perf_counter()\n"
        "    s = await EventStore.open(sys.argv[1])\n"
        "    dt = time.perf_counter() - t\n"
        "    gc.collect(); after = p.memory_info().rss\n"
        "    st = s.stats()\n"
        "    await s.close()\n"
        "    print(json.dumps({'open_s': dt, 'rss_delta': after - before, 'events': st.events, 'index_bytes': st.index_bytes}))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    result["rss_bytes_per_event"] = result["rss_delta"] / max(1, result["events"])
    result["index_bytes_per_event"] = result["index_bytes"] / max(1, result["events"])
    return result


# ---------------------------------------------------------------- sqlite peer

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE NOT NULL,"
    " event_type TEXT, aggregate_id TEXT, source_agent TEXT, recorded_at REAL, payload BLOB)"
)


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(_SCHEMA)
    conn.execute("CREATE INDEX IF NOT EXISTS by_type ON events(event_type, source_agent)")
    return conn


def _row(event: Event) -> tuple[Any, ...]:
    return (
        event.event_id,
        str(event[1]),
        event.aggregate_id,
        event.source_agent,
        time.time(),
        msgpack.packb(event.client_record(), use_bin_type=True),
    )


_INSERT = "INSERT INTO events(event_id, event_type, aggregate_id, source_agent, recorded_at, payload) VALUES (?,?,?,?,?,?)"


def _sqlite_appends(path: Path, n: int, concurrency: int) -> dict[str, Any]:
    samples: list[int] = []
    lock = threading.Lock()
    counter = iter([_row(make_event(i)) for i in range(n)])

    def worker() -> None:
        conn = _sqlite_connect(path)
        local = []
        while True:
            with lock:
                row = next(counter, None)
            if row is None:
                break
            t0 = time.perf_counter_ns()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_INSERT, row)
            conn.execute("COMMIT")
            local.append(time.perf_counter_ns() - t0)
        conn.close()
        with lock:
            samples.extend(local)

    _sqlite_connect(path).close()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"events_per_s": n / elapsed, **_percentiles(samples)}


def _sqlite_batches(path: Path, batches: int, size: int) -> dict[str, Any]:
    conn = _sqlite_connect(path)
    samples = []
    all_rows = [[_row(make_event(b * size + i)) for i in range(size)] for b in range(batches)]
    t0 = time.perf_counter()
    for rows in all_rows:
        s = time.perf_counter_ns()
        conn.execute("BEGIN")
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
        samples.append(time.perf_counter_ns() - s)
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"events_per_s": batches * size / elapsed, **_percentiles(samples)}


def _sqlite_batches_built_in_loop(path: Path, batches: int, size: int) -> dict[str, Any]:
    conn = _sqlite_connect(path)
    samples = []
    t0 = time.perf_counter()
    for b in range(batches):
        s = time.perf_counter_ns()
        rows = [_row(make_event(b * size + i)) for i in range(size)]
        conn.execute("BEGIN")
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
        samples.append(time.perf_counter_ns() - s)
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"events_per_s": batches * size / elapsed, **_percentiles(samples)}


def _sqlite_sparse(path: Path, queries: int) -> dict[str, Any]:
    conn = _sqlite_connect(path)
    conn.execute("CREATE INDEX IF NOT EXISTS by_aggregate ON events(aggregate_id)")  # its peer of the aggregate postings
    for b in range(100):
        conn.execute("BEGIN")
        conn.executemany(_INSERT, [_row(_sparse_event(b * 1000 + i)) for i in range(1000)])
        conn.execute("COMMIT")
    samples = []
    for _ in range(queries):
        s = time.perf_counter_ns()
        rows = conn.execute("SELECT payload FROM events WHERE aggregate_id=? ORDER BY seq LIMIT 1000", (_HOT,)).fetchall()
        [msgpack.unpackb(p, strict_map_key=False) for (p,) in rows]
        samples.append(time.perf_counter_ns() - s)
        assert len(rows) == 1000
    conn.close()
    return _percentiles(samples)


# ---------------------------------------------------------------- physical references


def _raw_fdatasync(path: Path, n: int = 2000) -> dict[str, Any]:
    """What the disk allows: a 200-byte write + fdatasync, one after another (no store around it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    record = bytes(200)
    samples = []
    try:
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter_ns()
            os.pwrite(fd, record, i * 200)
            os.fdatasync(fd)
            samples.append(time.perf_counter_ns() - s)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {"syncs_per_s": n / elapsed, **_percentiles(samples)}


def _raw_decode(n: int) -> dict[str, Any]:
    """What msgpack allows: stream-decoding the same events' packed records (no store, no checksums)."""
    packer = msgpack.Packer(use_bin_type=True)
    blob = b"".join(packer.pack(make_event(i).client_record()) for i in range(n))
    best = 0.0
    for _ in range(3):
        unpacker = msgpack.Unpacker(strict_map_key=False, max_buffer_size=len(blob) + 1)
        unpacker.feed(blob)
        t0 = time.perf_counter()
        count = sum(1 for _record in unpacker)
        best = max(best, count / (time.perf_counter() - t0))
    return {"events_per_s": best}


def _sqlite_reads(path: Path, queries: int) -> dict[str, Any]:
    conn = _sqlite_connect(path)
    t0 = time.perf_counter()
    count = 0
    for (payload,) in conn.execute("SELECT payload FROM events ORDER BY seq"):
        msgpack.unpackb(payload, strict_map_key=False)
        count += 1
    replay_s = time.perf_counter() - t0
    (head,) = conn.execute("SELECT max(seq) FROM events").fetchone()
    rng = np.random.default_rng(7)
    samples = []
    for _ in range(queries):
        start = int(rng.integers(1, max(2, head - 1000)))
        s = time.perf_counter_ns()
        rows = conn.execute("SELECT seq, payload FROM events WHERE seq >= ? ORDER BY seq LIMIT 1000", (start,)).fetchall()
        [msgpack.unpackb(p, strict_map_key=False) for _seq, p in rows]
        samples.append(time.perf_counter_ns() - s)
    filtered = []
    for _ in range(queries):  # as many as lighthouse's (see _lh_reads)
        agent = f"agent-{int(rng.integers(0, 16))}"
        s = time.perf_counter_ns()
        rows = conn.execute(
            "SELECT payload FROM events WHERE event_type=? AND source_agent=? ORDER BY seq LIMIT 1000",
            ("command_approved", agent),
        ).fetchall()
        [msgpack.unpackb(p, strict_map_key=False) for (p,) in rows]
        filtered.append(time.perf_counter_ns() - s)
    conn.close()
    return {
        "replay_events_per_s": count / replay_s,
        "replayed": count,
        "query_1000": _percentiles(samples),
        "filtered_query": _percentiles(filtered),
    }


# ---------------------------------------------------------------- driver


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=100_000, help="events stored for read, replay and open figures")
    parser.add_argument("--single", type=int, default=10_000, help="events appended by the single appender")
    parser.add_argument("--concurrent", type=int, default=50_000, help="events appended by 64 concurrent appenders")
    parser.add_argument("--appenders", type=int, default=64)
    parser.add_argument("--batches", type=int, default=100, help="batches of --batch-size events")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    parser.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir on the same disk)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the figures to this file")


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = _median_of([r[key] for r in runs])
        elif isinstance(value, (int, float)):
            out[key] = statistics.median(r[key] for r in runs)
        else:
            out[key] = value
    return out


def _one_run(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    def fresh(name: str) -> Path:
        path = base / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    results: dict[str, Any] = {"lighthouse": {}, "sqlite": {}}
    lh, sq = results["lighthouse"], results["sqlite"]
    lh["append_1"] = asyncio.run(_lh_appends(fresh("lh1"), args.single, 1))
    sq["append_1"] = _sqlite_appends(fresh("sq1.db"), args.single // 2, 1)
    lh["append_64"] = asyncio.run(_lh_appends(fresh("lh64"), args.concurrent, args.appenders))
    sq["append_64"] = _sqlite_appends(fresh("sq64.db"), max(1000, args.concurrent // 5), args.appenders)
    lh["batch_1000"] = asyncio.run(_lh_batches(fresh("lhb"), args.batches, args.batch_size))
    sq["batch_1000"] = _sqlite_batches(fresh("sqb.db"), args.batches, args.batch_size)
    lh["batch_built"] = asyncio.run(_lh_batches_built_in_loop(fresh("lhbb"), args.batches, args.batch_size))
    sq["batch_built"] = _sqlite_batches_built_in_loop(fresh("sqbb.db"), args.batches, args.batch_size)
    lh["sparse"] = asyncio.run(_lh_sparse(fresh("lhs"), args.queries))
    sq["sparse"] = _sqlite_sparse(fresh("sqs.db"), args.queries)
    results["physical"] = {
        "fdatasync": _raw_fdatasync(base / "raw-sync"),
        "idle_loop": asyncio.run(idle_loop_lateness(lh["append_1"]["elapsed_s"])),
    }
    lh_store = fresh("lh_read")
    asyncio.run(_lh_fill(lh_store, args.events))
    sq_store = fresh("sq_read.db")
    _sqlite_batches(sq_store, args.events // 1000, 1000)
    lh["open"] = _measure_open(lh_store)
    lh.update(asyncio.run(_lh_reads(lh_store, args.queries)))
    # right after the replay it is compared with: this machine's speed drifts by 2x within minutes
    results["physical"]["decode"] = _raw_decode(args.events)
    sq.update(_sqlite_reads(sq_store, args.queries))
    for name in ("lh1", "sq1.db", "lh64", "sq64.db", "lhb", "sqb.db", "lhbb", "sqbb.db", "lhs", "sqs.db", "lh_read",
                 "sq_read.db"):
        path = base / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return results


_ROWS: list[tuple[str, Callable[[dict[str, Any]], float | None], str, str, float | None]] = [
    # label, getter, unit, better, target (ours, from issue 2)
    ("durable append x1 events/s", lambda r: r["append_1"]["events_per_s"], "ev/s", "higher", None),
    ("durable append x1 p50", lambda r: r["append_1"]["p50_ms"], "ms", "lower", 2.0),
    ("durable append x1 p99", lambda r: r["append_1"]["p99_ms"], "ms", "lower", 10.0),
    ("durable append x1 p99.9", lambda r: r["append_1"]["p999_ms"], "ms", "lower", 100.0),
    ("x1 event-loop stall p99", lambda r: r["append_1"].get("loop_stall_p99_ms"), "ms", "lower", None),
    ("x1 event-loop stall max", lambda r: r["append_1"].get("loop_stall_max_ms"), "ms", "lower", None),
    ("x1 loop held per step p99", lambda r: r["append_1"].get("loop_step_p99_ms"), "ms", "lower", None),
    ("x1 loop held per step max", lambda r: r["append_1"].get("loop_step_max_ms"), "ms", "lower", None),
    ("x1 loop held beyond write p99", lambda r: r["append_1"].get("loop_step_beyond_write_p99_ms"), "ms", "lower", None),
    ("x1 loop held beyond write max", lambda r: r["append_1"].get("loop_step_beyond_write_max_ms"), "ms", "lower", None),
    ("durable append x64 events/s", lambda r: r["append_64"]["events_per_s"], "ev/s", "higher", 50_000),
    ("durable append x64 p50", lambda r: r["append_64"]["p50_ms"], "ms", "lower", None),
    ("durable append x64 p99", lambda r: r["append_64"]["p99_ms"], "ms", "lower", 5.0),
    ("durable append x64 p99.9", lambda r: r["append_64"]["p999_ms"], "ms", "lower", None),
    ("batch of 1000 events/s", lambda r: r["batch_1000"]["events_per_s"], "ev/s", "higher", 300_000),
    ("batch of 1000 p99", lambda r: r["batch_1000"]["p99_ms"], "ms", "lower", 50.0),
    ("batch 1000 built in loop ev/s", lambda r: r["batch_built"]["events_per_s"], "ev/s", "higher", None),
    ("sparse agg query p99", lambda r: r["sparse"]["p99_ms"], "ms", "lower", None),
    ("replay events/s", lambda r: r["replay_events_per_s"], "ev/s", "higher", 500_000),
    ("query 1000 of N p99", lambda r: r["query_1000"]["p99_ms"], "ms", "lower", 5.0),
    ("filtered query p99", lambda r: r["filtered_query"]["p99_ms"], "ms", "lower", 500.0),
    ("resident bytes/event", lambda r: r.get("open", {}).get("rss_bytes_per_event"), "B", "lower", 150.0),
    ("index bytes/event", lambda r: r.get("open", {}).get("index_bytes_per_event"), "B", "lower", 100.0),
    ("open N events", lambda r: r.get("open", {}).get("open_s"), "s", "lower", 0.5),
]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def print_table(results: dict[str, Any], *, events: int) -> list[dict[str, Any]]:
    rows = []
    print(f"\nlighthouse bench ({events:,} events stored; sqlite3 WAL synchronous=FULL as peer)")
    print(f"{'metric':32} {'lighthouse':>12} {'sqlite':>12} {'ratio':>8} {'target':>10} {'met':>5}")
    for label, get, unit, better, target in _ROWS:
        ours = get(results["lighthouse"])
        try:
            peer = get(results["sqlite"])
        except KeyError:
            peer = None
        ratio = None
        if ours and peer:
            ratio = ours / peer if better == "higher" else peer / ours
        met = None
        if target is not None and ours is not None:
            met = ours >= target if better == "higher" else ours <= target
        print(
            f"{label + ' (' + unit + ')':32} {_fmt(ours):>12} {_fmt(peer):>12} "
            f"{(f'{ratio:.2f}x' if ratio else '-'):>8} {_fmt(target):>10} {('yes' if met else 'NO') if met is not None else '-':>5}"
        )
        rows.append({"metric": label, "unit": unit, "lighthouse": ours, "sqlite": peer, "advantage": ratio,
                     "target": target, "met": met})
    print("ratio: how many times better lighthouse is than sqlite on that line (>1 = lighthouse better)")
    physical = results.get("physical")
    if physical:
        sync, decode = physical["fdatasync"], physical["decode"]
        replay = results["lighthouse"]["replay_events_per_s"]
        x1 = results["lighthouse"]["append_1"]
        print(
            f"physical references (same run): raw write+fdatasync {_fmt(sync['syncs_per_s'])}/s "
            f"(p50 {sync['p50_ms']:.3g} ms, p99 {sync['p99_ms']:.3g} ms, max {sync['max_ms']:.3g} ms); "
            f"raw msgpack stream decode {_fmt(decode['events_per_s'])} ev/s; "
            f"replay = {replay / decode['events_per_s']:.0%} of raw decode"
        )
        if "loop_step_beyond_write_p99_ms" in x1:  # absent from figures written before steps were timed
            print(
                f"x1 appender held the loop per step (nothing else runs during a step): p99 {x1['loop_step_p99_ms']:.3g} ms,"
                f" max {x1['loop_step_max_ms']:.3g} ms; beyond the step's own write+sync: p99 "
                f"{x1['loop_step_beyond_write_p99_ms']:.3g} ms, max {x1['loop_step_beyond_write_max_ms']:.3g} ms"
            )
        idle = physical.get("idle_loop")  # absent from figures written before it was measured
        if idle:
            print(
                f"lateness of a 1 ms tick (what another task waits, the work queued ahead of it included): x1 p99 "
                f"{x1['loop_stall_p99_ms']:.3g} ms, max {x1['loop_stall_max_ms']:.3g} ms; an idle loop as long (this "
                f"machine's scheduling noise): p99 {idle['loop_stall_p99_ms']:.3g} ms, max {idle['loop_stall_max_ms']:.3g} ms"
            )
    return rows


def run_bench(args: argparse.Namespace) -> int:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lighthouse-bench-", dir=os.getcwd()))
    base.mkdir(parents=True, exist_ok=True)
    try:
        runs = [_one_run(base, args) for _ in range(args.runs)]
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    results = _median_of(runs)
    rows = print_table(results, events=args.events)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"results": results, "table": rows, "runs": args.runs}, indent=2))
        print(f"figures written to {args.json_path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lighthouse.bench")
    add_bench_arguments(parser)
    return run_bench(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
