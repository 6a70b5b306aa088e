"""The store's resident memory beside its own count of index bytes, across checkpoints, in-process.

Soak-like traffic (100 agents' ``testkit.data`` sessions, pools of 200 events replayed with fresh ids, as
the HTTP soak sends them) is appended in batches of 100 by 8 writers as fast as the store takes it, with a
checkpoint every million events. Every 2 s: RSS (anonymous and file-backed, from ``smaps_rollup``) and
``index_bytes``; the difference is what a soak's leak verdict judges. A store that keeps freed memory
resident shows it as steps from one checkpoint to the next.

    PYTHONPATH=. .venv/bin/python benchmarks/memory_steps.py --events 4000000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from lighthouse.models import Event
from lighthouse.store import EventStore
from testkit.data import AgentSessionGenerator

_FIELDS = ("event_type", "aggregate_id", "aggregate_type", "data", "metadata", "correlation_id", "causation_id",
           "source_agent", "timestamp", "schema_version")
BATCH = 100


def _resident() -> tuple[int, int]:
    """(RSS, anonymous) bytes of this process."""
    values = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, amount, *_ = line.split()
        values[name.rstrip(":")] = int(amount) * 1024
    return values["Rss"], values["Anonymous"]


async def run(total: int, writers: int) -> None:
    pools = []
    for agent in range(100):
        events = itertools.islice(AgentSessionGenerator(7 * 1_000_003 + agent, agents=3).events(), 200)
        pools.append([{k: e[k] for k in _FIELDS if e.get(k) is not None} for e in events])
    directory = tempfile.mkdtemp(prefix="memory-steps-")
    done = 0
    gaps: list[float] = []
    try:
        async with EventStore(directory) as store:
            async def writer(number: int) -> None:
                nonlocal done
                for i in itertools.count():
                    if done >= total:
                        return
                    pool, start = pools[(number * 7 + i) % len(pools)], (i * BATCH) % 200
                    await store.append_batch([Event(**f, event_id=str(uuid.uuid4())) for f in pool[start:start + BATCH]])
                    done += BATCH

            async def sampler() -> None:
                started = time.monotonic()
                while done < total:
                    await asyncio.sleep(2)
                    rss, anonymous = _resident()
                    index = store.stats().index_bytes
                    gaps.append((rss - index) / 1e6)
                    print(f"{time.monotonic() - started:6.1f} s {done:>10,} events  RSS {rss / 1e6:7.1f} MB "
                          f"(anonymous {anonymous / 1e6:7.1f})  index {index / 1e6:7.1f} MB  "
                          f"RSS - index {(rss - index) / 1e6:6.1f} MB", flush=True)

            await asyncio.gather(sampler(), *(writer(n) for n in range(writers)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if gaps:
        later = gaps[len(gaps) // 4:]
        print(f"RSS - index after the first quarter: {min(later):.1f}-{max(later):.1f} MB (median "
              f"{sorted(later)[len(later) // 2]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.writers))


if __name__ == "__main__":
    main()
