"""What a running store's periodic work does to durable appends: latency around each index checkpoint.

Writers append durable batches at a planned rate (open loop: latency is measured from each batch's
intended start, so a stall counts for every batch it delays) to a store that writes an index
checkpoint every ``--checkpoint-every`` events. Printed: the pooled percentiles of every batch, the
checkpoints' phases as the store reports them, and, for each second whose p99 passed
``--slow-ms``, its percentiles, so the seconds of a checkpoint (or of anything else periodic) can be
told from the rest.

    PYTHONPATH=. .venv/bin/python benchmarks/checkpoint_stall.py --events 2400000 --rate 20000

What a checkpoint costs grows with the index it writes: ``--prefill`` first fills the store with that
many events (not durable, checkpointed on close, ~100,000 events/s here), so the run measures the
checkpoints of a big store (ADR-004's hour at 10,000 events/s stores 36M events):

    PYTHONPATH=. .venv/bin/python benchmarks/checkpoint_stall.py --prefill 25000000 --events 3300000 --rate 10000

The figures are for one machine in one phase: compare trees in the same session, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from lighthouse import EventStore
from lighthouse.bench import make_event
from lighthouse.bench_scale import fill_store
from testkit.percentiles import LatencyRecorder, format_ms

BATCH = 100


async def run(args: argparse.Namespace, directory: Path) -> None:
    pooled = LatencyRecorder()
    per_second: dict[int, LatencyRecorder] = defaultdict(LatencyRecorder)
    batches_per_writer = args.events // args.writers // BATCH
    interval = args.writers * BATCH / args.rate  # each writer's planned time between its batches
    async with EventStore(directory, checkpoint_every=args.checkpoint_every) as store:
        start = time.perf_counter()

        async def writer(number: int) -> None:
            first = number * batches_per_writer * BATCH
            for k in range(batches_per_writer):
                intended = start + (k + number / args.writers) * interval
                delay = intended - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                batch = [make_event(first + k * BATCH + i) for i in range(BATCH)]
                await store.append_batch(batch)
                latency_ns = int((time.perf_counter() - intended) * 1e9)
                pooled.record(latency_ns)
                per_second[int(intended - start)].record(latency_ns)

        await asyncio.gather(*(writer(n) for n in range(args.writers)))
        elapsed = time.perf_counter() - start
        checkpoint = store.health().details["checkpoint"]
    written = batches_per_writer * args.writers * BATCH
    print(f"{written:,} events in {elapsed:.1f} s = {written / elapsed:,.0f} ev/s (planned {args.rate:,.0f})")
    print(f"pooled, from intended start: {pooled.summary()}")
    print(f"checkpoints written: {checkpoint.get('written', 0)}, last took {checkpoint.get('last_seconds', 0):.2f} s")
    slow = args.slow_ms * 1e6
    for second in sorted(per_second):
        recorder = per_second[second]
        if recorder.percentile(99) > slow:
            print(f"  second {second:4d}: p50 {format_ms(recorder.percentile(50))} ms, "
                  f"p99 {format_ms(recorder.percentile(99))} ms, max {format_ms(recorder.max_ns)} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_400_000)
    parser.add_argument("--rate", type=float, default=20_000, help="planned events/s")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=1_000_000)
    parser.add_argument("--slow-ms", type=float, default=30.0, help="print the seconds whose p99 passed this")
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes (default: a temp dir)")
    parser.add_argument("--prefill", type=int, default=0, help="events stored before the measured run")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="checkpoint-stall-", dir=args.dir))
    try:
        if args.prefill:
            rate = asyncio.run(fill_store(directory, 0, args.prefill))
            print(f"prefilled {args.prefill:,} events at {rate:,.0f} ev/s")
        asyncio.run(run(args, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
