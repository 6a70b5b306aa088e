"""How often ``testkit compare`` cries wolf, and how often it catches a real slowdown: measured, not assumed.

Run from the repository root (``make compare-error-rates``)::

    python -m benchmarks.compare_error_rates            # 5 baseline runs, 10 runs per arm (about a minute)
    python -m benchmarks.compare_error_rates --runs 20  # tighter rates

Each *run* appends ``--appends`` events durably (fdatasync) to a fresh lighthouse store and records what the
perf suite records: the append latency histogram (``p50`` and ``p99`` judged) and the achieved rate. Arms:

* baseline: ``--baseline-runs`` runs, pooled with ``testkit baseline`` (so the gate has a run-to-run spread);
* A/A: the same code, ``--runs`` times: every REGRESSION verdict is a false alarm;
* slowed 10 % and 30 %: after each append the operation busy-waits 10 % / 30 % of that append's own duration,
  a planted, proportional slowdown of latency and (therefore) of throughput.

The arms' runs are interleaved (A/A, 10 %, 30 %, A/A, ...) after the baseline, so drift of a shared machine
lands on all of them alike, as it would between a baseline made yesterday and today's run. Every comparison is
``testkit compare BASELINE RUN`` (the command line, in process); its verdicts are counted per statistic. The
printed table is the gate's error rates on this machine at the time of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from lighthouse import Event, EventStore, EventType
from testkit.cli import main as testkit_main
from testkit.percentiles import LatencyRecorder
from testkit.results import Metric, RunResults, TestRecord, write_json_atomically

NODEID = "benchmarks/compare_error_rates.py::append"
ARMS = {"A/A": 0.0, "slowed 10%": 0.10, "slowed 30%": 0.30}
STATISTICS = ("latency p50", "latency p99", "throughput")


def _event(index: int) -> Event:
    return Event(EventType.COMMAND_RECEIVED, aggregate_id=f"command:{index // 4}", source_agent=f"agent-{index % 16}",
                 data={"tool": "Bash", "command": f"pytest -k case_{index}", "cwd": "/work/project"})


def _spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:  # busy: real work, exact, preempted like real code on a busy machine
        pass


async def _one_run(folder: Path, appends: int, slowdown: float, durability: str) -> tuple[LatencyRecorder, float]:
    recorder = LatencyRecorder()
    async with EventStore(folder, durability=durability) as store:  # type: ignore[arg-type]
        for index in range(50):  # warm the files and caches
            await store.append(_event(10**6 + index))
        started_run = time.perf_counter()
        for index in range(appends):
            event = _event(index)
            started = time.perf_counter_ns()
            await store.append(event)
            if slowdown:
                _spin(slowdown * (time.perf_counter_ns() - started) / 1e9)
            recorder.record(time.perf_counter_ns() - started)
        elapsed = time.perf_counter() - started_run
    return recorder, appends / elapsed


def _results_file(path: Path, recorder: LatencyRecorder, rate: float) -> Path:
    results = RunResults.start(["python", "-m", "benchmarks.compare_error_rates"], seed=1)
    metrics = {
        "append latency": Metric(recorder.percentile(99.0) / 1e6, "ms", "lower", histogram=recorder.encode(),
                                 histogram_unit="ns"),
        "append rate": Metric(rate, "events/s", "higher"),
    }
    results.add(TestRecord(NODEID, "passed", 1.0, sut="lighthouse", metrics=metrics))
    results.finish("passed")
    return write_json_atomically(results.to_dict(), path)


def _cli(*args: str) -> tuple[int, str]:
    out = StringIO()
    with redirect_stdout(out):
        code = testkit_main(list(args))
    return code, out.getvalue()


def _verdicts(comparison_json: Path) -> dict[str, str]:
    rows = json.loads(comparison_json.read_text())["rows"]
    named = {}
    for row in rows:
        name = "throughput" if row["metric"].endswith("append rate") else f"latency {row['statistic']}"
        named[name] = row["verdict"]
    return named


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10, help="runs per arm (A/A, slowed 10 %%, slowed 30 %%)")
    parser.add_argument("--appends", type=int, default=1_000, help="durable appends per run")
    parser.add_argument("--durability", choices=("fsync", "none"), default="fsync",
                        help="fsync: durable appends, as the perf suite measures them (disk noise included); "
                             "none: the store's CPU path only")
    parser.add_argument("--keep", type=Path, help="keep the results, baseline and comparisons here")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="compare-error-rates-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    baseline_files = []
    for number in range(args.baseline_runs):
        recorder, rate = asyncio.run(_one_run(work / f"store-base-{number}", args.appends, 0.0, args.durability))
        baseline_files.append(_results_file(work / f"base-{number}.json", recorder, rate))
    code, text = _cli("baseline", str(work / "baseline.json"), *map(str, baseline_files))
    if code:
        print(text, file=sys.stderr)
        return code

    counts: dict[str, Counter[tuple[str, str]]] = {arm: Counter() for arm in ARMS}
    exits: dict[str, Counter[int]] = {arm: Counter() for arm in ARMS}
    deltas: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for number in range(args.runs):
        for arm, slowdown in ARMS.items():
            tag = f"{arm.replace('/', '').replace(' ', '-').replace('%', 'pc')}-{number}"
            recorder, rate = asyncio.run(_one_run(work / f"store-{tag}", args.appends, slowdown, args.durability))
            run_file = _results_file(work / f"{tag}.json", recorder, rate)
            comparison = work / f"compare-{tag}.json"
            code, _ = _cli("compare", str(work / "baseline.json"), str(run_file), "--json", str(comparison))
            exits[arm][code] += 1
            for statistic, verdict in _verdicts(comparison).items():
                counts[arm][(statistic, verdict)] += 1
            deltas[arm].append(json.loads(comparison.read_text())["rows"][1]["delta_relative"] or 0.0)
    if args.keep is None:
        for path in work.glob("store-*"):
            for child in sorted(path.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()
            path.rmdir()

    print(f"testkit compare error rates: {args.baseline_runs} baseline runs, {args.runs} runs per arm, "
          f"{args.appends} appends (durability {args.durability}) per run; {time.monotonic() - started:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; files in {work}")
    print(f"{'arm':12} {'statistic':12} {'REGRESSION':>11} {'warn':>6} {'flagged':>8} {'ok/other':>9}")
    for arm in ARMS:
        for statistic in STATISTICS:
            regression = counts[arm][(statistic, "regression")]
            warn = counts[arm][(statistic, "warn")]
            other = args.runs - regression - warn
            print(f"{arm:12} {statistic:12} {regression:>5}/{args.runs:<5} {warn:>6} "
                  f"{regression + warn:>4}/{args.runs:<3} {other:>9}")
        print(f"{arm:12} {'exit 1 (blocking)':25} {exits[arm][1]:>2}/{args.runs}")
    aa_false = sum(counts["A/A"][(s, "regression")] for s in STATISTICS)
    print(f"A/A false alarms (REGRESSION verdicts): {aa_false} of {args.runs * len(STATISTICS)} comparisons")
    for arm in ("slowed 10%", "slowed 30%"):
        flagged = sum(counts[arm][(s, v)] for s in STATISTICS for v in ("regression", "warn"))
        caught = sum(counts[arm][(s, "regression")] for s in STATISTICS)
        print(f"{arm}: flagged (warn or REGRESSION) {flagged} of {args.runs * len(STATISTICS)}, "
              f"REGRESSION {caught} of {args.runs * len(STATISTICS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
