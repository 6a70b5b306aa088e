"""``lighthouse bench-scale``: how open time, memory, replay and queries grow with the log.

The store is filled to each size in turn (1M, then 10M events by default, in batches of 1,000 of
the ``lighthouse bench`` events), and at each size a fresh interpreter opens it twice: from the
index checkpoint written on close, and with the checkpoint moved aside (a full scan). Each open
reports its time and the resident memory it added per event; the checkpointed one then measures a
replay, pages of 1,000, a filtered query and gets by id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lighthouse.bench import make_event
from lighthouse.checkpoint import CHECKPOINT_NAME
from lighthouse.models import Event
from lighthouse.store import EventStore

__all__ = ["add_scale_arguments", "fill_store", "run_scale"]

_new = tuple.__new__

_MEASURE = r"""
import asyncio, gc, json, sys, time
import numpy as np, psutil
from lighthouse.models import EventFilter, EventType
from lighthouse.store import EventStore

def pcts(samples):
    arr = np.asarray(samples, dtype=float) / 1e6
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}

async def main(path, measure_reads, replay_events, queries):
    proc = psutil.Process(); gc.collect(); before = proc.memory_info()
    t = time.perf_counter(); cpu = time.process_time()
    store = await EventStore.open(path, checkpoint_every=0)
    out = {"open_s": time.perf_counter() - t, "open_cpu_s": time.process_time() - cpu}
    gc.collect()
    after = proc.memory_info()
    out["rss_open_bytes"] = after.rss - before.rss
    out["rss_file_open_bytes"] = after.shared - before.shared  # file-backed (a mapped checkpoint)
    events = store.stats().events
    out.update(events=events, index_bytes=store.stats().index_bytes, checkpoint=store.health().details["checkpoint"])
    if measure_reads:
        head = store.head_sequence
        start = max(1, head // 2 - replay_events // 2)
        t = time.perf_counter(); n = 0
        async for _ in store.replay(start, to_sequence=start + replay_events - 1):
            n += 1
        out["replay_events_per_s"] = n / (time.perf_counter() - t); out["replayed"] = n
        rng = np.random.default_rng(7)
        page, flt, gets = [], [], []
        for _ in range(queries):
            s = time.perf_counter_ns()
            r = await store.query(EventFilter(from_sequence=int(rng.integers(1, head - 1000))), limit=1000)
            page.append(time.perf_counter_ns() - s); assert len(r.events) == 1000
        for _ in range(max(10, queries // 5)):
            agent = f"agent-{int(rng.integers(0, 16))}"
            s = time.perf_counter_ns()
            await store.query(EventFilter(event_types=[EventType.COMMAND_APPROVED], source_agents=[agent],
                                          from_sequence=int(rng.integers(1, max(2, head - 100_000)))), limit=1000)
            flt.append(time.perf_counter_ns() - s)
        for _ in range(queries):
            i = int(rng.integers(0, events))
            s = time.perf_counter_ns()
            assert (await store.get(f"e{i}")).event_id == f"e{i}"
            gets.append(time.perf_counter_ns() - s)
        out.update(query_1000=pcts(page), filtered_query=pcts(flt), get_by_id=pcts(gets))
        gc.collect()
        out["rss_after_reads_bytes"] = proc.memory_info().rss - before.rss
    await store.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])))
"""


async def fill_store(path: Path, start: int, stop: int) -> float:
    """Append events ``start..stop-1`` (ids ``e{n}``) in batches of 1,000; returns events/s."""
    templates = [make_event(i) for i in range(1000)]
    t0 = time.perf_counter()
    async with EventStore(path, durability="none", checkpoint_every=0) as store:
        for base in range(start, stop, 1000):
            batch = [
                _new(Event, (f"e{base + i}", *templates[(base + i) % 1000][1:]))
                for i in range(min(1000, stop - base))
            ]
            await store.append_batch(batch)
    return (stop - start) / (time.perf_counter() - t0)


def _measure(path: Path, *, reads: bool, replay_events: int, queries: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), "1" if reads else "0", str(replay_events), str(queries)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode:
        raise RuntimeError(f"measuring {path} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated log sizes, ascending")
    parser.add_argument("--replay-events", type=int, default=1_000_000, help="events replayed at each size")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dir", default=None, help="where to put the store (default: a temp dir here)")
    parser.add_argument("--json", dest="json_path", default=None)


def run_scale(args: argparse.Namespace) -> int:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lighthouse-scale-", dir=os.getcwd()))
    store = base / "store"
    rows = []
    try:
        filled = 0
        for size in sizes:
            fill_rate = asyncio.run(fill_store(store, filled, size))
            filled = size
            with_ckpt = _measure(store, reads=True, replay_events=min(args.replay_events, size), queries=args.queries)
            aside = base / "aside.ckpt"
            os.replace(store / CHECKPOINT_NAME, aside)
            without = _measure(store, reads=False, replay_events=0, queries=0)
            os.replace(aside, store / CHECKPOINT_NAME)  # the full scan's close wrote an equal one; keep the first
            disk = sum(p.stat().st_size for p in store.iterdir() if p.suffix == ".seg")
            rows.append({"events": size, "fill_events_per_s": fill_rate, "segment_bytes": disk,
                         "with_checkpoint": with_ckpt, "full_scan": without})
            _print_row(rows[-1])
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
    return 0


def _print_row(row: dict[str, Any]) -> None:
    w, f = row["with_checkpoint"], row["full_scan"]
    n = row["events"]
    print(
        f"\n{n:,} events ({row['segment_bytes'] / n:.0f} B/event on disk; filled at {row['fill_events_per_s']:,.0f} ev/s)\n"
        f"  open with checkpoint      {w['open_s']:8.3f} s (cpu {w['open_cpu_s']:.3f} s)   resident "
        f"{w['rss_open_bytes'] / n:6.1f} B/event, {w['rss_file_open_bytes'] / n:.1f} of it file-backed "
        f"(after reads {w['rss_after_reads_bytes'] / n:6.1f} B/event; index {w['index_bytes'] / n:.1f} B/event)\n"
        f"  open by full scan         {f['open_s']:8.3f} s (cpu {f['open_cpu_s']:.3f} s)   resident "
        f"{f['rss_open_bytes'] / n:6.1f} B/event\n"
        f"  replay                    {w['replay_events_per_s']:,.0f} ev/s ({w['replayed']:,} events)\n"
        f"  query 1000 p99            {w['query_1000']['p99_ms']:.2f} ms (p50 {w['query_1000']['p50_ms']:.2f})\n"
        f"  filtered query p99        {w['filtered_query']['p99_ms']:.2f} ms (p50 {w['filtered_query']['p50_ms']:.2f})\n"
        f"  get by id p99             {w['get_by_id']['p99_ms']:.3f} ms (p50 {w['get_by_id']['p50_ms']:.3f})",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lighthouse.bench_scale")
    add_scale_arguments(parser)
    return run_scale(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
