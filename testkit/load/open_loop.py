"""Open-loop load: start operations when the schedule says, whether or not earlier ones have finished.

This is how independent users behave, and the only way to see queueing: if the target stalls for a second,
every operation meant to start during that second waits, and its latency is counted from its *intended*
start (wrk2's fix for coordinated omission). A closed-loop client would instead politely stop sending and
report one slow sample.

The dispatcher wakes at the next intended start (the event loop's timer resolution is about 1 ms), starts
every operation whose time has come as its own task, and yields to the loop every few hundred starts so
that completions keep flowing when it runs behind. Starts later than ``late_tolerance_s`` are counted as
late; starts refused because ``max_in_flight`` operations are pending are counted as dropped (k6's
``dropped_iterations``): either means the numbers describe the generator as much as the target.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from itertools import chain
from inspect import isawaitable
from time import monotonic_ns

from testkit.load._checks import check_positive_int, check_seconds
from testkit.load.errors import LoadConfigError
from testkit.load.operation import Operation
from testkit.load.profiles import RateProfile
from testkit.load.progress import ProgressCallback, ProgressOption, ProgressSnapshot, resolve_progress
from testkit.load.result import LoadResult
from testkit.load.timeline import TimelineRecorder
from testkit.percentiles import HistogramSpec, LatencyRecorder

__all__ = ["run_open_loop"]

_NS_PER_S = 1_000_000_000
_YIELD_EVERY = 256  # starts in a row before the dispatcher lets started operations run


async def run_open_loop(
    operation: Operation,
    profile: RateProfile,
    *,
    max_in_flight: int = 10_000,
    late_tolerance_s: float = 0.005,
    drain_timeout_s: float = 30.0,
    spec: HistogramSpec | None = None,
    progress: ProgressOption = "auto",
    progress_interval_s: float = 1.0,
    start_ns: int | None = None,
) -> LoadResult:
    """Drive ``operation`` at the times ``profile`` plans and measure it without coordinated omission.

    ``start_ns`` (a :func:`time.monotonic_ns` instant, shared system-wide on Linux) lets several processes
    follow one clock; by default the run starts now. After the schedule ends, pending operations get
    ``drain_timeout_s`` to finish; the rest are cancelled and reported as ``unfinished``.
    """
    if not isinstance(profile, RateProfile):
        raise LoadConfigError(f"profile must be a RateProfile, got {type(profile).__name__}")
    if not callable(operation):
        raise LoadConfigError(f"operation must be callable, got {type(operation).__name__}")
    check_positive_int("max_in_flight", max_in_flight)
    check_seconds("late_tolerance_s", late_tolerance_s, allow_zero=True)
    check_seconds("drain_timeout_s", drain_timeout_s, allow_zero=True)
    check_seconds("progress_interval_s", progress_interval_s)
    offsets = profile.offsets_ns()
    first = next(offsets, None)  # pay for the first batch of the schedule before the clock starts
    run = _OpenLoopRun(
        operation,
        profile,
        chain(() if first is None else (first,), offsets),
        max_in_flight=max_in_flight,
        late_tolerance_ns=int(late_tolerance_s * _NS_PER_S),
        spec=spec or HistogramSpec(),
        start_ns=monotonic_ns() if start_ns is None else start_ns,
    )
    return await run.execute(drain_timeout_s, resolve_progress(progress, "open loop"), progress_interval_s)


class _OpenLoopRun:
    """State of one run; a class so the hot path reads attributes instead of closure cells."""

    def __init__(
        self,
        operation: Operation,
        profile: RateProfile,
        offsets: Iterator[int],
        *,
        max_in_flight: int,
        late_tolerance_ns: int,
        spec: HistogramSpec,
        start_ns: int,
    ) -> None:
        self.operation = operation
        self.profile = profile
        self.offsets = offsets
        self.max_in_flight = max_in_flight
        self.late_tolerance_ns = late_tolerance_ns
        self.spec = spec
        self.start_ns = start_ns
        self.latency = LatencyRecorder.from_spec(spec)
        self.service_time = LatencyRecorder.from_spec(spec)
        self.start_lag = LatencyRecorder.from_spec(spec)
        self.timeline = TimelineRecorder(start_ns, spec)
        self.errors: Counter[str] = Counter()
        self.offered = 0
        self.completed = 0
        self.late_starts = 0
        self.dropped_starts = 0
        self.in_flight = 0
        self.last_end_ns = start_ns
        self.tasks: set[asyncio.Task[None]] = set()
        self.idle = asyncio.Event()
        self.idle.set()

    async def execute(
        self, drain_timeout_s: float, progress: ProgressCallback | None, progress_interval_s: float
    ) -> LoadResult:
        reporter = None
        if progress is not None:
            reporter = asyncio.get_running_loop().create_task(self._report(progress, progress_interval_s))
        try:
            await self._dispatch()
            unfinished = await self._drain(drain_timeout_s)
        finally:
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
        end_ns = max(self.last_end_ns, monotonic_ns() if unfinished else self.last_end_ns)
        result = LoadResult(
            mode="open_loop",
            latency=self.latency,
            service_time=self.service_time,
            start_lag=self.start_lag,
            timeline=self.timeline.finish(),
            offered=self.offered,
            completed=self.completed,
            errors_by_kind=dict(self.errors),
            late_starts=self.late_starts,
            dropped_starts=self.dropped_starts,
            unfinished=unfinished,
            duration_s=max(0, end_ns - self.start_ns) / _NS_PER_S,
            planned_duration_s=self.profile.duration_s,
            params={
                "profile": repr(self.profile),
                "expected_count": self.profile.expected_count(),
                "max_in_flight": self.max_in_flight,
                "late_tolerance_s": self.late_tolerance_ns / _NS_PER_S,
            },
        )
        if progress is not None:
            progress(self._snapshot(final=True))
        return result

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        start_ns = self.start_ns
        offer = self.timeline.offered
        tasks = self.tasks
        discard = tasks.discard
        one = self._one
        max_in_flight = self.max_in_flight
        in_a_row = 0
        for offset in self.offsets:
            intended = start_ns + offset
            now = monotonic_ns()
            if intended > now:
                in_a_row = 0
                while intended > now:
                    await asyncio.sleep((intended - now) / _NS_PER_S)
                    now = monotonic_ns()
            elif in_a_row >= _YIELD_EVERY:
                in_a_row = 0
                await asyncio.sleep(0)
            in_a_row += 1
            self.offered += 1
            offer(intended)
            if self.in_flight >= max_in_flight:
                self.dropped_starts += 1
                continue
            self.in_flight += 1
            self.idle.clear()
            task = loop.create_task(one(intended))
            tasks.add(task)
            task.add_done_callback(discard)

    async def _one(self, intended_ns: int) -> None:
        started = monotonic_ns()
        lag = started - intended_ns
        if lag > self.late_tolerance_ns:
            self.late_starts += 1
        try:
            self.start_lag.record(lag)
            outcome = self.operation()
            if isawaitable(outcome):
                await outcome
            end = monotonic_ns()
            self.latency.record(end - intended_ns)
            self.service_time.record(end - started)
            self.timeline.completed(end, end - intended_ns)
            self.completed += 1
        except Exception as exc:  # every failure of the target is data, not a crash of the runner
            end = monotonic_ns()
            self.errors[type(exc).__name__] += 1
            self.timeline.error(end)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()
        if end > self.last_end_ns:
            self.last_end_ns = end

    async def _drain(self, drain_timeout_s: float) -> int:
        if self.in_flight == 0:
            return 0
        try:
            await asyncio.wait_for(self.idle.wait(), drain_timeout_s)
            return 0
        except asyncio.TimeoutError:
            pending = list(self.tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return len(pending)

    async def _report(self, progress: ProgressCallback, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            progress(self._snapshot(final=False))

    def _snapshot(self, *, final: bool) -> ProgressSnapshot:
        return ProgressSnapshot(
            elapsed_s=(monotonic_ns() - self.start_ns) / _NS_PER_S,
            planned_s=self.profile.duration_s,
            offered=self.offered,
            completed=self.completed,
            errors=sum(self.errors.values()),
            in_flight=self.in_flight,
            late_starts=self.late_starts,
            dropped_starts=self.dropped_starts,
            final=final,
        )

