"""The event loop's CPU per appended event in a fresh store, and the duplicate check it contains.

Batches of 100 ``lighthouse bench`` events are appended one after another to a store in a temp dir (no
checkpoint within the run at the default million), timing the loop thread's CPU (``time.thread_time``:
what the store costs, whatever else the machine runs). Before a store's first checkpoint its full live id
tables are frozen, so the duplicate check of every batch probes several of them; printed too: that check
alone, per batch of 100 absent ids, with the tables the run left frozen.

    PYTHONPATH=. .venv/bin/python benchmarks/append_cpu.py --events 900000
    PYTHONPATH=. .venv/bin/python benchmarks/append_cpu.py --events 300000 --bridge --from-wire  # as a server runs it

``--bridge`` follows the store with a ValidationBridge, as ``lighthouse serve`` does, so its fold of every
event is in the loop's CPU.

Compare trees by running each in turn, several times: the machine's speed moves by tens of percent.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time

from lighthouse import EventStore
from lighthouse.bench import make_event
from lighthouse.bridge import ValidationBridge

BATCH = 100


async def run(events: int, with_bridge: bool, from_wire: bool) -> None:
    directory = tempfile.mkdtemp(prefix="append-cpu-")
    try:
        async with EventStore(directory) as store:
            bridge = ValidationBridge(store) if with_bridge else None
            if bridge is not None:
                await bridge.start()
            batches = [[make_event(i * BATCH + j) for j in range(BATCH)] for i in range(events // BATCH)]
            cpu, wall = time.thread_time(), time.perf_counter()
            for batch in batches:
                await store.append_batch(batch, from_wire=from_wire)
            if bridge is not None:
                await bridge.wait_applied(store.head_sequence)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            written = len(batches) * BATCH
            print(f"{written:,} events in batches of {BATCH}{' followed by the bridge' if bridge else ''}"
                  f"{' from the wire (no read-back)' if from_wire else ''}: loop "
                  f"thread CPU {cpu / written * 1e6:.2f} us/event, wall {wall / written * 1e6:.2f} us/event")
            if bridge is not None:
                await bridge.stop(snapshot=False)
            ids = store._index._ids  # the store's id lookup, as the run left it
            frozen = [len(table) for table in ids._frozen]
            rng = random.Random(1)
            probes = [[rng.getrandbits(62) | 1 for _ in range(BATCH)] for _ in range(500)]
            started = time.perf_counter()
            for keys in probes:
                ids.holds_any(keys)
            per_batch = (time.perf_counter() - started) / len(probes)
            sealed = [getattr(table, "sealed", None) for table in ids._frozen]  # None: a tree from before sealing
            print(f"duplicate check of {BATCH} absent ids: {per_batch * 1e6:.0f} us a batch, frozen tables {frozen} "
                  f"(sealed: {sealed}), live {len(ids._live):,} of {ids._live.capacity:,} slots")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=900_000)
    parser.add_argument("--bridge", action="store_true", help="follow the store with a ValidationBridge")
    parser.add_argument("--from-wire", action="store_true",
                        help="append as the server does a request body's events (from_wire: no read-back)")
    args = parser.parse_args()
    asyncio.run(run(args.events, args.bridge, args.from_wire))


if __name__ == "__main__":
    main()
