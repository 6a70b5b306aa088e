"""The master's merged view as the kit's results document (``testkit.results``).

A distributed run becomes one ``TestRecord``: throughput, pooled intended-time and sent-time
percentiles (with the encoded histograms, so the regression gate can test distributions), Locust's
own figures for comparison, a per-second timeline, and each worker's counts. The history verdict and
the server's memory are added afterwards by whoever can reach the journals and the server.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testkit.load.locust.recording import RunAggregate
from testkit.percentiles import LatencyRecorder
from testkit.results import Metric, RunResults, Target, TestRecord, Timeline

__all__ = ["ADR_004_TARGETS_MS", "RESULTS_FILE", "build_results", "results_path"]

RESULTS_FILE = "results.json"

#: ADR-004's latency lines (ms) by request kind: single appends, batches.
ADR_004_TARGETS_MS: Mapping[str, Mapping[str, float]] = {
    "single": {"p50": 2.0, "p99": 10.0, "p99.9": 100.0},
    "batch": {"p99": 50.0},
}

_PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))


#: the planned rate is met when the steady rate is within 1 % of it (agents' phases make whole seconds uneven)
_RATE_TOLERANCE = 0.99


def _steady_rate(seconds: Mapping[int, list[int]]) -> float:
    """Events per second over the whole seconds of the run: the first and last (partial) seconds left out."""
    ordered = sorted(seconds)
    inner = ordered[1:-1] if len(ordered) > 2 else ordered
    if not inner:
        return 0.0
    return sum(seconds[s][1] for s in inner) / float(inner[-1] - inner[0] + 1)


def _latency_metrics(prefix: str, recorder: LatencyRecorder, targets: Mapping[str, float]) -> dict[str, Metric]:
    metrics: dict[str, Metric] = {}
    encoded = recorder.encode()
    for label, percentile in _PERCENTILES:
        value = recorder.percentile(percentile) / 1e6 if recorder.count else 0.0
        bound = targets.get(label)
        metrics[f"{prefix}_{label}_ms"] = Metric(value, "ms", "lower", histogram=encoded, histogram_unit="ns",
                                                 target=None if bound is None else Target("<=", bound))
    return metrics


def build_results(aggregate: RunAggregate, *, plan: Mapping[str, Any], locust_figures: Mapping[str, float],
                  users: int, host: str, command: Sequence[str] | None = None,
                  target_events_per_s: float | None = None) -> RunResults:
    """The run as a results document; latency judged against ADR-004 for the request kind the plan sends."""
    intended, service, totals = aggregate.merged()
    seconds = sorted(aggregate.seconds)
    active_s = float(seconds[-1] - seconds[0] + 1) if seconds else 0.0
    kind = "single" if int(plan.get("batch", 1)) == 1 else "batch"
    metrics = {"throughput_events_per_s": Metric(
        _steady_rate(aggregate.seconds), "events/s", "higher",
        target=None if target_events_per_s is None else Target(">=", _RATE_TOLERANCE * target_events_per_s))}
    metrics.update(_latency_metrics("intended", intended, ADR_004_TARGETS_MS[kind]))
    metrics.update(_latency_metrics("sent", service, {}))
    server = aggregate.merged_server()
    if server.count:  # the server's own account (Server-Timing), where it gave one: reported, not judged
        metrics.update(_latency_metrics("server", server, {}))
    for name, value in locust_figures.items():
        metrics[f"locust_{name}"] = Metric(float(value), "ms" if name.endswith("_ms") else "count", "lower")
    origin = seconds[0] if seconds else 0
    aggregate.settle()
    per_second = [aggregate.second_latency.get(s) for s in seconds]
    timeline = Timeline(
        "events per second and latency from the intended start (all workers)", [float(s - origin) for s in seconds],
        {"completed": [float(aggregate.seconds[s][1]) for s in seconds],
         "requests": [float(aggregate.seconds[s][0]) for s in seconds],
         "errors": [float(aggregate.seconds[s][2]) for s in seconds],
         "p50_ms": [None if f is None else f.p50_ns / 1e6 for f in per_second],
         "p99_ms": [None if f is None else f.p99_ns / 1e6 for f in per_second]},
        {"completed": "events/s", "requests": "requests/s", "errors": "requests/s", "p50_ms": "ms", "p99_ms": "ms"},
    )
    if target_events_per_s is not None:  # the plan's rate, drawn next to what was achieved
        timeline.series["offered"] = [float(target_events_per_s)] * len(seconds)
        timeline.units["offered"] = "events/s"
    parameters = {
        "engine": "locust", "host": host, "users": users, "workers": len(aggregate.workers), "plan": dict(plan),
        "first_wall_second": origin,  # the timeline's t = 0, in seconds since the epoch (to line other samples up)
        "complete": aggregate.complete, "workers_finished": len(aggregate.finished),
        "totals": totals.to_dict(), "intended_count": intended.count, "sent_count": service.count,
        "server_timed_count": server.count,
        "unplotted_requests": aggregate.unplotted_requests,
        "per_worker": {worker_id: {"intended_count": worker.intended.count, **worker.totals.to_dict()}
                       for worker_id, worker in sorted(aggregate.workers.items())},
    }
    results = RunResults.start(list(sys.argv if command is None else command), seed=int(plan.get("seed", 0)))
    passed = aggregate.complete and all(metric.target_met is not False for metric in metrics.values())
    results.add(TestRecord(f"locust::{kind}-appends[{users} agents]", "passed" if passed else "failed",
                           active_s, sut=host, parameters=parameters, seed=int(plan.get("seed", 0)),
                           metrics=metrics, timelines=[timeline]))
    results.finish("passed" if passed else "failed")
    return results


def results_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / RESULTS_FILE
