"""Live delivery: the time from starting an append to a subscriber receiving that event (ADR-004: <= 100 ms).

lighthouse pushes each durable group to its subscribers; SQLite has no push, so its subscriber polls every
``POLL_INTERVAL_S`` (see ``peers.py``). Appends are paced, one at a time, at ``APPEND_RATE`` events/s; every
appended event must arrive exactly once before its latency counts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from time import monotonic_ns
from typing import Any

import pytest

from testkit.percentiles import LatencyRecorder

from . import adr
from .figures import Measured, PeerFigures
from .measure import alternating, latency_figures
from .peers import Peer, open_peers
from .workload import coordination_event

ROUNDS = 3
EVENTS_PER_BLOCK = 500
APPEND_RATE = 500.0  # events/s
DELIVERY_DEADLINE_S = 30.0


@pytest.mark.smoke
def test_append_to_delivery_latency(tmp_path: Path, run: Any, figures: PeerFigures, testkit_record: Any) -> None:
    async def scenario() -> tuple[dict[str, list[LatencyRecorder]], dict[str, list[float]]]:
        async with open_peers(tmp_path) as peers:
            first_delivery: dict[str, list[float]] = {name: [] for name in peers}

            async def block(peer: Peer, round_number: int) -> LatencyRecorder:
                recorder = LatencyRecorder()
                started: dict[str, int] = {}
                delivered: dict[str, int] = {}
                everything = asyncio.Event()
                expected = {coordination_event(i, stream=round_number)["event_id"]
                            for i in range(EVENTS_PER_BLOCK + 1)}

                async def subscriber() -> None:
                    async for event_id in peer.follow():
                        assert event_id not in delivered, f"{peer.name} delivered {event_id} twice"
                        delivered[event_id] = monotonic_ns()
                        if expected.issubset(delivered):
                            everything.set()

                follower = asyncio.create_task(subscriber())
                try:
                    # The first event proves the subscription is live; its delay is the "first delivery" figure.
                    marker = coordination_event(0, stream=round_number)
                    subscribed = monotonic_ns()
                    await asyncio.sleep(0)
                    started[marker["event_id"]] = monotonic_ns()
                    await peer.append(marker)
                    await _wait_for(lambda: marker["event_id"] in delivered, DELIVERY_DEADLINE_S)
                    first_delivery[peer.name].append((delivered[marker["event_id"]] - subscribed) / 1e6)
                    interval_ns = int(1e9 / APPEND_RATE)
                    origin = monotonic_ns()
                    for i in range(1, EVENTS_PER_BLOCK + 1):
                        delay = origin + i * interval_ns - monotonic_ns()
                        if delay > 0:
                            await asyncio.sleep(delay / 1e9)
                        event = coordination_event(i, stream=round_number)
                        started[event["event_id"]] = monotonic_ns()
                        await peer.append(event)
                    await asyncio.wait_for(everything.wait(), DELIVERY_DEADLINE_S)
                finally:
                    follower.cancel()
                    await asyncio.gather(follower, return_exceptions=True)
                assert set(delivered) == expected, f"{peer.name} delivered events that were never appended"
                for event_id, begin in started.items():
                    if event_id != marker["event_id"]:
                        recorder.record(delivered[event_id] - begin)
                return recorder

            return await alternating(peers, ROUNDS, block), first_delivery

    blocks, first = run(scenario())
    testkit_record.parameters.update(rounds=ROUNDS, events_per_block=EVENTS_PER_BLOCK, append_rate=APPEND_RATE)
    latency_figures(figures, "append to delivery", blocks, {50.0: None, 99.0: adr.SUBSCRIPTION_DELIVERY_P99_MS})
    # One first delivery per round: the judged figure is the slowest of them, not a typical one.
    figures.add("subscribe to first delivery (slowest)", "ms", line=adr.SUBSCRIPTION_DELIVERY_P99_MS,
                **{name: Measured(max(values), values) for name, values in first.items()})
    figures.assert_lines_met()


async def _wait_for(condition: Any, timeout: float) -> None:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (then fail)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not delivered within {timeout} s")
        await asyncio.sleep(0.0005)
