"""Durable append latency: one appender, 64 concurrent appenders, and batches of 100 (ADR-004 append lines).

Both peers acknowledge an append only once it is on disk (lighthouse fdatasync, SQLite WAL with
synchronous=FULL). Latency is measured around each awaited call; building the event dict is outside the timing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from time import monotonic_ns
from typing import Any

import pytest

from testkit.percentiles import LatencyRecorder

from . import adr
from .figures import PeerFigures
from .measure import alternating, latency_figures, rate_figure
from .peers import Peer, open_peers
from .workload import coordination_event, coordination_events

ROUNDS = 5
SINGLE_BLOCK = 2_000  # 5 x 2,000 = 10,000 appends per peer
CONCURRENT_APPENDERS = 64
CONCURRENT_BLOCK = 2_048  # 32 appends per appender per block: 10,240 paced appends per peer
PACED_RATE = 2_560  # events/s offered by the 64 appenders together (40/s each)
SATURATED_BLOCK = 1_024
BATCH_SIZE = 100
BATCHES_PER_BLOCK = 40  # 5 x 40 x 100 = 20,000 events per peer
WARM_UP = 200

APPEND_LINES = {50.0: adr.APPEND_P50_MS, 95.0: adr.APPEND_P95_MS, 99.0: adr.APPEND_P99_MS,
                99.9: adr.APPEND_P999_MS, 100.0: None}


async def _warm_up(peers: dict[str, Peer]) -> None:
    for peer in peers.values():
        for event in coordination_events(0, WARM_UP, stream=9):
            await peer.append(event)


@pytest.mark.smoke
def test_single_appender_latency(tmp_path: Path, run: Any, figures: PeerFigures, testkit_record: Any) -> None:
    async def scenario() -> tuple[dict[str, list[LatencyRecorder]], dict[str, list[float]]]:
        async with open_peers(tmp_path) as peers:
            await _warm_up(peers)
            rates: dict[str, list[float]] = {name: [] for name in peers}

            async def block(peer: Peer, round_number: int) -> LatencyRecorder:
                recorder = LatencyRecorder()
                loop = asyncio.get_running_loop()
                started = loop.time()
                for index in range(round_number * SINGLE_BLOCK, (round_number + 1) * SINGLE_BLOCK):
                    event = coordination_event(index)
                    with recorder.time():
                        await peer.append(event)
                rates[peer.name].append(SINGLE_BLOCK / (loop.time() - started))
                return recorder

            return await alternating(peers, ROUNDS, block), rates

    blocks, rates = run(scenario())
    testkit_record.parameters.update(appenders=1, appends_per_peer=ROUNDS * SINGLE_BLOCK, rounds=ROUNDS)
    assert all(sum(r.count for r in recorders) == ROUNDS * SINGLE_BLOCK for recorders in blocks.values())
    latency_figures(figures, "append 1 appender", blocks, APPEND_LINES)
    rate_figure(figures, "append 1 appender rate", rates)
    figures.assert_lines_met()


def test_sixty_four_concurrent_appenders(tmp_path: Path, run: Any, figures: PeerFigures, testkit_record: Any) -> None:
    """64 appenders, each appending at its own pace, latency from each append's *intended* start; then the same
    64 appenders flat out, for the capacity figure.

    Latency lines only mean something below capacity: 64 appenders that never pause keep 64 appends in flight,
    so by Little's law their median latency is 64 / throughput whatever the store does (2 ms would need 32,000
    durable appends/s). So the latency lines are judged at a stated offered load, ``PACED_RATE`` events/s in
    total (ADR-004's 2,500 events/s single-writer figure; 7.7x its "10 agents at 20,000/min" stress load),
    and the flat-out run gives the rate figure.
    """

    async def scenario() -> tuple[dict[str, list[LatencyRecorder]], dict[str, list[float]]]:
        async with open_peers(tmp_path) as peers:
            await _warm_up(peers)
            rates: dict[str, list[float]] = {name: [] for name in peers}

            async def paced(peer: Peer, round_number: int) -> LatencyRecorder:
                recorder = LatencyRecorder()
                first = round_number * CONCURRENT_BLOCK
                per_appender = CONCURRENT_BLOCK // CONCURRENT_APPENDERS
                interval_ns = int(1e9 * CONCURRENT_APPENDERS / PACED_RATE)
                sequences: list[int] = []
                start_ns = monotonic_ns() + 1_000_000

                async def appender(number: int) -> None:
                    phase_ns = start_ns + number * interval_ns // CONCURRENT_APPENDERS
                    for k in range(per_appender):
                        event = coordination_event(first + number * per_appender + k)
                        intended = phase_ns + k * interval_ns
                        delay = intended - monotonic_ns()
                        if delay > 0:
                            await asyncio.sleep(delay / 1e9)
                        sequences.append(await peer.append(event))
                        recorder.record(monotonic_ns() - intended)

                await asyncio.gather(*(appender(n) for n in range(CONCURRENT_APPENDERS)))
                assert len(set(sequences)) == CONCURRENT_BLOCK, f"{peer.name} handed out a sequence twice"
                return recorder

            async def flat_out(peer: Peer, round_number: int) -> None:
                indices = iter(range(10**7 + round_number * SATURATED_BLOCK,
                                     10**7 + (round_number + 1) * SATURATED_BLOCK))

                async def appender() -> None:
                    for index in indices:
                        await peer.append(coordination_event(index))

                loop = asyncio.get_running_loop()
                started = loop.time()
                await asyncio.gather(*(appender() for _ in range(CONCURRENT_APPENDERS)))
                rates[peer.name].append(SATURATED_BLOCK / (loop.time() - started))

            blocks = await alternating(peers, ROUNDS, paced)
            await alternating(peers, ROUNDS, flat_out)
            return blocks, rates

    blocks, rates = run(scenario())
    testkit_record.parameters.update(appenders=CONCURRENT_APPENDERS, paced_rate=PACED_RATE,
                                     paced_appends_per_peer=ROUNDS * CONCURRENT_BLOCK,
                                     flat_out_appends_per_peer=ROUNDS * SATURATED_BLOCK, rounds=ROUNDS)
    latency_figures(figures, f"append 64 appenders at {PACED_RATE}/s", blocks, APPEND_LINES)
    rate_figure(figures, "append 64 appenders flat out", rates, line=adr.SINGLE_WRITER_EVENTS_PER_S)
    figures.assert_lines_met()


@pytest.mark.smoke
def test_batch_append_latency_and_throughput(tmp_path: Path, run: Any, figures: PeerFigures,
                                             testkit_record: Any) -> None:
    async def scenario() -> tuple[dict[str, list[LatencyRecorder]], dict[str, list[float]]]:
        async with open_peers(tmp_path) as peers:
            await _warm_up(peers)
            rates: dict[str, list[float]] = {name: [] for name in peers}

            async def block(peer: Peer, round_number: int) -> LatencyRecorder:
                recorder = LatencyRecorder()
                first = round_number * BATCHES_PER_BLOCK * BATCH_SIZE
                loop = asyncio.get_running_loop()
                started = loop.time()
                for start in range(first, first + BATCHES_PER_BLOCK * BATCH_SIZE, BATCH_SIZE):
                    events = coordination_events(start, BATCH_SIZE)
                    with recorder.time():
                        await peer.append_batch(events)
                rates[peer.name].append(BATCHES_PER_BLOCK * BATCH_SIZE / (loop.time() - started))
                return recorder

            return await alternating(peers, ROUNDS, block), rates

    blocks, rates = run(scenario())
    testkit_record.parameters.update(batch_size=BATCH_SIZE, batches_per_peer=ROUNDS * BATCHES_PER_BLOCK,
                                     rounds=ROUNDS)
    latency_figures(figures, f"batch of {BATCH_SIZE}", blocks, {50.0: None, 99.0: adr.BATCH_P99_MS})
    rate_figure(figures, f"batch of {BATCH_SIZE} rate", rates, line=adr.BATCHED_EVENTS_PER_S)
    figures.assert_lines_met()
