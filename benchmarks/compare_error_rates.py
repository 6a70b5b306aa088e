"""How often ``testkit compare`` cries wolf, and how often it catches a real slowdown: measured, not assumed.

Run from the repository root (``make compare-error-rates``)::

X
    python -m benchmarks.compare_error_rates --durability fsync  # the disk-bound path: expect "inconclusive"
    python -m benchmarks.compare_error_rates --schedule sequential  # baseline first, as a stale baseline is

Each *run* does ``--operations`` operations of the workload (``codec``: the store's encode, frame, checksum and
decode of one event; ``store``: one ``EventStore.append`` to a fresh store) and records what the perf suite
records: the latency histogram (``p50`` and ``p99`` judged) and the achieved rate. Four kinds of run:

* baseline (A): the code as it is; the ``--runs`` A runs are pooled with ``testkit baseline``, so the gate has
  a run-to-run spread, as asv and pytest-benchmark keep one;
* A/A: the same code again: every REGRESSION verdict is a false alarm;
* slowed 10 % and 30 %: after each append the operation busy-waits 10 % / 30 % of that append's own duration,
  a planted, proportional slowdown of latency and (therefore) of throughput.

Why this design:

* **the workload**: a comparator can only be judged on a workload whose planted change is larger than its
  noise. ``--workload store --durability fsync`` is dominated by the disk's latency, which drifts with every
  other process's I/O on a shared machine (p50 0.7-3.8 ms within minutes here); every ``store`` append also
  hands off to the store's I/O thread and back, and on a busy machine each hand-off waits for a CPU. The
  default ``codec`` times the store's own per-event code on one thread, whose noise is CPU contention alone.
  The printed noise band says how steady the chosen workload was.
* **the schedule**: ``interleaved`` (default) runs one round of A, A/A, 10 %, 30 % in a shuffled order, ``--runs``
  times, as pyperf and asv users alternate A and B: slow drift of the machine lands on the baseline and on every
  arm alike, so it shows up as the baseline's spread (and so in the band) instead of as a false verdict.
  ``sequential`` takes the baseline first, then the arms: drift between them is judged as a change, which is
  what a baseline made at another time risks.

Every comparison is ``testkit compare BASELINE RUN`` (the command line, in process), one new run against the
baseline; its verdicts are counted per statistic, with the noise band (half-width of the 99 % prediction interval
of one new run) that decides between a verdict and "inconclusive". Then each arm's runs together are compared
with the baseline (Welch's test, ``--runs`` vs ``--runs`` runs): what several candidate runs can resolve that one
cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import msgpack

from lighthouse import Event, EventStore, EventType
from lighthouse.framing import encode_events_frame, parse_frame_header, verify_frame
from lighthouse.segments import decode_frame
from testkit.cli import main as testkit_main
from testkit.percentiles import LatencyRecorder
from testkit.results import Metric, RunResults, TestRecord, write_json_atomically

NODEID = "benchmarks/compare_error_rates.py::append"
BASELINE = "baseline"
ARMS = {"A/A": 0.0, "slowed 10%": 0.10, "slowed 30%": 0.30}
STATISTICS = ("latency p50", "latency p99", "throughput")
SHOWN = ("regression", "warn", "inconclusive", "ok", "improved")


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


def _codec_run(operations: int, slowdown: float) -> tuple[LatencyRecorder, float]:
    """The store's CPU path without its threads or files: pack an event's record, frame it with its checksum,
    verify and decode the frame back. Single-threaded, so a busy machine adds preemption, not thread hand-offs."""
    recorder = LatencyRecorder()
    packer = msgpack.Packer(use_bin_type=True)
    started_run = time.perf_counter()
    for index in range(operations):
        event = _event(index)
        started = time.perf_counter_ns()
        frame = encode_events_frame(index, 1.0, [index // 4], [packer.pack(event.client_record())])
        header = parse_frame_header(frame, 0)
        if header is None or not verify_frame(frame, 0, header) or len(decode_frame(frame, 0, header)) != 1:
            raise AssertionError("the codec workload must round-trip its own frame")
        if slowdown:
            _spin(slowdown * (time.perf_counter_ns() - started) / 1e9)
        recorder.record(time.perf_counter_ns() - started)
    return recorder, operations / (time.perf_counter() - started_run)


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


def _rows(comparison_json: Path) -> dict[str, dict[str, object]]:
    named = {}
    for row in json.loads(comparison_json.read_text())["rows"]:
        name = "throughput" if row["metric"].endswith("append rate") else f"latency {row['statistic']}"
        named[name] = row
    return named


def _schedule(kind: str, rounds: int, seed: int) -> list[tuple[str, int]]:
    """Which run comes when: interleaved rounds in a shuffled order, or the baseline first."""
    if kind == "sequential":
        return [(BASELINE, n) for n in range(rounds)] + [(arm, n) for n in range(rounds) for arm in ARMS]
    order: list[tuple[str, int]] = []
    shuffler = random.Random(seed)
    for number in range(rounds):
        one_round = [BASELINE, *ARMS]
        shuffler.shuffle(one_round)
        order += [(kind_, number) for kind_ in one_round]
    return order


def _store_parent(durability: str) -> str | None:
    """tmpfs for non-durable stores (their noise should be the code's, not other processes' disk writes)."""
    return "/dev/shm" if durability == "none" and os.path.isdir("/dev/shm") else None


def _tag(kind: str, number: int) -> str:
    return f"{kind.replace('/', '').replace(' ', '-').replace('%', 'pc')}-{number}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10,
                        help="rounds: baseline runs, and runs per arm (A/A, slowed 10 %%, slowed 30 %%)")
    parser.add_argument("--workload", choices=("codec", "store"), default="codec",
                        help="codec (default): the store's encode/frame/verify/decode path, one thread, no files; "
                             "store: EventStore.append (an I/O-thread hand-off per append)")
    parser.add_argument("--operations", type=int, help="operations per run (default 20,000 codec, 1,000 store)")
    parser.add_argument("--durability", choices=("none", "fsync"), default="none",
                        help="store workload: none (files on tmpfs) or fsync (durable appends on disk)")
    parser.add_argument("--schedule", choices=("interleaved", "sequential"), default="interleaved")
    parser.add_argument("--seed", type=int, default=1, help="seed of the interleaved order")
    parser.add_argument("--keep", type=Path, help="keep the results, baseline and comparisons here")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be at least 3: a baseline needs a run-to-run spread")

    operations = args.operations or (20_000 if args.workload == "codec" else 1_000)
    work = args.keep or Path(tempfile.mkdtemp(prefix="compare-error-rates-"))
    work.mkdir(parents=True, exist_ok=True)
    stores = Path(tempfile.mkdtemp(prefix="compare-error-rates-", dir=_store_parent(args.durability)))
    started, load_before = time.monotonic(), os.getloadavg()[0]
    files: dict[tuple[str, int], Path] = {}
    try:
        for kind, number in _schedule(args.schedule, args.runs, args.seed):
            slowdown = ARMS.get(kind, 0.0)
            if args.workload == "codec":
                recorder, rate = _codec_run(operations, slowdown)
            else:
                store = stores / _tag(kind, number)
                recorder, rate = asyncio.run(_one_run(store, operations, slowdown, args.durability))
                shutil.rmtree(store)
            files[kind, number] = _results_file(work / f"{_tag(kind, number)}.json", recorder, rate)
    finally:
        shutil.rmtree(stores, ignore_errors=True)
    baseline = work / "baseline.json"
    code, text = _cli("baseline", str(baseline), *(str(files[BASELINE, n]) for n in range(args.runs)))
    if code:
        print(text, file=sys.stderr)
        return code

    counts: dict[str, Counter[tuple[str, str]]] = {arm: Counter() for arm in ARMS}
    exits: dict[str, Counter[int]] = {arm: Counter() for arm in ARMS}
    deltas: dict[tuple[str, str], list[float]] = {}
    bands: dict[str, float] = {}
    for arm in ARMS:
        for number in range(args.runs):
            comparison = work / f"compare-{_tag(arm, number)}.json"
            code, _ = _cli("compare", str(baseline), str(files[arm, number]), "--json", str(comparison))
            exits[arm][code] += 1
            for statistic, row in _rows(comparison).items():
                counts[arm][statistic, str(row["verdict"])] += 1
                deltas.setdefault((arm, statistic), []).append(float(row["delta_relative"] or 0.0))  # type: ignore[arg-type]
                if row.get("noise_band") is not None:
                    bands[statistic] = float(row["noise_band"])  # type: ignore[arg-type]

    workload = args.workload + ("" if args.workload == "codec" else f" (durability {args.durability})")
    print(f"testkit compare error rates: {args.runs} baseline runs and {args.runs} runs per arm, "
          f"{operations} operations of workload {workload} per run, schedule {args.schedule}; "
          f"{time.monotonic() - started:.0f} s; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores; files in {work}")
    print("noise band (99 % prediction interval of one run, from the baseline's run-to-run spread): "
          + ", ".join(f"{s} ±{bands[s]:.1%}" for s in STATISTICS if s in bands))
    print(f"{'arm':11} {'statistic':12} {'median change':>13} " + " ".join(f"{v:>12}" for v in SHOWN))
    for arm in ARMS:
        for statistic in STATISTICS:
            middle = statistics.median(deltas.get((arm, statistic), [0.0]))
            cells = " ".join(f"{counts[arm][statistic, v]:>5}/{args.runs:<6}" for v in SHOWN)
            print(f"{arm:11} {statistic:12} {middle:>+13.1%} {cells}")
        print(f"{arm:11} {'exit 1 (blocking)':26} {exits[arm][1]:>2}/{args.runs}")
    print(f"each arm's {args.runs} runs together against the baseline (Welch, {args.runs} vs {args.runs} runs):")
    for arm in ARMS:
        pooled, comparison = work / f"arm-{_tag(arm, args.runs)}.json", work / f"compare-arm-{_tag(arm, 0)}.json"
        _cli("baseline", str(pooled), *(str(files[arm, n]) for n in range(args.runs)))
        code, _ = _cli("compare", str(baseline), str(pooled), "--json", str(comparison))
        cells = ", ".join(f"{name} {float(row['delta_relative'] or 0):+.1%} ±{float(row['noise_band'] or 0):.1%} "  # type: ignore[arg-type]
                          f"{str(row['verdict']).upper() if row['verdict'] == 'regression' else row['verdict']}"
                          for name, row in _rows(comparison).items())
        print(f"  {arm:11} {cells}; exit {code}")
    total = args.runs * len(STATISTICS)
    aa_false = sum(counts["A/A"][s, "regression"] for s in STATISTICS)
    aa_flagged = sum(counts["A/A"][s, "warn"] for s in STATISTICS)
    print(f"A/A false alarms: REGRESSION {aa_false} of {total} comparisons, warn {aa_flagged} of {total}")
    for arm in ("slowed 10%", "slowed 30%"):
        flagged = sum(counts[arm][s, v] for s in STATISTICS for v in ("regression", "warn"))
        caught = sum(counts[arm][s, "regression"] for s in STATISTICS)
        unsure = sum(counts[arm][s, "inconclusive"] for s in STATISTICS)
        print(f"{arm}: flagged (warn or REGRESSION) {flagged} of {total}, REGRESSION {caught} of {total}, "
              f"inconclusive {unsure} of {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
