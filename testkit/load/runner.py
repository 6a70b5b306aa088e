"""One object that runs every kind of load with shared settings and remembers what it ran.

Made for fixtures: a pytest plugin builds one :class:`LoadRunner` per test with the session's histogram
settings and progress choice, the test calls ``open_loop`` / ``closed_loop`` / ``multi_process``, and at
teardown the plugin reads :attr:`LoadRunner.results` (or gets each one through ``on_result``) to report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from testkit.load.closed_loop import run_closed_loop
from testkit.load.errors import LoadConfigError
from testkit.load.multiprocess import StartMethod, run_multi_process
from testkit.load.open_loop import run_open_loop
from testkit.load.operation import Operation, OperationFactory
from testkit.load.profiles import RateProfile
from testkit.load.progress import ProgressOption
from testkit.load.result import LoadResult
from testkit.percentiles import HistogramSpec

__all__ = ["LoadRunner"]


class LoadRunner:
    """Facade over the open-loop, closed-loop and multi-process runners.

    Synchronous methods start their own event loop; inside a running loop use the ``*_async`` variants.
    """

    def __init__(
        self,
        *,
        spec: HistogramSpec | None = None,
        progress: ProgressOption = "auto",
        late_tolerance_s: float = 0.005,
        max_in_flight: int = 10_000,
        drain_timeout_s: float = 30.0,
        on_result: Callable[[LoadResult], None] | None = None,
    ) -> None:
        self.spec = spec or HistogramSpec()
        self.progress = progress
        self.late_tolerance_s = late_tolerance_s
        self.max_in_flight = max_in_flight
        self.drain_timeout_s = drain_timeout_s
        self.results: list[LoadResult] = []
        self._on_result = on_result

    # -- open loop ----------------------------------------------------------------------------------------
    async def open_loop_async(self, operation: Operation, profile: RateProfile, **options: Any) -> LoadResult:
        result = await run_open_loop(operation, profile, **self._open_loop_defaults(options))
        return self._keep(result)

    def open_loop(self, operation: Operation, profile: RateProfile, **options: Any) -> LoadResult:
        """Run ``operation`` open-loop on ``profile``; options override the runner's defaults."""
        _refuse_inside_event_loop("open_loop")
        return asyncio.run(self.open_loop_async(operation, profile, **options))

    # -- closed loop --------------------------------------------------------------------------------------
    async def closed_loop_async(self, operation: Operation, *, clients: int, **options: Any) -> LoadResult:
        options.setdefault("spec", self.spec)
        options.setdefault("progress", self.progress)
        result = await run_closed_loop(operation, clients=clients, **options)
        return self._keep(result)

    def closed_loop(self, operation: Operation, *, clients: int, **options: Any) -> LoadResult:
        """Run ``clients`` back-to-back loops of ``operation`` (``duration_s=`` and/or ``operations=``)."""
        _refuse_inside_event_loop("closed_loop")
        return asyncio.run(self.closed_loop_async(operation, clients=clients, **options))

    # -- multi-process ------------------------------------------------------------------------------------
    def multi_process(
        self,
        factory: str | OperationFactory,
        profile: RateProfile,
        *,
        processes: int = 2,
        start_method: StartMethod = "spawn",
        **options: Any,
    ) -> LoadResult:
        """Spread ``profile`` over ``processes`` workers; ``factory`` is ``"module:function"``."""
        result = run_multi_process(
            factory, profile, processes=processes, start_method=start_method, **self._open_loop_defaults(options)
        )
        return self._keep(result)

    # -- helpers ------------------------------------------------------------------------------------------
    def _open_loop_defaults(self, options: dict[str, Any]) -> dict[str, Any]:
        merged = {
            "spec": self.spec,
            "progress": self.progress,
            "late_tolerance_s": self.late_tolerance_s,
            "max_in_flight": self.max_in_flight,
            "drain_timeout_s": self.drain_timeout_s,
        }
        merged.update(options)
        return merged

    def _keep(self, result: LoadResult) -> LoadResult:
        self.results.append(result)
        if self._on_result is not None:
            self._on_result(result)
        return result


def _refuse_inside_event_loop(method: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise LoadConfigError(f"LoadRunner.{method}() cannot run inside an event loop; await {method}_async() instead")
