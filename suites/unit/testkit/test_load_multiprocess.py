"""Multi-process runner: real worker processes share one schedule and their histograms merge exactly."""

from __future__ import annotations

import os

import pytest

from testkit.load import (
    ConstantRate,
    LoadConfigError,
    LoadRunner,
    OperationFactoryError,
    PoissonArrivals,
    ProgressSnapshot,
    WorkerFailed,
    run_multi_process,
)
from testkit.percentiles import LatencyRecorder


def test_two_processes_share_the_schedule_and_merge_their_results() -> None:
    profile = PoissonArrivals(rate=600, duration=1.0, seed=17)
    planned = len(list(profile))
    snapshots: list[ProgressSnapshot] = []
    result = run_multi_process(
        "testkit.load.targets:noop", profile, processes=2, progress=snapshots.append, progress_interval_s=0.3
    )
    pids = result.params["worker_pids"]
    assert len(set(pids)) == 2 and os.getpid() not in pids  # really two other processes
    shares = [len(list(profile.shard(index, 2))) for index in range(2)]
    assert result.params["worker_completed"] == shares
    assert result.offered == result.completed == planned
    assert result.errors == result.dropped_starts == result.unfinished == 0
    assert result.latency.count == result.service_time.count == result.start_lag.count == planned
    # the merged timeline adds up, second by second, and its percentiles come from merged histograms
    assert sum(p.offered for p in result.timeline) == planned
    assert sum(p.completed for p in result.timeline) == planned
    per_second = LatencyRecorder().merge(*(LatencyRecorder.decode(p.histogram) for p in result.timeline if p.histogram))
    assert per_second == result.latency
    assert result.mode == "multi_process" and result.params["processes"] == 2
    assert snapshots and snapshots[-1].final and snapshots[-1].completed == planned


def test_a_failing_worker_raises_worker_failed_with_its_traceback() -> None:
    with pytest.raises(WorkerFailed, match="LoadConfigError"):
        # the factory itself rejects its argument inside each worker
        run_multi_process("testkit.load.targets:sleeper", ConstantRate(10, 0.5), processes=2,
                          factory_args=("not a number",), progress=None)


def _exits_abruptly() -> None:
    """An operation factory whose process dies without a word, as a segfaulting extension would."""
    os._exit(3)


def test_a_worker_that_dies_silently_is_reported_not_waited_for() -> None:
    with pytest.raises(WorkerFailed, match="exited with code 3"):
        run_multi_process(f"{__name__}:_exits_abruptly", ConstantRate(10, 0.5), processes=2, progress=None)


def test_bad_factory_references_fail_fast_in_the_parent() -> None:
    for reference in ("no_colon", "testkit.load.targets:missing", "testkit.nowhere:noop", ":noop",
                      "testkit.load.targets:__doc__"):
        with pytest.raises(OperationFactoryError):
            run_multi_process(reference, ConstantRate(10, 0.5), progress=None)
    with pytest.raises(LoadConfigError):
        run_multi_process("testkit.load.targets:noop", ConstantRate(10, 0.5),
                          start_method="fork", progress=None)  # type: ignore[arg-type]
    with pytest.raises(LoadConfigError):
        run_multi_process("testkit.load.targets:noop", ConstantRate(10, 0.5), processes=0, progress=None)


def test_load_runner_multi_process_uses_forkserver_too() -> None:
    runner = LoadRunner(progress=None)
    result = runner.multi_process("testkit.load.targets:noop", ConstantRate(200, 0.5), processes=2,
                                  start_method="forkserver")
    assert result.completed == 100 and runner.results == [result]
    assert result.params["start_method"] == "forkserver"
