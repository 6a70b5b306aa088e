"""Benchmark of testkit's measuring machinery: what recording costs and what load the generator can hold.

Run from the repository root::

    python -m benchmarks.testkit_bench            # full: about 2 minutes
    python -m benchmarks.testkit_bench --quick    # smoke: about 30 seconds

Prints medians over ``--repeats`` runs (the machine is shared; single runs are noisy):

1. recording overhead per value of :class:`testkit.percentiles.LatencyRecorder` (and of raw hdrh);
2. the open-loop runner holding ``--rate`` ops/s (20,000) for ``--duration`` s (10) against an in-process
   no-op async target: achieved rate, late starts, start lag, CPU;
3. the multi-process runner offered more than one event loop can start (``--scaling-rate``), with 1 and 2
   worker processes: the rate each sustains, and the speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hdrh.histogram import HdrHistogram  # noqa: E402

from testkit.load import ConstantRate, LoadResult, run_multi_process, run_open_loop  # noqa: E402
from testkit.load.targets import noop  # noqa: E402
from testkit.percentiles import HOUR_NS, LatencyRecorder  # noqa: E402

NOOP_FACTORY = "testkit.load.targets:noop"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def bench_recording(values: int, repeats: int) -> dict[str, float]:
    """CPU nanoseconds per recorded value (CPU time, so other work on a shared machine does not inflate it):
    our wrapper, raw hdrh, and record_since (which also reads the clock)."""
    data = np.random.default_rng(1).lognormal(np.log(1e6), 1.2, values).astype(np.int64).tolist()

    def wrapper() -> float:
        recorder = LatencyRecorder()
        record = recorder.record
        start = time.process_time_ns()
        for value in data:
            record(value)
        return (time.process_time_ns() - start) / len(data)

    def raw() -> float:
        histogram = HdrHistogram(1, HOUR_NS, 3)
        record = histogram.record_value
        start = time.process_time_ns()
        for value in data:
            record(value)
        return (time.process_time_ns() - start) / len(data)

    def since() -> float:
        recorder = LatencyRecorder()
        record_since = recorder.record_since
        stamp = time.monotonic_ns()
        start = time.process_time_ns()
        for _ in range(len(data)):
            record_since(stamp)
        return (time.process_time_ns() - start) / len(data)

    def merge_and_encode() -> float:
        recorder = LatencyRecorder()
        for value in data[:10_000]:
            recorder.record(value)
        start = time.process_time_ns()
        LatencyRecorder.decode(recorder.encode()).merge(recorder)
        return (time.process_time_ns() - start) / 1e6

    names = ("record", "hdrh_record_value", "record_since", "encode_decode_merge_ms")
    results: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        results["record"].append(wrapper())
        results["hdrh_record_value"].append(raw())
        results["record_since"].append(since())
        results["encode_decode_merge_ms"].append(merge_and_encode())
    return {name: median(samples) for name, samples in results.items()}


def open_loop_figures(result: LoadResult, target_rate: float, cpu_s: float) -> dict[str, float]:
    lag = result.start_lag.summary()
    latency = result.latency.summary()
    return {
        "offered": result.offered,
        "completed": result.completed,
        "achieved_rate": result.achieved_rate,
        "achieved_vs_target_pct": 100.0 * result.achieved_rate / target_rate,
        "late_starts": result.late_starts,
        "late_starts_pct": 100.0 * result.late_starts / max(1, result.offered),
        "dropped_starts": result.dropped_starts,
        "late_pct_over_1ms": 100.0 * (1.0 - result.start_lag.fraction_at_or_below(1_000_000)),
        "late_pct_over_10ms": 100.0 * (1.0 - result.start_lag.fraction_at_or_below(10_000_000)),
        "start_lag_p50_ms": lag.p50_ns / 1e6,
        "start_lag_p99_ms": lag.p99_ns / 1e6,
        "start_lag_max_ms": lag.max_ns / 1e6,
        "latency_p50_ms": latency.p50_ns / 1e6,
        "latency_p99_ms": latency.p99_ns / 1e6,
        "cpu_pct_of_one_core": 100.0 * cpu_s / result.duration_s,
        "duration_s": result.duration_s,
    }


def bench_open_loop(rate: float, duration: float, repeats: int) -> list[dict[str, float]]:
    runs = []
    for _ in range(repeats):
        cpu_before = time.process_time()
        result = asyncio.run(run_open_loop(noop(), ConstantRate(rate, duration), progress=None))
        runs.append(open_loop_figures(result, rate, time.process_time() - cpu_before))
    return runs


def bench_scaling(rate: float, duration: float, repeats: int) -> dict[int, list[dict[str, float]]]:
    """Offer more than one process can start, so each configuration shows the rate it sustains."""
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(repeats):
        for processes in (1, 2):
            wall = time.monotonic()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = run_multi_process(NOOP_FACTORY, ConstantRate(rate, duration), processes=processes, progress=None)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            figures = open_loop_figures(result, rate, cpu_s=0.0)
            figures.pop("cpu_pct_of_one_core")
            figures["wall_s_including_startup"] = time.monotonic() - wall
            # CPU the workers got (start-up included): on a shared machine it says whether they could scale
            figures["worker_cpu_cores_used"] = cpu_s / figures["wall_s_including_startup"]
            runs[processes].append(figures)
    return runs


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: median([run[key] for run in runs]) for key in runs[0]}


def show(title: str, figures: dict[str, float], formats: dict[str, str] | None = None) -> None:
    print(f"\n{title}")
    for key, value in figures.items():
        fmt = (formats or {}).get(key, ",.3f" if isinstance(value, float) else ",")
        print(f"  {key:32} {value:{fmt}}")


def run_recording(args: argparse.Namespace, report: dict[str, Any]) -> None:
    recording = bench_recording(200_000 if args.quick else 1_000_000, args.repeats)
    report["recording_ns_per_value"] = recording
    show("1. recording overhead (CPU ns per value; encode+decode+merge of a 10k-value histogram in CPU ms)", recording,
         {k: ",.0f" for k in recording if k != "encode_decode_merge_ms"})


def run_open_loop_part(args: argparse.Namespace, report: dict[str, Any]) -> None:
    open_runs = bench_open_loop(args.rate, args.duration, args.repeats)
    report["open_loop"] = {"rate": args.rate, "duration_s": args.duration, "runs": open_runs,
                           "median": medians(open_runs)}
    show(f"2. open loop, {args.rate:,.0f} ops/s for {args.duration:g} s, in-process no-op target (median)",
         medians(open_runs))
    for index, run in enumerate(open_runs):
        print(f"     run {index + 1}: achieved {run['achieved_rate']:,.0f}/s "
              f"({run['achieved_vs_target_pct']:.2f} %), late {run['late_starts_pct']:.3f} % "
              f"(>1 ms {run['late_pct_over_1ms']:.2f} %, >10 ms {run['late_pct_over_10ms']:.3f} %), "
              f"start lag p99 {run['start_lag_p99_ms']:.2f} ms, cpu {run['cpu_pct_of_one_core']:.0f} %")


def run_scaling(args: argparse.Namespace, report: dict[str, Any]) -> None:
    scaling = bench_scaling(args.scaling_rate, args.scaling_duration, args.repeats)
    report["multi_process"] = {"offered_rate": args.scaling_rate, "duration_s": args.scaling_duration,
                               "runs": {str(k): v for k, v in scaling.items()},
                               "median": {str(k): medians(v) for k, v in scaling.items()}}
    one, two = medians(scaling[1]), medians(scaling[2])
    print(f"\n3. multi-process runner offered {args.scaling_rate:,.0f} ops/s for {args.scaling_duration:g} s "
          f"(more than one event loop can start), no-op target (median)")
    print(f"  {'':32} {'1 process':>14} {'2 processes':>14}")
    for key in ("achieved_rate", "late_starts_pct", "start_lag_p99_ms", "duration_s",
                "wall_s_including_startup", "worker_cpu_cores_used"):
        print(f"  {key:32} {one[key]:>14,.2f} {two[key]:>14,.2f}")
    speedup = two["achieved_rate"] / one["achieved_rate"] if one["achieved_rate"] else float("nan")
    print(f"  {'speed-up (2 vs 1 process)':32} {speedup:>14.2f}x")
    report["multi_process"]["speedup"] = speedup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs for a smoke check")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20_000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--scaling-rate", type=float, default=300_000.0)
    parser.add_argument("--scaling-duration", type=float, default=4.0)
    parser.add_argument("--only", choices=("recording", "open-loop", "scaling"), action="append",
                        help="run only this part (repeatable); default: all three")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.duration, args.scaling_duration = 1, 3.0, 2.0
    print(f"testkit benchmark: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f} (other work competes for the CPU); "
          f"medians of {args.repeats} run(s)")
    report: dict[str, Any] = {}

    parts = set(args.only or ("recording", "open-loop", "scaling"))
    if "recording" in parts:
        run_recording(args, report)
    if "open-loop" in parts:
        run_open_loop_part(args, report)
    if "scaling" in parts:
        run_scaling(args, report)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
