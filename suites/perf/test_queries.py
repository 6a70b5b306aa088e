"""Queries against 100,000 stored events while appends keep arriving: get by id, a time range of 1,000 events,
and a two-field filter over a window of 10,000 events (ADR-004 query lines).

Every answer is checked before its time counts (the id read back, exactly 1,000 events in the range, exactly
2,500 matches of the filter), and the background appender must have stored events during the measurement.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from time import monotonic_ns
from typing import Any

from testkit.percentiles import LatencyRecorder

from . import adr
from .figures import PeerFigures
from .measure import alternating, latency_figures
from .peers import Peer, open_peers
from .workload import (
    AGENTS,
    FILL_BATCH,
    FILLED_EVENTS,
    FILTER_WINDOW,
    RANGE_SIZE,
    coordination_event,
    filter_over_window,
)

ROUNDS = 5
GETS_PER_BLOCK = 400  # 2,000 per peer
RANGES_PER_BLOCK = 20  # 100 per peer
FILTERS_PER_BLOCK = 10  # 50 per peer
BACKGROUND_APPEND_RATE = 500.0  # events/s per peer, single durable appends, for the whole test


async def _append_in_background(peer: Peer, stop: asyncio.Event, appended: list[int]) -> None:
    interval = 1 / BACKGROUND_APPEND_RATE
    loop = asyncio.get_running_loop()
    started = loop.time()
    index = FILLED_EVENTS
    while not stop.is_set():
        await peer.append(coordination_event(index, stream=1))
        index += 1
        appended[0] += 1
        delay = started + (index - FILLED_EVENTS) * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


def test_queries_under_concurrent_appends(tmp_path: Path, run: Any, figures: PeerFigures, testkit_rng: random.Random,
                                          copy_filled: Callable[[Path], Path], testkit_record: Any) -> None:
    copy_filled(tmp_path)
    rng = testkit_rng

    async def scenario() -> tuple[dict[str, list[dict[str, LatencyRecorder]]], dict[str, int]]:
        async with open_peers(tmp_path) as peers:
            stop = asyncio.Event()
            appended = {name: [0] for name in peers}
            appenders = [asyncio.create_task(_append_in_background(peer, stop, appended[name]))
                         for name, peer in peers.items()]

            async def block(peer: Peer, _round: int) -> dict[str, LatencyRecorder]:
                recorders = {kind: LatencyRecorder() for kind in ("get", "range", "filter")}
                for _ in range(GETS_PER_BLOCK):
                    wanted = coordination_event(rng.randrange(FILLED_EVENTS))["event_id"]
                    started = monotonic_ns()
                    found = await peer.get(wanted)
                    recorders["get"].record_since(started)
                    assert found == wanted, f"{peer.name} returned {found} for {wanted}"
                for _ in range(RANGES_PER_BLOCK):
                    first = 1 + FILL_BATCH * rng.randrange((FILLED_EVENTS - RANGE_SIZE) // FILL_BATCH)
                    after, before = await peer.recorded_at(first), await peer.recorded_at(first + RANGE_SIZE)
                    started = monotonic_ns()
                    count = await peer.time_range(after, before, RANGE_SIZE)
                    recorders["range"].record_since(started)
                    assert count == RANGE_SIZE, f"{peer.name}: {count} events recorded in a range of {RANGE_SIZE}"
                for _ in range(FILTERS_PER_BLOCK):
                    spec = filter_over_window(1 + AGENTS * rng.randrange((FILLED_EVENTS - FILTER_WINDOW) // AGENTS))
                    started = monotonic_ns()
                    count = await peer.matching(spec)
                    recorders["filter"].record_since(started)
                    assert count == spec.expected, f"{peer.name}: {count} matches, {spec.expected} expected"
                await asyncio.sleep(0.05)  # let the background appenders catch up between blocks
                return recorders

            try:
                blocks = await alternating(peers, ROUNDS, block)
            finally:
                stop.set()
                await asyncio.gather(*appenders)
            return blocks, {name: count[0] for name, count in appended.items()}

    blocks, appended = run(scenario())
    testkit_record.parameters.update(stored=FILLED_EVENTS, rounds=ROUNDS, gets=ROUNDS * GETS_PER_BLOCK,
                                     ranges=ROUNDS * RANGES_PER_BLOCK, filters=ROUNDS * FILTERS_PER_BLOCK,
                                     background_appends=appended)
    assert all(count > 0 for count in appended.values()), f"appends did not run concurrently: {appended}"
    by_kind = {kind: {name: [b[kind] for b in peer_blocks] for name, peer_blocks in blocks.items()}
               for kind in ("get", "range", "filter")}
    latency_figures(figures, "get by id", by_kind["get"], {50.0: None, 99.0: adr.GET_BY_ID_P99_MS})
    latency_figures(figures, f"time range of {RANGE_SIZE:,}", by_kind["range"],
                    {50.0: None, 99.0: adr.RANGE_1000_P99_MS})
    latency_figures(figures, f"filter over {FILTER_WINDOW:,}", by_kind["filter"],
                    {50.0: None, 99.0: adr.FILTER_10000_P99_MS})
    figures.assert_lines_met()
