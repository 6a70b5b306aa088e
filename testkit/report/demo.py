"""Crafted, seeded results that look like a real chaos + perf + load run, and a benchmark of rendering them.

The unit tests render these to check every section, and ``python -m testkit.report.demo --tests 5000``
prints how long a report of that size takes to render and how big the file is (a printed figure, not a timed
test). Documents are built with :mod:`testkit.results` and judged with :mod:`testkit.regression` and
:mod:`testkit.memory`, so they follow the real schema and the real verdict rules.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from testkit.memory import leak_verdict
from testkit.op_timeline import latency_bins
from testkit.percentiles import LatencyRecorder
from testkit.regression import Baseline, Comparison, compare
from testkit.results import (
    ChaosMatrix,
    FaultRecord,
    MemoryRecord,
    Metric,
    OpTimeline,
    RunResults,
    Target,
    TestRecord,
    Timeline,
    VerdictRecord,
)

__all__ = ["FAULT_KINDS", "INVARIANTS", "crafted_comparison", "crafted_run", "main"]

FAULT_KINDS = ("sigkill", "power_cut", "disk_full", "corruption", "fd_exhaustion", "io_error")
INVARIANTS = ("no_lost_ack", "no_duplicate", "order", "no_phantom", "prefix_no_holes")
_MS = 1_000_000


def crafted_run(
    *,
    tests: int = 200,
    seed: int = 1,
    chaos: bool = True,
    perf: bool = True,
    load: bool = True,
    memory: bool = True,
    failures: bool = True,
    perf_shift: float = 1.0,
) -> dict[str, Any]:
    """A results document with about ``tests`` tests. ``perf_shift`` multiplies every latency (1.2 = 20 %
    slower) so that two crafted runs make a baseline and a regressed current run."""
    rng = np.random.default_rng(seed)
    run = RunResults.start(["pytest", "suites/chaos", "suites/perf", "suites/unit"], seed=seed)
    if chaos:
        chaos_tests, matrix = _chaos_tests(rng, failures)
        for record in chaos_tests:
            run.add(record)
        run.chaos_matrix = matrix
        run.skipped_mechanisms = {
            "tc netem": "qdisc kind is unknown: this kernel has no netem module",
            "dm-flakey": "no /dev/mapper/control",
        }
    if perf:
        for record in _perf_tests(rng, perf_shift):
            run.add(record)
    if load:
        run.add(_load_test(rng))
    if memory:
        run.memory = _memory_record(rng)
    remaining = max(0, tests - len(run.tests))
    for record in _unit_tests(rng, remaining, failures):
        run.add(record)
    run.finish("failed" if failures else "passed")
    return run.to_dict()


def crafted_comparison(current: dict[str, Any], *, seed: int = 2, runs: int = 3) -> tuple[Comparison, Baseline]:
    """A baseline of ``runs`` crafted runs 25 % faster than ``current``'s perf figures, and the comparison."""
    baseline_runs = [
        RunResults.from_dict(crafted_run(seed=seed + i, tests=0, chaos=False, load=False, memory=False,
                                         failures=False, perf_shift=0.8))
        for i in range(runs)
    ]
    baseline = Baseline.from_results(*baseline_runs)
    return compare(baseline, RunResults.from_dict(current)), baseline


def _recorder(rng: np.random.Generator, median_ms: float, count: int, tail: float = 0.6) -> LatencyRecorder:
    recorder = LatencyRecorder()
    for value in rng.lognormal(np.log(median_ms * _MS), tail, count):
        recorder.record(max(1, int(value)))
    return recorder


def _chaos_tests(rng: np.random.Generator, failures: bool) -> tuple[list[TestRecord], ChaosMatrix]:
    records: list[TestRecord] = []
    cells: dict[str, dict[str, str]] = {}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for kind in FAULT_KINDS:
        cases = 0
        proven_total = 0
        for case in range(4):
            n = int(rng.integers(20, 60))
            proven = n if kind != "io_error" or case else n - 1
            cases += n
            proven_total += proven
            acknowledged = int(rng.integers(2_000, 9_000))
            timeline = _op_timeline(rng, kind, min(n, 12)) if case == 0 and kind in ("sigkill", "power_cut") else None
            records.append(TestRecord(
                op_timeline=timeline,
                nodeid=f"suites/chaos/test_{kind}.py::test_{kind}_recovers[lighthouse-{case}]",
                outcome="passed", duration=float(rng.uniform(1.0, 9.0)), sut="lighthouse",
                parameters={"store": "lighthouse", "case": case}, seed=int(rng.integers(1, 2**31)),
                faults=[FaultRecord(kind, i < proven, f"{kind} #{i}", (float(i), float(i) + 0.2)) for i in range(n)],
                verdicts=[VerdictRecord("durability", True, {"acknowledged": acknowledged,
                                                             "acknowledged_present": acknowledged, "lost": 0})],
            ))
        cells[kind] = {invariant: "pass" for invariant in INVARIANTS}
        counts[kind] = {inv: {"cases": cases, "proven": proven_total, "violations": 0} for inv in INVARIANTS}
    caught_timeline = _op_timeline(rng, "power_cut", 6, lost=7)
    marks = caught_timeline.marks
    lost = [{"kind": "lost", "event_ids": [f"evt-{i:06d}"], "sequences": [9_000 + i],
             "detail": "acknowledged, absent after recovery",
             "events": [{"event_id": f"evt-{i:06d}", "worker": caught_timeline.workers[marks[i][2]],
                         "invoked_s": marks[i][0], "answer": "acknowledged", "answered_s": marks[i][1],
                         "read_back": "absent"}]} for i in range(7)]
    records.append(TestRecord(
        nodeid="suites/chaos/test_sensitivity.py::test_power_cut_catches_loss[durability_none]",
        outcome="passed", duration=4.2, sut="lighthouse-durability-none", parameters={"durability": "none"}, seed=99,
        faults=[FaultRecord("power_cut", True, "FS_IOC_SHUTDOWN no-flush", (1.0, 1.1))],
        verdicts=[VerdictRecord("durability", False, {"acknowledged": 500, "lost": 7}, lost)],
        op_timeline=caught_timeline,
        expectations=[{"fault": "power_cut", "expected_unsafe": True, "caught": True, "attempts": 6, "catches": 3,
                       "catch_rate": 0.5, "lost_acknowledged": 7}],
    ))
    if failures:
        duplicates = [{"kind": "no_duplicate", "event_ids": ["evt-004211", "evt-004212"], "sequences": [4211, 4212],
                       "detail": "recovered twice after torn batch replay"}]
        records.append(TestRecord(
            nodeid="suites/chaos/test_corruption.py::test_torn_tail_every_byte[lighthouse-frame-3]",
            outcome="failed", duration=2.7, sut="lighthouse", parameters={"store": "lighthouse"}, seed=424242,
            faults=[FaultRecord("corruption", True, "torn tail at byte 17 of the last frame", (0.5, 0.6))],
            verdicts=[VerdictRecord("durability", False, {"acknowledged": 1200, "no_duplicate": 2}, duplicates)],
        ))
        cells["corruption"]["no_duplicate"] = "fail"
        counts["corruption"]["no_duplicate"]["violations"] = 2
    records.append(TestRecord(
        nodeid="suites/chaos/test_network.py::test_partition[lighthouse]", outcome="skipped", duration=0.0,
        sut="lighthouse", skipped_reason="network namespaces need CAP_NET_ADMIN"))
    by_sut = {kind: {"lighthouse": sum(c["violations"] for c in counts[kind].values())} for kind in FAULT_KINDS}
    return records, ChaosMatrix(list(FAULT_KINDS), list(INVARIANTS), cells, counts, by_sut)


def _op_timeline(rng: np.random.Generator, kind: str, faults: int, *, lost: int = 0) -> OpTimeline:
    """A campaign's operations: four clients per incarnation appending for a while, one fault ending each
    incarnation (everything in flight then is unknown), a recovery after it; ``lost`` acknowledged operations
    just before the last fault are marked as named by a violation."""
    ops: list[list[Any]] = []
    workers: list[str] = []
    fault_windows: list[list[Any]] = []
    cycles: list[list[float]] = []
    t = 0.0
    acknowledged = 0
    for incarnation in range(faults):
        life = float(rng.uniform(0.2, 0.6))
        for client in range(4):
            workers.append(f"i{incarnation}-c{client}")
            at = t + float(rng.uniform(0.0, 0.02))
            while at < t + life:
                latency = float(rng.lognormal(np.log(0.004), 0.5))
                done = at + latency
                status = 1 if done < t + life else 3
                ops.append([round(at, 4), round(latency, 6) if status == 1 else None, status, len(workers) - 1])
                acknowledged += status == 1
                at = done
        fault_windows.append([round(t + life, 4), round(t + life + 0.01, 4), kind])
        recovery = float(rng.lognormal(np.log(0.03), 0.3))
        t += life + 0.01 + recovery
        cycles.append([round(t, 4), round(recovery, 6), acknowledged, acknowledged])
    marks: list[list[Any]] = []
    if lost:
        last_start = fault_windows[-1][0]
        acked = [op for op in ops if op[2] == 1 and op[0] + op[1] <= last_start][-lost:]
        marks = [[op[0], round(op[0] + op[1], 4), op[3], "lost"] for op in acked]
        cycles[-1][3] = cycles[-1][2] - lost
    ordered = sorted(ops, key=lambda op: op[0])
    t_start = np.asarray([op[0] for op in ordered])
    latency = np.asarray([op[1] if op[1] is not None else 0.0 for op in ordered])
    status = np.asarray([op[2] for op in ordered], dtype=np.uint8)
    bins, bin_s = latency_bins(t_start, latency, status, status == 3)
    return OpTimeline(ops=ordered, workers=workers, bins=bins, bin_s=bin_s, faults=fault_windows, cycles=cycles,
                      marks=marks, total_ops=len(ordered))


def _perf_tests(rng: np.random.Generator, shift: float) -> list[TestRecord]:
    records = []
    profiles = {"lighthouse": (0.35, 0.5), "sqlite": (0.9, 0.7)}
    for sut, (median_ms, tail) in profiles.items():
        append = _recorder(rng, median_ms * shift, 8_000, tail)
        get = _recorder(rng, 0.05 * shift, 3_000, 0.4)
        ours = sut == "lighthouse"
        records.append(TestRecord(
            nodeid=f"suites/perf/test_append.py::test_append_latency[{sut}]", outcome="passed", duration=12.0,
            sut=sut, parameters={"store": sut},
            metrics={
                "append.p50": Metric(append.percentile(50) / _MS, "ms", "lower", histogram=append.encode(),
                                     histogram_unit="ns", target=Target("<=", 2.0) if ours else None),
                "append.p99": Metric(append.percentile(99) / _MS, "ms", "lower",
                                     target=Target("<=", 10.0) if ours else None),
                "get_by_id.p99": Metric(get.percentile(99) / _MS, "ms", "lower", histogram=get.encode(),
                                        histogram_unit="ns", target=Target("<=", 1.0) if ours else None),
            }))
        rates = list(rng.normal(26_000 if ours else 7_400, 600, 30) / shift)
        records.append(TestRecord(
            nodeid=f"suites/perf/test_throughput.py::test_sustained_rate[{sut}]", outcome="passed", duration=30.0,
            sut=sut, parameters={"store": sut},
            metrics={"sustained_rate": Metric(float(np.median(rates)), "events/s", "higher", samples=rates,
                                              target=Target(">=", 10_000.0) if ours else None)}))
        replay = list(rng.normal(0.4 if ours else 0.8, 0.02, 7) * shift)
        records.append(TestRecord(
            nodeid=f"suites/perf/test_replay.py::test_replay_100k[{sut}]", outcome="passed", duration=6.0,
            sut=sut, parameters={"store": sut},
            metrics={"replay_100k": Metric(float(np.median(replay)), "s", "lower", samples=replay,
                                           target=Target("<=", 10.0) if ours else None),
                     "bytes_per_event": Metric(310.0 if ours else 420.0, "B/event", "lower",
                                               target=Target("<=", 1_000.0) if ours else None)}))
    return records


def _load_test(rng: np.random.Generator) -> TestRecord:
    seconds = np.arange(0, 60, dtype=float)
    offered = np.full(60, 5_000.0)
    completed = rng.normal(5_000, 60, 60)
    errors = np.zeros(60)
    p50 = rng.normal(0.4, 0.02, 60) * _MS
    p99 = rng.normal(2.0, 0.2, 60) * _MS
    windows = [("sigkill", 20.0, 23.0), ("sigstop", 40.0, 41.5)]
    for _, start, end in windows:
        inside = (seconds >= start) & (seconds <= end)
        completed[inside] *= 0.1
        errors[inside] = rng.integers(200, 900, int(inside.sum()))
        p99[inside] *= 400
        p50[inside] *= 50
    timeline = Timeline("open-loop 5,000 ops/s", list(seconds), {
        "offered": list(offered), "completed": list(completed), "errors": list(errors),
        "p50_ns": list(p50), "p99_ns": list(p99)}, {"p50_ns": "ns", "p99_ns": "ns", "offered": "ops/s"})
    return TestRecord(
        nodeid="suites/load/test_open_loop.py::test_latency_under_faults[lighthouse]", outcome="passed",
        duration=61.0, sut="lighthouse", parameters={"store": "lighthouse"}, seed=7,
        timelines=[timeline],
        faults=[FaultRecord(kind, True, f"{kind} of the server", (start, end)) for kind, start, end in windows])


def _memory_record(rng: np.random.Generator) -> MemoryRecord:
    t = np.arange(0, 300, 1.0)
    rss = 180e6 + 40e6 * (1 - np.exp(-t / 8)) + rng.normal(0, 0.1e6, len(t))
    samples = [(float(a), int(b)) for a, b in zip(t, rss, strict=True)]
    verdict = leak_verdict(samples)
    return MemoryRecord(peak_rss_bytes=int(rss.max()), samples=samples, leak=verdict.to_dict())


def _unit_tests(rng: np.random.Generator, count: int, failures: bool) -> list[TestRecord]:
    modules = ("test_checker", "test_percentiles", "test_load", "test_data", "test_faults", "test_segments",
               "test_index", "test_server", "test_bridge", "test_snapshots")
    records = []
    for i in range(count):
        module = modules[i % len(modules)]
        draw = rng.random()
        outcome, reason = "passed", None
        if draw < 0.03:
            outcome, reason = "skipped", "needs root for loop devices" if draw < 0.015 else "gcc not installed"
        elif failures and i == count // 2:
            outcome = "failed"
        records.append(TestRecord(
            nodeid=f"suites/unit/{module}.py::test_case_{i:05d}", outcome=outcome,
            duration=float(rng.lognormal(-4, 1.2)), seed=int(rng.integers(1, 2**31)), skipped_reason=reason))
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="render a crafted run and print the time and size")
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("reports/demo/index.html"))
    parser.add_argument("--repeat", type=int, default=3, help="renders to time; the median is printed")
    args = parser.parse_args(argv)
    from testkit.report import render_report

    current = crafted_run(tests=args.tests)
    comparison, baseline = crafted_comparison(current)
    timings = []
    for _ in range(max(1, args.repeat)):
        started = time.perf_counter()
        path = render_report(current, args.out, comparison=comparison, baseline=baseline)
        timings.append(time.perf_counter() - started)
    size = path.stat().st_size
    print(f"{len(current['tests'])} tests: rendered {path} in {sorted(timings)[len(timings) // 2]:.2f} s "
          f"(median of {len(timings)}; min {min(timings):.2f} s), {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
