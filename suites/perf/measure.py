"""Measuring both peers fairly on a shared, noisy machine: alternating blocks, pooled histograms.

A neighbour's burst of CPU or disk traffic lasts seconds. Measuring lighthouse for a minute and then SQLite for
a minute would hand the burst to one of them; measuring them in short alternating blocks (and swapping who goes
first each round) hands it to both alike. Each judged figure is then the figure of *all* operations: the
percentile of the pooled histogram (every block's latencies merged), the rate of all events over all the time
spent. The per-block values are kept as samples for the regression gate, never judged: a median of per-block
percentiles would hide the block a stall hit, which is exactly what a tail figure must show.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from time import monotonic_ns
from typing import TypeVar

from testkit.percentiles import LatencyRecorder

from .figures import AdrLine, Measured, PeerFigures
from .peers import Peer

__all__ = ["alternating", "latency_figures", "pooled_rate", "rate_figure", "timed_ns"]

T = TypeVar("T")


async def alternating(peers: Mapping[str, Peer], rounds: int,
                      block: Callable[[Peer, int], Awaitable[T]]) -> dict[str, list[T]]:
    """Run ``block(peer, round)`` for every peer, ``rounds`` times, alternating which peer goes first."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    results: dict[str, list[T]] = {name: [] for name in peers}
    names = list(peers)
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else names[::-1]:
            results[name].append(await block(peers[name], round_number))
    return results


async def timed_ns(operation: Awaitable[T]) -> tuple[T, int]:
    started = monotonic_ns()
    result = await operation
    return result, monotonic_ns() - started


def latency_figures(figures: PeerFigures, name: str, blocks: Mapping[str, Sequence[LatencyRecorder]],
                    lines: Mapping[float, AdrLine | None]) -> dict[str, LatencyRecorder]:
    """Add one figure per percentile in ``lines`` (``{99.0: AdrLine(...)}``), in ms, of all blocks pooled.

    Names read ``<name> p99``. The pooled histogram rides on one metric only (p99 when asked for, else the
    highest percentile), so baselines stay small. Returns the pooled recorder of each peer.
    """
    pooled = {peer: LatencyRecorder().merge(*recorders) for peer, recorders in blocks.items()}
    carrier = 99.0 if 99.0 in lines else max(lines)
    for percentile, line in lines.items():
        per_peer: dict[str, Measured] = {}
        for peer, recorders in blocks.items():
            samples = [r.percentile(percentile) / 1e6 for r in recorders]
            per_peer[peer] = Measured(pooled[peer].percentile(percentile) / 1e6, samples,
                                      pooled[peer] if percentile == carrier else None)
        label = "max" if percentile == 100.0 else f"p{percentile:g}"
        figures.add(f"{name} {label}", "ms", lighthouse=per_peer["lighthouse"], sqlite=per_peer["sqlite"],
                    line=line)
    return pooled


def pooled_rate(rates: Sequence[float]) -> float:
    """Events per second of equal-sized blocks taken together: ``n * k / sum(n / r)``, the harmonic mean."""
    if not rates or any(r <= 0 for r in rates):
        return 0.0
    return len(rates) / sum(1.0 / r for r in rates)


def rate_figure(figures: PeerFigures, name: str, rates: Mapping[str, Sequence[float]], unit: str = "events/s",
                line: AdrLine | None = None) -> None:
    """A throughput figure over equal-sized blocks: all events over all the time (the harmonic mean of the
    per-block rates), per-block rates as samples; higher is better."""
    measured = {peer: Measured(pooled_rate(values), list(values)) for peer, values in rates.items()}
    figures.add(name, unit, lighthouse=measured["lighthouse"], sqlite=measured["sqlite"], line=line,
                direction="higher")
