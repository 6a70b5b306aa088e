"""Load generation that measures honestly: planned arrivals, open and closed loops, many processes.

Typical use::

    from testkit.load import LoadRunner, PoissonArrivals

    result = LoadRunner().open_loop(store_append, PoissonArrivals(rate=2_000, duration=30, seed=7))
    assert result.latency.summary().p99_ns < 50_000_000
"""

from testkit.load.closed_loop import run_closed_loop
from testkit.load.errors import InvalidProfile, LoadConfigError, LoadError, OperationFactoryError, WorkerFailed
from testkit.load.multiprocess import run_multi_process
from testkit.load.open_loop import run_open_loop
from testkit.load.operation import Operation, OperationFactory, resolve_factory
from testkit.load.profiles import (
    Arrivals,
    Bursts,
    BusinessHours,
    ConstantRate,
    PiecewiseRate,
    PoissonArrivals,
    Ramp,
    RateProfile,
    ShardedProfile,
    Steps,
)
from testkit.load.progress import ProgressCallback, ProgressOption, ProgressSnapshot, TerminalProgress
from testkit.load.result import LoadResult
from testkit.load.runner import LoadRunner
from testkit.load.timeline import TimelinePoint, merge_timelines

__all__ = [
    "Arrivals",
    "Bursts",
    "BusinessHours",
    "ConstantRate",
    "InvalidProfile",
    "LoadConfigError",
    "LoadError",
    "LoadResult",
    "LoadRunner",
    "Operation",
    "OperationFactory",
    "OperationFactoryError",
    "PiecewiseRate",
    "PoissonArrivals",
    "ProgressCallback",
    "ProgressOption",
    "ProgressSnapshot",
    "Ramp",
    "RateProfile",
    "ShardedProfile",
    "Steps",
    "TerminalProgress",
    "TimelinePoint",
    "WorkerFailed",
    "merge_timelines",
    "resolve_factory",
    "run_closed_loop",
    "run_multi_process",
    "run_open_loop",
]
