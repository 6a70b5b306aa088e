"""Replay of 100,000 stored events: rate, time against ADR-004's 10 s, and peak memory while streaming.

Peak memory is tracemalloc's peak of Python allocations during one replay (exact, and immune to arenas left by
earlier tests), in a separate pass from the timed ones because tracing slows allocation. A streaming replay
holds a window of events at a time, so its peak must stay within ADR-004's 10 MB however many events it reads.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import adr
from .figures import Measured, PeerFigures
from .measure import alternating, rate_figure
from .peers import Peer, open_peers
from .workload import FILLED_EVENTS

ROUNDS = 3


async def _replay_all(peer: Peer) -> int:
    """Read every event in order; check the order and that nothing is missing."""
    expected = 1
    async for sequence in peer.replay():
        assert sequence == expected, f"{peer.name} replayed sequence {sequence} where {expected} was due"
        expected += 1
    return expected - 1


def test_replay_of_one_hundred_thousand_events(tmp_path: Path, run: Any, figures: PeerFigures,
                                                copy_filled: Callable[[Path], Path], testkit_record: Any) -> None:
    copy_filled(tmp_path)

    async def scenario() -> tuple[dict[str, list[float]], dict[str, int]]:
        async with open_peers(tmp_path) as peers:

            async def timed(peer: Peer, _round: int) -> float:
                started = time.perf_counter()
                replayed = await _replay_all(peer)
                elapsed = time.perf_counter() - started
                assert replayed == FILLED_EVENTS, f"{peer.name} replayed {replayed} of {FILLED_EVENTS} events"
                return elapsed

            seconds = await alternating(peers, ROUNDS, timed)
            peaks = {}
            for name, peer in peers.items():
                tracemalloc.start()
                try:
                    before = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    assert await _replay_all(peer) == FILLED_EVENTS
                    peaks[name] = tracemalloc.get_traced_memory()[1] - before
                finally:
                    tracemalloc.stop()
            return seconds, peaks

    seconds, peaks = run(scenario())
    testkit_record.parameters.update(events=FILLED_EVENTS, rounds=ROUNDS)
    # Every replay must meet the line, so the judged figure is the slowest of them (all operations' p100).
    durations = {name: Measured(max(values), values) for name, values in seconds.items()}
    figures.add("replay 100,000 events", "s", line=adr.REPLAY_100000_S, **durations)
    rate_figure(figures, "replay rate", {name: [FILLED_EVENTS / s for s in values] for name, values in seconds.items()})
    figures.add("replay peak traced memory", "bytes", line=adr.REPLAY_PEAK_BYTES,
                **{name: Measured(float(peak)) for name, peak in peaks.items()})
    figures.assert_lines_met()
