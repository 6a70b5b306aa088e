"""Open-loop load spread over worker processes, for rates one Python event loop cannot offer alone.

Each worker imports the operation factory by name (``"package.module:function"``; ``spawn`` and
``forkserver`` children share no memory with the parent), builds its own operation, and runs
:func:`run_open_loop` on its round-robin shard of the one schedule. All workers follow one start instant on
the system-wide monotonic clock, so their per-second timelines line up; the parent adds their encoded
histograms, which gives the exact percentiles of all samples (never an average of per-worker percentiles).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import traceback
from dataclasses import dataclass
from time import monotonic, monotonic_ns
from typing import Any, Literal

from testkit.load._checks import check_positive_int, check_seconds
from testkit.load.errors import LoadConfigError, WorkerFailed
from testkit.load.open_loop import run_open_loop
from testkit.load.operation import OperationFactory, resolve_factory
from testkit.load.profiles import RateProfile
from testkit.load.progress import ProgressCallback, ProgressOption, ProgressSnapshot, resolve_progress
from testkit.load.result import LoadResult
from testkit.percentiles import HistogramSpec

__all__ = ["run_multi_process"]

StartMethod = Literal["spawn", "forkserver"]
_NS_PER_S = 1_000_000_000
_POLL_S = 0.2


@dataclass(frozen=True)
class _WorkerPlan:
    """Everything a worker needs, in one picklable object."""

    index: int
    count: int
    factory: str | OperationFactory
    factory_args: tuple[Any, ...]
    profile: RateProfile
    max_in_flight: int
    late_tolerance_s: float
    drain_timeout_s: float
    spec: HistogramSpec
    report_progress: bool
    progress_interval_s: float
    go_timeout_s: float


def run_multi_process(
    factory: str | OperationFactory,
    profile: RateProfile,
    *,
    processes: int = 2,
    factory_args: tuple[Any, ...] = (),
    start_method: StartMethod = "spawn",
    max_in_flight: int = 10_000,
    late_tolerance_s: float = 0.005,
    drain_timeout_s: float = 30.0,
    spec: HistogramSpec | None = None,
    progress: ProgressOption = "auto",
    progress_interval_s: float = 1.0,
    startup_timeout_s: float = 60.0,
    start_delay_s: float = 0.05,
) -> LoadResult:
    """Run ``profile`` open-loop from ``processes`` workers and merge what they measured.

    ``factory(*factory_args)`` is called once in each worker and must return the operation (an async or
    plain zero-argument callable). ``max_in_flight`` applies per worker. Workers get ``startup_timeout_s``
    to import and build their operation; then all start ``start_delay_s`` later on a shared clock.
    Raises :class:`WorkerFailed` (with the worker's traceback) if any worker fails; the others are stopped.
    """
    check_positive_int("processes", processes)
    if start_method not in ("spawn", "forkserver"):
        raise LoadConfigError(f"start_method must be 'spawn' or 'forkserver', got {start_method!r}")
    if not isinstance(profile, RateProfile):
        raise LoadConfigError(f"profile must be a RateProfile, got {type(profile).__name__}")
    if isinstance(factory, str):
        resolve_factory(factory)  # fail here, with a clear error, rather than in every worker
    elif not callable(factory):
        raise LoadConfigError(f"factory must be 'module:function' or a picklable callable, got {factory!r}")
    check_positive_int("max_in_flight", max_in_flight)
    for name, value in (("startup_timeout_s", startup_timeout_s), ("progress_interval_s", progress_interval_s)):
        check_seconds(name, value)
    for name, value in (("late_tolerance_s", late_tolerance_s), ("drain_timeout_s", drain_timeout_s)):
        check_seconds(name, value, allow_zero=True)
    check_seconds("start_delay_s", start_delay_s, allow_zero=True)
    spec = spec or HistogramSpec()
    reporter = resolve_progress(progress, f"open loop x{processes}")
    plans = [
        _WorkerPlan(
            index, processes, factory, tuple(factory_args), profile, max_in_flight, late_tolerance_s,
            drain_timeout_s, spec, reporter is not None, progress_interval_s, startup_timeout_s,
        )
        for index in range(processes)
    ]
    context: Any = multiprocessing.get_context(start_method)
    messages: Any = context.Queue()
    go = context.Event()
    start_at = context.Value("q", 0)
    workers = [
        context.Process(target=_worker_main, args=(plan, messages, go, start_at), name=f"testkit-load-{plan.index}")
        for plan in plans
    ]
    try:
        for worker in workers:
            worker.start()
        pids = _await_ready(workers, messages, startup_timeout_s)
        start_ns = monotonic_ns() + int(start_delay_s * _NS_PER_S)
        start_at.value = start_ns
        go.set()
        limit_s = start_delay_s + profile.duration_s + drain_timeout_s + startup_timeout_s
        parts = _collect_results(workers, messages, limit_s, reporter, start_ns, profile.duration_s)
    except BaseException:
        _stop(workers, grace_s=0.0)  # a failed or interrupted run must not leave workers offering load
        raise
    finally:
        _stop(workers, grace_s=5.0)
        messages.close()
        messages.join_thread()
    results = [LoadResult.from_dict(parts[index]) for index in range(processes)]
    merged = LoadResult.merge(results, mode="multi_process", spec=spec)
    merged.params.update(
        {
            "processes": processes,
            "start_method": start_method,
            "worker_pids": [pids[index] for index in range(processes)],
            "worker_completed": [result.completed for result in results],
            "profile": repr(profile),
            "expected_count": profile.expected_count(),
            "max_in_flight_per_worker": max_in_flight,
            "late_tolerance_s": late_tolerance_s,
        }
    )
    if reporter is not None:
        reporter(
            ProgressSnapshot(
                merged.duration_s, profile.duration_s, merged.offered, merged.completed, merged.errors, 0,
                merged.late_starts, merged.dropped_starts, final=True,
            )
        )
    return merged


def _await_ready(workers: list[Any], messages: Any, timeout_s: float) -> dict[int, int]:
    pids: dict[int, int] = {}
    deadline = monotonic() + timeout_s
    while len(pids) < len(workers):
        message = _next_message(workers, messages, deadline, "start up")
        kind, index, payload = message
        if kind == "ready":
            pids[index] = payload
        elif kind == "error":
            raise WorkerFailed(f"load worker {index} failed while starting:\n{payload}")
    return pids


def _collect_results(
    workers: list[Any], messages: Any, limit_s: float, reporter: ProgressCallback | None, start_ns: int,
    planned_s: float,
) -> dict[int, dict[str, Any]]:
    parts: dict[int, dict[str, Any]] = {}
    latest: dict[int, ProgressSnapshot] = {}
    deadline = monotonic() + limit_s
    while len(parts) < len(workers):
        kind, index, payload = _next_message(workers, messages, deadline, "finish", finished=set(parts))
        if kind == "result":
            parts[index] = payload
        elif kind == "error":
            raise WorkerFailed(f"load worker {index} failed:\n{payload}")
        elif kind == "progress" and reporter is not None:
            latest[index] = payload
            reporter(
                ProgressSnapshot(
                    elapsed_s=(monotonic_ns() - start_ns) / _NS_PER_S,
                    planned_s=planned_s,
                    offered=sum(s.offered for s in latest.values()),
                    completed=sum(s.completed for s in latest.values()),
                    errors=sum(s.errors for s in latest.values()),
                    in_flight=sum(s.in_flight for s in latest.values()),
                    late_starts=sum(s.late_starts for s in latest.values()),
                    dropped_starts=sum(s.dropped_starts for s in latest.values()),
                )
            )
    return parts


def _next_message(
    workers: list[Any], messages: Any, deadline: float, stage: str, finished: set[int] | None = None
) -> tuple[str, int, Any]:
    """The next message from any worker; a worker that died without reporting is an error, not a hang."""
    while True:
        try:
            return messages.get(timeout=_POLL_S)  # type: ignore[no-any-return]
        except queue.Empty:
            pass
        for index, worker in enumerate(workers):
            if worker.exitcode is not None and worker.exitcode != 0 and index not in (finished or set()):
                try:  # its last words may still be in the pipe
                    return messages.get(timeout=1.0)  # type: ignore[no-any-return]
                except queue.Empty:
                    raise WorkerFailed(
                        f"load worker {index} (pid {worker.pid}) exited with code {worker.exitcode} "
                        f"before it could {stage}"
                    ) from None
        if monotonic() > deadline:
            raise WorkerFailed(f"load workers did not {stage} in time")


def _stop(workers: list[Any], grace_s: float) -> None:
    """Join our own worker processes (by handle); kill those still running after ``grace_s``."""
    for worker in workers:
        if worker.pid is not None:
            worker.join(timeout=grace_s)
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            worker.kill()
            worker.join(timeout=5.0)


def _worker_main(plan: _WorkerPlan, messages: Any, go: Any, start_at: Any) -> None:
    """Entry point of a worker process (module level so ``spawn`` can import it)."""
    try:
        operation = resolve_factory(plan.factory)(*plan.factory_args)
        messages.put(("ready", plan.index, os.getpid()))
        if not go.wait(plan.go_timeout_s):
            raise WorkerFailed("the parent never gave the start signal")

        def report(snapshot: ProgressSnapshot) -> None:
            if not snapshot.final:
                messages.put(("progress", plan.index, snapshot))

        result = asyncio.run(
            run_open_loop(
                operation,
                plan.profile.shard(plan.index, plan.count),
                max_in_flight=plan.max_in_flight,
                late_tolerance_s=plan.late_tolerance_s,
                drain_timeout_s=plan.drain_timeout_s,
                spec=plan.spec,
                progress=report if plan.report_progress else None,
                progress_interval_s=plan.progress_interval_s,
                start_ns=int(start_at.value),
            )
        )
        result.params["pid"] = os.getpid()
        messages.put(("result", plan.index, result.to_dict(histograms=True, timeline_histograms=True)))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        messages.put(("error", plan.index, traceback.format_exc()))
        raise
