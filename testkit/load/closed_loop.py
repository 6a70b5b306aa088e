"""Closed-loop load: N clients, each sending its next operation only when the previous one has finished.

This is how a fixed pool of workers or connections behaves, and it measures capacity (how many operations
per second N clients get through). Its latency is the classic, optimistic view: a client stuck behind a stall
records one slow sample and sends nothing meanwhile, so the stall barely moves the percentiles (coordinated
omission). Compare with :func:`testkit.load.run_open_loop`, or correct the histogram with
:meth:`testkit.percentiles.LatencyRecorder.corrected` when the intended pace is known.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from inspect import isawaitable
from time import monotonic_ns

from testkit.load._checks import check_positive_int, check_seconds
from testkit.load.errors import LoadConfigError
from testkit.load.operation import Operation
from testkit.load.progress import ProgressCallback, ProgressOption, ProgressSnapshot, resolve_progress
from testkit.load.result import LoadResult
from testkit.load.timeline import TimelineRecorder
from testkit.percentiles import HistogramSpec, LatencyRecorder

__all__ = ["run_closed_loop"]

_NS_PER_S = 1_000_000_000


async def run_closed_loop(
    operation: Operation,
    *,
    clients: int,
    duration_s: float | None = None,
    operations: int | None = None,
    think_time_s: float = 0.0,
    spec: HistogramSpec | None = None,
    progress: ProgressOption = "auto",
    progress_interval_s: float = 1.0,
) -> LoadResult:
    """Run ``clients`` concurrent loops of ``operation`` until ``duration_s`` passes or ``operations`` started.

    At least one limit is required. A client finishes the operation it has started when time runs out, so the
    run lasts at most ``duration_s`` plus one operation. ``think_time_s`` pauses each client between calls.
    """
    if not callable(operation):
        raise LoadConfigError(f"operation must be callable, got {type(operation).__name__}")
    check_positive_int("clients", clients)
    if duration_s is None and operations is None:
        raise LoadConfigError("a closed-loop run needs duration_s, operations, or both")
    if duration_s is not None:
        check_seconds("duration_s", duration_s)
    if operations is not None:
        check_positive_int("operations", operations)
    check_seconds("think_time_s", think_time_s, allow_zero=True)
    check_seconds("progress_interval_s", progress_interval_s)
    run = _ClosedLoopRun(operation, clients, duration_s, operations, think_time_s, spec or HistogramSpec())
    return await run.execute(resolve_progress(progress, "closed loop"), progress_interval_s)


class _ClosedLoopRun:
    def __init__(
        self,
        operation: Operation,
        clients: int,
        duration_s: float | None,
        operations: int | None,
        think_time_s: float,
        spec: HistogramSpec,
    ) -> None:
        self.operation = operation
        self.clients = clients
        self.duration_s = duration_s
        self.budget = operations
        self.think_time_s = think_time_s
        self.start_ns = monotonic_ns()
        self.deadline_ns = None if duration_s is None else self.start_ns + int(duration_s * _NS_PER_S)
        self.latency = LatencyRecorder.from_spec(spec)
        self.service_time = LatencyRecorder.from_spec(spec)
        self.timeline = TimelineRecorder(self.start_ns, spec)
        self.errors: Counter[str] = Counter()
        self.offered = 0
        self.completed = 0
        self.in_flight = 0
        self.per_client = [0] * clients
        self.last_end_ns = self.start_ns

    async def execute(self, progress: ProgressCallback | None, progress_interval_s: float) -> LoadResult:
        reporter = None
        if progress is not None:
            reporter = asyncio.get_running_loop().create_task(self._report(progress, progress_interval_s))
        try:
            await asyncio.gather(*(self._client(index) for index in range(self.clients)))
        finally:
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
        # A timed run lasts until its clients saw the deadline, not until the last operation ended before it
        # (measured to the last end, a 0.2 s run could report 0.19999 s and a rate a hair too high).
        stopped_ns = min(monotonic_ns(), self.deadline_ns) if self.deadline_ns is not None else self.last_end_ns
        self.last_end_ns = max(self.last_end_ns, stopped_ns)
        result = LoadResult(
            mode="closed_loop",
            latency=self.latency,
            service_time=self.service_time,
            start_lag=LatencyRecorder.from_spec(self.latency.spec),
            timeline=self.timeline.finish(),
            offered=self.offered,
            completed=self.completed,
            errors_by_kind=dict(self.errors),
            late_starts=0,
            dropped_starts=0,
            unfinished=0,
            duration_s=(self.last_end_ns - self.start_ns) / _NS_PER_S,
            planned_duration_s=self.duration_s,
            params={
                "clients": self.clients,
                "operations": self.budget,
                "think_time_s": self.think_time_s,
                "per_client_completed": list(self.per_client),
            },
        )
        if progress is not None:
            progress(self._snapshot(final=True))
        return result

    async def _client(self, index: int) -> None:
        operation = self.operation
        deadline = self.deadline_ns
        think = self.think_time_s
        while True:
            started = monotonic_ns()
            if deadline is not None and started >= deadline:
                return
            if self.budget is not None and self.offered >= self.budget:
                return
            self.offered += 1
            self.in_flight += 1
            self.timeline.offered(started)
            try:
                outcome = operation()
                if isawaitable(outcome):
                    await outcome
                end = monotonic_ns()
                self.latency.record(end - started)
                self.service_time.record(end - started)
                self.timeline.completed(end, end - started)
                self.completed += 1
                self.per_client[index] += 1
            except Exception as exc:  # a failing target is data, not a crash of the runner
                end = monotonic_ns()
                self.errors[type(exc).__name__] += 1
                self.timeline.error(end)
            finally:
                self.in_flight -= 1
            if end > self.last_end_ns:
                self.last_end_ns = end
            # Yield even without think time: an operation that never suspends would otherwise starve the
            # other clients (and the progress reporter) for the whole run.
            await asyncio.sleep(think)

    async def _report(self, progress: ProgressCallback, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            progress(self._snapshot(final=False))

    def _snapshot(self, *, final: bool) -> ProgressSnapshot:
        return ProgressSnapshot(
            elapsed_s=(monotonic_ns() - self.start_ns) / _NS_PER_S,
            planned_s=self.duration_s,
            offered=self.offered,
            completed=self.completed,
            errors=sum(self.errors.values()),
            in_flight=self.in_flight,
            late_starts=0,
            dropped_starts=0,
            final=final,
        )
