"""Sustained throughput, open loop: appends start on schedule whether or not earlier ones have finished.

Two ADR-004 throughput lines, each offered 1 % above the line (so the run's finite edge cannot make a store
that keeps up look short) for ``DEFAULT_SECONDS`` (or ``--testkit-duration``, e.g. 1h on demand):

* 10,000 events/s batched, ~100 per batch: judged on the achieved event rate and the batch p99 (<= 50 ms);
* 2,500 events/s of single durable appends (one writer, one core): judged on the rate and append p99 (<= 10 ms).

Latency is measured from each operation's *intended* start (no coordinated omission), so a store that stalls
is charged for everything queued behind the stall. The judged figure is the p99 of all operations (one
histogram over the whole run); each second's p99 is shown in the results timeline only.
The peer gets the same schedule; what it cannot start within ``MAX_IN_FLIGHT`` is counted as dropped, and what
it has not finished ``DRAIN_S`` after the schedule ends is counted as unfinished, so a slow peer cannot stall
the suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testkit.load import ConstantRate, LoadResult, LoadRunner
from testkit.speed import SpeedLines

from . import adr
from .figures import AdrLine, Measured, PeerFigures
from .peers import Peer, open_peers
from .workload import coordination_event, coordination_events

DEFAULT_SECONDS = 5.0
BATCH_SIZE = 100
MAX_IN_FLIGHT = 2_000
DRAIN_S = 5.0
HEADROOM = 1.01


def _schedule(rate: float, seconds: float) -> ConstantRate:
    return ConstantRate(rate * HEADROOM, seconds)


async def _run_both(peers: dict[str, Peer], make_operation: Any, profile: ConstantRate) -> dict[str, LoadResult]:
    runner = LoadRunner(progress=None, max_in_flight=MAX_IN_FLIGHT, drain_timeout_s=DRAIN_S)
    results = {}
    for name, peer in peers.items():
        results[name] = await runner.open_loop_async(make_operation(peer), profile)
    return results


def _judge(figures: PeerFigures, testkit_record: Any, label: str, results: dict[str, LoadResult], events_per_op: int,
           rate_line: AdrLine, latency_line: AdrLine, speed: SpeedLines) -> None:
    for name, result in results.items():
        testkit_record.timeline(f"{label} [{name}]", [
            {"t": point.second, "offered_events": point.offered * events_per_op,
             "completed_events": point.completed * events_per_op, "errors": point.errors,
             "p99": None if point.p99_ns is None else point.p99_ns / 1e6}
            for point in result.timeline], {"p99": "ms"})
        testkit_record.parameters[f"{label} [{name}]"] = {
            "offered": result.offered, "completed": result.completed, "errors": result.errors_by_kind,
            "late_starts": result.late_starts, "dropped_starts": result.dropped_starts,
            "unfinished": result.unfinished, "duration_s": result.duration_s}
    rates = {name: Measured(r.achieved_rate * events_per_op) for name, r in results.items()}
    figures.add(f"{label} achieved", "events/s", line=rate_line, direction="higher", **rates)
    figures.add(f"{label} p99 (pooled)", "ms", line=latency_line,
                **{name: Measured(r.latency.percentile(99.0) / 1e6 if r.latency.count else float("inf"),
                                  None, r.latency) for name, r in results.items()})
    figures.add(f"{label} p99.9 (pooled)", "ms",
                **{name: Measured(r.latency.percentile(99.9) / 1e6 if r.latency.count else float("inf"))
                   for name, r in results.items()})
    figures.add(f"{label} errors+dropped+unfinished", "ops",
                **{name: Measured(float(r.errors + r.dropped_starts + r.unfinished)) for name, r in results.items()})
    lighthouse = results["lighthouse"]
    assert lighthouse.errors == 0, f"lighthouse failed appends: {lighthouse.errors_by_kind}"
    speed.expect(lighthouse.dropped_starts == 0 and lighthouse.unfinished == 0,
                 f"lighthouse fell behind: {lighthouse.dropped_starts} dropped, {lighthouse.unfinished} unfinished")
    figures.assert_lines_met()


def test_sustained_batched_appends(tmp_path: Path, run: Any, figures: PeerFigures, testkit_duration: float | None,
                                   testkit_record: Any, speed_lines: SpeedLines) -> None:
    seconds = testkit_duration or DEFAULT_SECONDS
    profile = _schedule(adr.BATCHED_EVENTS_PER_S.value / BATCH_SIZE, seconds)

    def operation(peer: Peer) -> Any:
        counter = iter(range(10**12))

        async def append_batch() -> None:
            await peer.append_batch(coordination_events(next(counter) * BATCH_SIZE, BATCH_SIZE))

        return append_batch

    async def scenario() -> dict[str, LoadResult]:
        async with open_peers(tmp_path) as peers:
            return await _run_both(peers, operation, profile)

    results = run(scenario(), timeout=seconds * 4 + 120)
    testkit_record.parameters.update(seconds=seconds, batch_size=BATCH_SIZE,
                                     offered_events_per_s=profile.rate * BATCH_SIZE)
    _judge(figures, testkit_record, "batched 10k/s", results, BATCH_SIZE, adr.BATCHED_EVENTS_PER_S,
           adr.BATCH_P99_MS, speed_lines)


def test_sustained_single_appends(tmp_path: Path, run: Any, figures: PeerFigures, testkit_duration: float | None,
                                  testkit_record: Any, speed_lines: SpeedLines) -> None:
    seconds = testkit_duration or DEFAULT_SECONDS
    profile = _schedule(adr.SINGLE_WRITER_EVENTS_PER_S.value, seconds)

    def operation(peer: Peer) -> Any:
        counter = iter(range(10**12))

        async def append() -> None:
            await peer.append(coordination_event(next(counter)))

        return append

    async def scenario() -> dict[str, LoadResult]:
        async with open_peers(tmp_path) as peers:
            return await _run_both(peers, operation, profile)

    results = run(scenario(), timeout=seconds * 4 + 120)
    testkit_record.parameters.update(seconds=seconds, offered_events_per_s=profile.rate)
    _judge(figures, testkit_record, "single 2.5k/s", results, 1, adr.SINGLE_WRITER_EVENTS_PER_S, adr.APPEND_P99_MS,
           speed_lines)
