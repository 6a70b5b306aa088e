"""What recovery rebuilds, in comparable form: two opens of the same log must give equal states.

Used to judge index checkpoints (recovery from a checkpoint plus the frames after it must equal a
full scan), by the unit property test and by the SIGKILL campaign (whose child writer is here too,
importable by its absolute name in a fresh interpreter).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from lighthouse import Event, EventStore, EventType

__all__ = ["CountingStore", "append_until_killed", "recovered_state"]


async def recovered_state(store: EventStore) -> dict[str, Any]:
    """Everything recovery rebuilds, in comparable form: two opens of the same log must give equal states."""
    events = [event async for event in store.replay()]
    columns, _ids = store._index.export()
    health = store.health()
    return {
        "events": events,
        "columns": {name: [value for part in parts for value in part.tolist()] for name, parts in columns.items()},
        "ids": {e.event_id: sorted(store._index.sequences_for_id(e.event_id)) for e in events},
        "versions": {a: store._versions.get(a) for a in sorted({e.aggregate_id for e in events})},
        "head": store.head_sequence,
        "next_sequence": store._next_seq,
        "voided": health.voided_sequences,
        "lost": health.lost_sequences,
        "damage": [d for d in health.damage if d["kind"] != "torn_tail"],
        "quarantined_bytes": store.stats().quarantined_bytes,
        "segments": [(s.path.name, s.size) for s in store._segments],
        "last_recorded_at": store._last_recorded_at,
        "last_frame": store._last_frame,
    }


class CountingStore(EventStore):
    """The real store, counting the frames recovery decoded (what a checkpoint saves it from reading)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.indexed_frames = 0

    def _index_frames(self, segment: Any, fd: int, frames: list[tuple[int, Any]]) -> None:
        self.indexed_frames += len(frames)
        super()._index_frames(segment, fd, frames)


def append_until_killed(path: str, checkpoint_every: int, segment_bytes: int, seed: int) -> None:
    """Child: append forever (random batch sizes and bursts of concurrent single appends)."""

    async def main() -> None:
        rng = random.Random(seed)
        store = await EventStore.open(path, checkpoint_every=checkpoint_every, segment_bytes=segment_bytes)
        n = store.head_sequence

        def event() -> Event:
            nonlocal n
            n += 1
            return Event(EventType.CUSTOM, aggregate_id=f"agg:{rng.randrange(40)}", source_agent=f"agent-{n % 5}",
                         data={"n": n, "pad": "x" * rng.randrange(200)})

        while True:
            if rng.random() < 0.5:
                await store.append_batch([event() for _ in range(rng.randint(1, 60))])
            else:
                await asyncio.gather(*(store.append(event()) for _ in range(rng.randint(1, 8))))

    asyncio.run(main())
