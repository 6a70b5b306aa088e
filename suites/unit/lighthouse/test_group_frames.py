"""How one group commit lays out its appends: each batch its own frame, the single-event appends between
batches together in one frame (one header, one checksum, one index insert for many appenders)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lighthouse import ConcurrencyConflict, EventStore
from lighthouse.framing import FRAME_EVENTS

pytestmark = pytest.mark.ci


class _QuickSyncs(EventStore):
    """Every write counts as quick, so which append takes the lone-append shortcut does not depend on how busy
    the machine is (a write over the default 2 ms budget sends the next one through the queue instead)."""

    inline_write_budget_s = 30.0


def test_overlapping_single_appends_share_a_frame_and_batches_keep_their_own(
    store_dir: Path, run, make_event, disk, read_all
) -> None:
    async def scenario() -> None:
        async with _QuickSyncs(store_dir) as store:
            await store.append(make_event(100, aggregate_id="warmup:1"))  # the first write after open
            calls = [store.append(make_event(n)) for n in range(5)]
            calls.append(store.append_batch([make_event(n) for n in range(5, 8)]))
            calls.append(store.append(make_event(8, aggregate_id="cart:9"), expected_version=7))  # stale
            calls += [store.append(make_event(n)) for n in range(9, 13)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert isinstance(results[6], ConcurrencyConflict)  # refused alone; the rest of its group lands
            singles = [r.sequence for r in results[:5]] + [r.sequence for r in results[7:]]
            assert singles == [2, 3, 4, 5, 6, 10, 11, 12, 13]
            assert [e.sequence for e in results[5]] == [7, 8, 9]
            by_aggregate = {}
            for stored in [*results[:5], *results[5], *results[7:]]:
                by_aggregate.setdefault(stored.aggregate_id, []).append(stored.aggregate_version)
            assert all(v == list(range(1, len(v) + 1)) for v in by_aggregate.values())
            acknowledged = {e.event_id: e for e in [*results[:5], *results[5], *results[7:]]}
        frames = [(f.first_seq, f.count) for f in disk.frames(disk.last_segment(store_dir)) if f.kind == FRAME_EVENTS]
        # the burst's first append found the writer idle after a lone one and committed alone; the rest queued
        assert frames == [(1, 1), (2, 1), (3, 4), (7, 3), (10, 4)]
        async with EventStore(store_dir) as reopened:
            back = {e.event_id: e for e in await read_all(reopened)}
            for event_id, stored in acknowledged.items():
                assert back[event_id] == stored  # sequence, time and version as acknowledged
                assert await reopened.get(event_id) == stored  # one slot read out of a shared frame
            assert reopened.head_sequence == 13

    run(scenario())
