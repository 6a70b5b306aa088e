"""Memory of one peer measured in a fresh interpreter: ``python -m suites.perf.memory_probe fill|soak ...``.

Resident memory is only meaningful in a process that has done nothing else: in the test runner, arenas freed
by earlier tests get reused and a store's growth disappears into them. So the perf suite runs this module as a
child and reads one JSON document from its stdout.

``fill``  appends events in batches of 100 and reports RSS (and, with ``--trace``, tracemalloc's traced bytes)
          right after open, half-way and at the end, each after a full garbage collection.
``soak``  runs a steady mixed workload (appends, gets, range and filter queries, subscribe/unsubscribe) for
          ``--seconds`` after a warm-up, under tracemalloc, sampling every 50 ms: RSS, traced bytes, the event
          count and the store's own index size, so the caller can tell legitimate growth from a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

from .peers import Peer, make_peer
from .workload import FILTER_WINDOW, coordination_event, coordination_events, filter_over_window

__all__ = ["main"]

_BATCH = 100
_SOAK_SAMPLE_S = 0.05


def _memory(process: psutil.Process) -> dict[str, int | None]:
    gc.collect()
    return {"rss": process.memory_info().rss,
            "traced": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None}


async def _fill(peer: Peer, events: int, trace: bool) -> dict[str, Any]:
    process = psutil.Process()
    await peer.open()
    try:
        if trace:
            tracemalloc.start()
        marks = {"open": _memory(process)}
        started = time.perf_counter()
        for start in range(0, events, _BATCH):
            await peer.append_batch(coordination_events(start, min(_BATCH, events - start)))
            if start + _BATCH == events // 2:
                marks["half"] = _memory(process)
        elapsed = time.perf_counter() - started
        marks["full"] = _memory(process)
        stats = peer.stats()
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        await peer.close()
    return {"peer": peer.name, "events": events, "marks": marks, "stats": stats, "fill_seconds": elapsed}


async def _soak(peer: Peer, seconds: float, warm_up_s: float, append_rate: float) -> dict[str, Any]:
    """Cycles of work paced to ``append_rate`` events/s; each cycle also reads and subscribes."""
    process = psutil.Process()
    await peer.open()
    samples: list[tuple[float, int, int, int, float]] = []
    try:
        head = int(peer.stats()["events"])
        next_index = head
        cycle_s = 10 / append_rate  # ten appended events per cycle
        rng = random.Random(head)

        async def cycle() -> None:
            nonlocal next_index
            await peer.append_batch(coordination_events(next_index, 10))
            next_index += 10
            for _ in range(3):
                await peer.get(coordination_event(rng.randrange(next_index))["event_id"])
            first = 1 + 16 * rng.randrange(max(1, (head - FILTER_WINDOW) // 16))
            await peer.matching(filter_over_window(first))
            low, high = await peer.recorded_at(first), await peer.recorded_at(first + 1_000)
            await peer.time_range(low, high, 1_000)
            follower = peer.follow()
            pending = asyncio.ensure_future(follower.__anext__())
            await asyncio.sleep(0)
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            await follower.aclose()

        tracemalloc.start()
        loop = asyncio.get_running_loop()
        began = loop.time()
        warm_until = began + warm_up_s
        stop_at = warm_until + seconds
        next_sample = warm_until
        cycles = 0
        while True:
            now = loop.time()
            if now >= stop_at:
                break
            if now >= next_sample:
                stats = peer.stats()
                samples.append((now - warm_until, process.memory_info().rss, tracemalloc.get_traced_memory()[0],
                                int(stats["events"]), float(stats.get("index_bytes", 0.0))))
                next_sample += _SOAK_SAMPLE_S
            await cycle()
            cycles += 1
            intended = began + cycles * cycle_s
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        achieved = (next_index - head) / (loop.time() - began)
    finally:
        tracemalloc.stop()
        await peer.close()
    return {"peer": peer.name, "samples": samples, "cycles": cycles, "achieved_append_rate": achieved,
            "seconds": seconds, "warm_up_s": warm_up_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.perf.memory_probe", description=__doc__)
    parser.add_argument("mode", choices=("fill", "soak"))
    parser.add_argument("peer")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--trace", action="store_true", help="also measure tracemalloc's traced bytes")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warm-up", type=float, default=3.0)
    parser.add_argument("--append-rate", type=float, default=200.0)
    args = parser.parse_args(argv)
    peer = make_peer(args.peer, args.data_dir)
    if args.mode == "fill":
        result = asyncio.run(_fill(peer, args.events, args.trace))
    else:
        result = asyncio.run(_soak(peer, args.seconds, args.warm_up, args.append_rate))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
