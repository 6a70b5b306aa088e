"""Open-loop runner: latency from the intended start, late and dropped starts, errors, timeline, progress."""

from __future__ import annotations

import asyncio
import io
import os
import select
import sys
import time
from collections import Counter

import pytest

from testkit.load import (
    ConstantRate,
    LoadConfigError,
    LoadResult,
    LoadRunner,
    PoissonArrivals,
    ProgressSnapshot,
    TerminalProgress,
    run_closed_loop,
    run_open_loop,
)
from testkit.load.progress import resolve_progress

NS = 1_000_000_000

# The stalled target holds the event loop, as an in-process store blocked in fsync would. Arrivals landing in
# the first 1 % of the run's time inside the stall make up the top 1 % of samples, and each waits at least the
# stall minus that 1 %; so for the open-loop p99 to read >= 1 s the stall lasts 1 s plus 1 % of the run (plus
# a margin for the loop's 1 ms timer resolution).
OPEN_RUN_S = 1.6
OPEN_RATE = 300
STALL_S = 1.0 + 0.01 * OPEN_RUN_S + 0.03


class StallsOnce:
    """A fast target whose ``stall_on``-th call blocks the whole process for ``stall_s``."""

    def __init__(self, stall_on: int, stall_s: float) -> None:
        self.calls = 0
        self.stall_on = stall_on
        self.stall_s = stall_s
        self.stalled_for_s = 0.0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls == self.stall_on:
            began = time.monotonic()
            time.sleep(self.stall_s)  # the fault: a synchronous stall, not synchronisation
            self.stalled_for_s = time.monotonic() - began
        await asyncio.sleep(0)


def test_open_loop_latency_includes_the_queueing_a_stall_causes_while_closed_loop_hides_it() -> None:
    open_target = StallsOnce(stall_on=int(OPEN_RATE * 0.25), stall_s=STALL_S)
    opened = asyncio.run(run_open_loop(open_target, ConstantRate(OPEN_RATE, OPEN_RUN_S), progress=None))
    closed_target = StallsOnce(stall_on=500, stall_s=STALL_S)
    closed = asyncio.run(run_closed_loop(closed_target, clients=2, duration_s=1.3, progress=None))

    # the fault happened, in both runs
    assert open_target.stalled_for_s >= STALL_S and closed_target.stalled_for_s >= STALL_S
    assert closed.latency.max_ns >= STALL_S * NS  # the closed loop did measure the stalled call itself
    expected_waiters = OPEN_RATE * STALL_S
    assert opened.late_starts >= 0.9 * expected_waiters  # starts meant for the stall window were delayed

    assert opened.completed == opened.offered == OPEN_RATE * OPEN_RUN_S
    assert opened.latency.summary().p99_ns >= 1 * NS  # open loop: queueing behind the stall counts
    # "Far below the stall": a quarter of it, so that the scheduling delays of a loaded machine (tens of ms here at
    # load 5.5: service p99 10 ms, closed-loop p99 0.07 ms) cannot blur the contrast with the open loop's >= 1 s.
    far_below_the_stall = STALL_S / 4 * NS
    assert opened.service_time.summary().p99_ns < far_below_the_stall  # the service-time view: one slow call
    assert closed.latency.summary().p99_ns < far_below_the_stall  # closed loop: coordinated omission hides it
    assert closed.completed >= 100 * 2  # the stall's samples (one per client) lie above the p99, not beyond the run
    # the per-second timeline shows the stall in the second where it ended
    worst = max(opened.timeline, key=lambda point: point.max_ns or 0)
    assert worst.max_ns is not None and worst.p99_ns is not None
    assert worst.max_ns >= STALL_S * NS and worst.p99_ns >= 0.5 * NS


def test_every_planned_start_is_offered_and_accounted_for() -> None:
    profile = PoissonArrivals(rate=800, duration=0.8, seed=13)
    calls = 0

    async def target() -> None:
        nonlocal calls
        calls += 1

    result = asyncio.run(run_open_loop(target, profile, progress=None))
    planned = len(list(profile))
    assert result.offered == planned == calls == result.completed
    assert result.latency.count == result.service_time.count == result.start_lag.count == planned
    assert result.errors == result.dropped_starts == result.unfinished == 0
    assert sum(p.offered for p in result.timeline) == planned
    assert sum(p.completed for p in result.timeline) == planned
    assert result.duration_s >= profile.duration_s * 0.9 and result.planned_duration_s == profile.duration_s
    for point in result.timeline:
        if point.completed:
            assert point.p50_ns is not None and point.p99_ns is not None and point.max_ns is not None
            assert point.p50_ns <= point.p99_ns <= point.max_ns
    # latency from the intended start is never shorter than the service time of the same operation
    assert result.latency.min_ns >= result.service_time.min_ns


def test_errors_are_counted_by_exception_class() -> None:
    raised: Counter[str] = Counter()
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls % 3 == 0:
            raised["TimeoutError"] += 1
            raise TimeoutError("slow")
        if calls % 5 == 0:
            raised["KeyError"] += 1
            raise KeyError("missing")

    result = asyncio.run(run_open_loop(flaky, ConstantRate(500, 0.5), progress=None))
    assert raised["TimeoutError"] > 0 and raised["KeyError"] > 0
    assert result.errors_by_kind == dict(raised)
    assert result.completed + result.errors == result.offered == calls
    assert result.latency.count == result.completed  # latency holds successful operations only
    assert sum(p.errors for p in result.timeline) == result.errors


def test_starts_beyond_max_in_flight_are_dropped_and_stuck_operations_cancelled() -> None:
    never = asyncio.Event()
    started = 0

    async def hangs() -> None:
        nonlocal started
        started += 1
        await never.wait()

    result = asyncio.run(
        run_open_loop(hangs, ConstantRate(200, 0.25), max_in_flight=5, drain_timeout_s=0.1, progress=None)
    )
    assert result.offered == 50
    assert started == 5 and result.unfinished == 5
    assert result.dropped_starts == 45
    assert result.completed == 0 and result.latency.count == 0


def test_synchronous_operations_are_accepted() -> None:
    seen: list[int] = []
    result = asyncio.run(run_open_loop(lambda: seen.append(1), ConstantRate(400, 0.25), progress=None))
    assert result.completed == len(seen) == 100


def test_progress_callback_gets_snapshots_and_a_final_one() -> None:
    snapshots: list[ProgressSnapshot] = []
    result = asyncio.run(
        run_open_loop(lambda: None, ConstantRate(200, 0.7), progress=snapshots.append, progress_interval_s=0.2)
    )
    assert len(snapshots) >= 3
    assert [s.final for s in snapshots] == [False] * (len(snapshots) - 1) + [True]
    assert snapshots[-1].completed == result.completed and snapshots[-1].offered == result.offered
    assert [s.offered for s in snapshots] == sorted(s.offered for s in snapshots)


def read_until(reader: io.RawIOBase, ending: bytes, timeout_s: float = 5.0) -> bytes:
    """Read a pty until ``ending`` arrives (a tty hands writes over in pieces), or the deadline passes."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while not data.endswith(ending) and time.monotonic() < deadline:
        ready, _, _ = select.select([reader], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            data += reader.read(4096) or b""
    return data


def test_terminal_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert resolve_progress("auto") is None
    controller, terminal = os.openpty()
    with os.fdopen(terminal, "w") as tty, os.fdopen(controller, "rb", buffering=0) as reader:
        monkeypatch.setattr(sys, "stderr", tty)
        reporter = resolve_progress("auto")
        assert isinstance(reporter, TerminalProgress)
        reporter(ProgressSnapshot(1.0, 10.0, 100, 90, 1, 10, 0, 0))
        reporter(ProgressSnapshot(2.0, 10.0, 200, 190, 1, 10, 0, 0, final=True))
        written = read_until(reader, b"\r\n").decode()
    assert "completed" in written and "190" in written and written.endswith("\r\n")
    with pytest.raises(TypeError):
        resolve_progress("loud")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [{"max_in_flight": 0}, {"late_tolerance_s": -1}, {"drain_timeout_s": float("nan")}, {"progress_interval_s": 0}],
)
def test_bad_options_raise_load_config_error(options: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(LoadConfigError):
        asyncio.run(run_open_loop(lambda: None, ConstantRate(10, 0.1), progress=None, **options))


def test_bad_operation_or_profile_raise_load_config_error() -> None:
    with pytest.raises(LoadConfigError):
        asyncio.run(run_open_loop("not callable", ConstantRate(10, 0.1)))  # type: ignore[arg-type]
    with pytest.raises(LoadConfigError):
        asyncio.run(run_open_loop(lambda: None, [0, 1, 2]))  # type: ignore[arg-type]


def test_load_runner_facade_keeps_results_and_refuses_nested_event_loops() -> None:
    kept: list[LoadResult] = []
    runner = LoadRunner(progress=None, on_result=kept.append)
    first = runner.open_loop(lambda: None, ConstantRate(100, 0.2))
    second = runner.closed_loop(lambda: None, clients=2, operations=50)
    assert runner.results == kept == [first, second]
    assert first.mode == "open_loop" and first.completed == 20
    assert second.mode == "closed_loop" and second.offered == 50

    async def nested() -> None:
        runner.open_loop(lambda: None, ConstantRate(100, 0.2))

    with pytest.raises(LoadConfigError):
        asyncio.run(nested())
    result = asyncio.run(runner.open_loop_async(lambda: None, ConstantRate(100, 0.2), late_tolerance_s=1.0))
    assert result.params["late_tolerance_s"] == 1.0 and len(runner.results) == 3
