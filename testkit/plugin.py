"""The testkit pytest plugin (registered through the ``pytest11`` entry point).

Any project that installs testkit gets: one seed that makes a run reproducible (printed in the
header and with every failure, with the command to rerun), a duration knob that scales every load
and chaos test, fixtures for the kit's parts, a per-test recorder of metrics, faults and checker
verdicts, a terminal summary (latency percentiles, the fault x invariant matrix), and a results
JSON plus an HTML report at session end.
"""

from __future__ import annotations

import os
import random
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.adapters.factory import AdapterSpec
from testkit.percentiles import LatencyRecorder, format_ms

__all__ = ["ChaosCell", "TestkitSession", "TestRecorder", "parse_duration", "session_of"]

#: The duration that scale 1.0 stands for: ``--testkit-duration=10m`` runs load and chaos tests at 10x.
BASE_DURATION_S = 60.0
_STASH: pytest.StashKey[TestkitSession] = pytest.StashKey()
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Chaos matrix rows for deliberately broken configurations start with this (their violations are expected).
KNOWN_BAD_PREFIX = "known-bad:"
INVARIANTS = (
    "no_lost_ack",
    "no_duplicate",
    "order",
    "no_phantom",
    "prefix_no_holes",
    "corruption_detected",
    "typed_errors",
    "recovers",
)


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1h"``, ``"72h"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise pytest.UsageError(f"--testkit-duration: cannot read {text!r}; use e.g. 30s, 10m, 1h")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass
class ChaosCell:
    cases: int = 0
    proven: int = 0
    violations: int = 0
    suts: set[str] = field(default_factory=set)
    violations_by_sut: dict[str, int] = field(default_factory=dict)


@dataclass
class TestRecorder:
    """What one test records; the plugin turns it into a results record when the test ends."""

    __test__ = False

    nodeid: str
    seed: int
    session: TestkitSession
    sut: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    timelines: list[dict[str, Any]] = field(default_factory=list)
    latencies: dict[str, LatencyRecorder] = field(default_factory=dict)
    expectations: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str, Any] | None = None

    def metric(
        self,
        name: str,
        value: float,
        unit: str = "",
        direction: str = "lower",
        target: tuple[str, float] | None = None,
        *,
        samples: list[float] | None = None,
        histogram: LatencyRecorder | None = None,
        histogram_unit: str = "ns",
    ) -> None:
        entry: dict[str, Any] = {"value": float(value), "unit": unit, "direction": direction}
        if target is not None:
            entry["target"] = {"op": target[0], "value": float(target[1])}
        if samples is not None:
            entry["samples"] = [float(s) for s in samples]
        if histogram is not None:
            entry["histogram"] = histogram.encode()
            entry["histogram_unit"] = histogram_unit
        self.metrics[name] = entry

    def latency(self, name: str, recorder: LatencyRecorder) -> None:
        """Show this recorder in the terminal percentile table and store it in the results."""
        self.latencies[name] = recorder
        summary = recorder.summary()
        self.metric(f"{name}.p99", summary.p99_ns / 1e6, "ms", histogram=recorder)

    def fault(self, kind: str, proven: bool, detail: str = "", window: tuple[float, float] | None = None) -> None:
        self.faults.append({"kind": kind, "proven": bool(proven), "detail": detail, "window": window})

    def verdict(self, checker: str, verdict: Any) -> None:
        document = verdict.to_dict() if hasattr(verdict, "to_dict") else dict(verdict)
        counts = {k: int(v) for k, v in (document.get("counts") or {}).items() if isinstance(v, (int, bool))}
        self.verdicts.append(
            {
                "checker": checker,
                "ok": bool(document.get("ok")),
                "counts": counts,
                "violations": list(document.get("violations") or [])[:50],
            }
        )

    def chaos(
        self, fault_kind: str, invariant: str, *, cases: int = 1, proven: int = 0, violations: int = 0, sut: str = ""
    ) -> None:
        self.session.add_chaos(fault_kind, invariant, cases=cases, proven=proven, violations=violations, sut=sut)

    def op_timeline(self, timeline: Any) -> None:
        """A fault campaign's operations, fault windows and recoveries (an ``OpTimeline`` or its dict): the
        report draws one picture per campaign from it (see :mod:`testkit.op_timeline`)."""
        self.operations = timeline.to_dict() if hasattr(timeline, "to_dict") else dict(timeline)

    def expectation(self, *, fault: str, expected_unsafe: bool, caught: bool, **evidence: Any) -> None:
        """A configuration's expectation under one fault and whether the run caught a loss (Jepsen's known-unsafe)."""
        self.expectations.append({"fault": fault, "expected_unsafe": expected_unsafe, "caught": caught, **evidence})

    def skip_mechanism(self, mechanism: str, reason: str) -> None:
        self.session.skipped_mechanisms[mechanism] = reason

    def timeline(self, name: str, rows: list[dict[str, Any]], units: dict[str, str] | None = None,
                 shaded: list[tuple[float, float, str]] | None = None) -> None:
        """Per-second rows such as ``{"t": 0.0, "completed": 980, "p99": 1.2}``; ``shaded`` spans (e.g. a burst)
        ``(start, end, label)`` on the same clock are shaded in the report."""
        if not rows:
            return
        columns = [k for k in rows[0] if k != "t"]
        self.timelines.append(
            {
                "name": name,
                "t": [float(r["t"]) for r in rows],
                "series": {c: [None if r.get(c) is None else float(r[c]) for r in rows] for c in columns},
                "units": dict(units or {}),
                **({"shaded": [[float(a), float(b), str(label)] for a, b, label in shaded]} if shaded else {}),
            }
        )


class TestkitSession:
    """Session-wide state of the plugin: the seed, the recorders, the chaos matrix, the outputs."""

    __test__ = False

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        seed = config.getoption("testkit_seed")
        self.seed: int = int(seed) if seed is not None else random.SystemRandom().randrange(1, 2**31)
        duration = config.getoption("testkit_duration")
        self.duration: float | None = parse_duration(duration) if duration else None
        self.scale: float = (self.duration / BASE_DURATION_S) if self.duration else 1.0
        self.results_dir: Path | None = _path_option(config, "testkit_results")
        self.report_dir: Path | None = _path_option(config, "testkit_report")
        self.recorders: dict[str, TestRecorder] = {}
        #: pytest node id -> id independent of rootdir and invocation (what results and baselines key by).
        self.stable_ids: dict[str, str] = {}
        self.records: list[dict[str, Any]] = []
        self.chaos_cells: dict[tuple[str, str], ChaosCell] = {}
        self.skipped_mechanisms: dict[str, str] = {}
        self.failed_nodeids: list[str] = []
        self._run: Any = None
        self.output_lines: list[str] = []

    def begin(self) -> None:
        """Stamp the run's start (and the machine) when the session starts, not when it ends."""
        from testkit.results import RunResults

        self._run = RunResults.start(["pytest", *self.config.invocation_params.args], seed=self.seed,
                                     data_path=os.getcwd())

    def stable_id(self, nodeid: str) -> str:
        return self.stable_ids.get(nodeid, nodeid)

    def test_seed(self, nodeid: str) -> int:
        """A per-test seed derived from the run seed, stable across runs, test orders and rootdirs."""
        return (self.seed * 1_000_003 + zlib.crc32(self.stable_id(nodeid).encode())) % 2**31

    def recorder(self, nodeid: str) -> TestRecorder:
        if nodeid not in self.recorders:
            self.recorders[nodeid] = TestRecorder(nodeid, self.test_seed(nodeid), self)
        return self.recorders[nodeid]

    def add_chaos(self, fault: str, invariant: str, *, cases: int, proven: int, violations: int, sut: str) -> None:
        cell = self.chaos_cells.setdefault((fault, invariant), ChaosCell())
        cell.cases += cases
        cell.proven += proven
        cell.violations += violations
        if sut:
            cell.suts.add(sut)
        key = sut or "unnamed"
        cell.violations_by_sut[key] = cell.violations_by_sut.get(key, 0) + violations

    def rerun_command(self, nodeid: str | None = None) -> str:
        if nodeid is None:
            args, skip = [], False
            for arg in self.config.invocation_params.args:
                if skip:
                    skip = False
                    continue
                if arg == "--testkit-seed":
                    skip = True
                    continue
                if not arg.startswith("--testkit-seed=") and not arg.startswith("--basetemp"):
                    args.append(arg)
            target = " ".join(args) or "."
        else:
            target = nodeid
        return f"pytest {target} --testkit-seed {self.seed}"

    # -- outputs ----------------------------------------------------------------------------------

    def chaos_matrix(self) -> dict[str, Any] | None:
        if not self.chaos_cells:
            return None
        faults = sorted({f for f, _ in self.chaos_cells})
        invariants = [i for i in INVARIANTS if any(i == inv for _, inv in self.chaos_cells)]
        invariants += sorted({inv for _, inv in self.chaos_cells} - set(invariants))
        cells: dict[str, dict[str, str]] = {}
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for (fault, invariant), cell in self.chaos_cells.items():
            status = "fail" if cell.violations else ("pass" if cell.cases else "not_run")
            cells.setdefault(fault, {})[invariant] = status
            counts.setdefault(fault, {})[invariant] = {
                "cases": cell.cases,
                "proven": cell.proven,
                "violations": cell.violations,
            }
        by_sut: dict[str, dict[str, int]] = {}
        for (fault, _), cell in self.chaos_cells.items():
            row = by_sut.setdefault(fault, {})
            for sut, found in cell.violations_by_sut.items():
                row[sut] = row.get(sut, 0) + found
        return {"faults": faults, "invariants": invariants, "cells": cells, "counts": counts,
                "violations_by_sut": by_sut}

    def results_document(self, exitstatus: int) -> dict[str, Any]:
        if self._run is None:
            self.begin()
        run = self._run
        verdict = "passed" if exitstatus == 0 else ("interrupted" if exitstatus == 2 else "failed")
        run.finish(verdict)
        document = run.to_dict()
        document["tests"] = self.records
        matrix = self.chaos_matrix()
        if matrix is not None:
            document["chaos_matrix"] = matrix
        if self.skipped_mechanisms:
            document["skipped_mechanisms"] = [
                {"mechanism": m, "reason": r} for m, r in sorted(self.skipped_mechanisms.items())
            ]
        document["run"]["rerun"] = self.rerun_command()
        return document


def _path_option(config: pytest.Config, name: str) -> Path | None:
    value = config.getoption(name)
    return Path(value) if value else None


# ------------------------------------------------------------------------------------------------ hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testkit", "testkit: chaos, load and fault injection")
    group.addoption("--testkit-seed", type=int, default=None, help="seed of the whole run (default: random, printed)")
    group.addoption(
        "--testkit-duration",
        default=None,
        help=f"scale load, soak and chaos tests to this duration (30s, 10m, 1h, 72h); default scale is {BASE_DURATION_S:.0f}s",
    )
    group.addoption("--testkit-results", default=None, metavar="DIR", help="write results.json here at session end")
    group.addoption("--testkit-report", default=None, metavar="DIR", help="write index.html (and results.json) here")
    group.addoption("--testkit-baseline", default=None, metavar="PATH",
                    help="compare this run with a baseline file, or with this machine's baseline in a directory "
                         "(e.g. reports/baselines); a blocking regression exits 1, a gate matching no metric 2")
    group.addoption("--testkit-save-baseline", default=None, metavar="FILE", help="save this run as a baseline")
    group.addoption("--testkit-adapter", action="append", default=[], metavar="PKG.MODULE:FACTORY",
                    help="system under test for store_adapter and the chaos suite (repeatable)")
    group.addoption("--testkit-option", action="append", default=[], metavar="KEY=VALUE",
                    help="factory option for --testkit-adapter; expected_loss=FAULT[,FAULT] declares known-unsafe")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from testkit.chaos import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STASH] = TestkitSession(config)
    config.addinivalue_line("markers", "smoke: a quick subset that `make test` runs")


def _session(config: pytest.Config) -> TestkitSession:
    return config.stash[_STASH]


def session_of(config: pytest.Config) -> TestkitSession:
    """The testkit session of a pytest run (for a project's own hooks, e.g. to derive seeds from it)."""
    return _session(config)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each test's id for results, baselines and seeds, independent of the rootdir (see ``stable_ids``)."""
    from testkit.stable_ids import stable_test_id

    _session(item.config).stable_ids[item.nodeid] = stable_test_id(item)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A run scaled by ``--testkit-duration`` scales every timeout with it."""
    from testkit.timeouts import scale_timeouts

    tk = _session(config)
    limit = scale_timeouts(config, items, tk.scale)
    if limit is not None:
        tk.output_lines.append(f"testkit: timeouts scaled {tk.scale:g}x for --testkit-duration "
                               f"(session limit {limit:g} s)")


def pytest_report_header(config: pytest.Config) -> str:
    tk = _session(config)
    scale = f", scale {tk.scale:g}x ({tk.duration:g}s)" if tk.duration else ""
    return f"testkit: seed {tk.seed}{scale}; rerun with --testkit-seed {tk.seed}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    tk = _session(item.config)
    if report.failed:
        report.sections.append(
            (
                "testkit",
                f"seed {tk.seed} (test seed {tk.test_seed(item.nodeid)}); rerun: {tk.rerun_command(item.nodeid)}",
            )
        )
    return report


def _outcome(reports: list[pytest.TestReport]) -> tuple[str, float, str | None]:
    outcome, duration, reason = "passed", 0.0, None
    for rep in reports:
        duration += rep.duration
        if hasattr(rep, "wasxfail"):
            outcome = "xfailed" if rep.skipped else "xpassed"
        elif rep.skipped:
            outcome = "skipped"
            if isinstance(rep.longrepr, tuple):
                reason = str(rep.longrepr[2])
        elif rep.failed:
            outcome = "failed" if rep.when == "call" else "error"
    return outcome, duration, reason


class _ReportCollector:
    """Gathers each test's phase reports (works with xdist: reports arrive on the controller)."""

    def __init__(self, tk: TestkitSession) -> None:
        self.tk = tk
        self.phases: dict[str, list[pytest.TestReport]] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.phases.setdefault(report.nodeid, []).append(report)
        if report.when != "teardown":
            return
        outcome, duration, reason = _outcome(self.phases.pop(report.nodeid))
        if outcome == "failed":
            self.tk.failed_nodeids.append(report.nodeid)
        rec = self.tk.recorders.get(report.nodeid)
        record: dict[str, Any] = {
            "nodeid": self.tk.stable_id(report.nodeid),
            "outcome": outcome,
            "duration": duration,
            "sut": rec.sut if rec else None,
            "parameters": rec.parameters if rec else {},
            "seed": self.tk.test_seed(report.nodeid),
            "metrics": rec.metrics if rec else {},
            "timelines": rec.timelines if rec else [],
            "faults": [dict(f, window=list(f["window"]) if f["window"] else None) for f in rec.faults] if rec else [],
            "verdicts": rec.verdicts if rec else [],
        }
        if rec and rec.expectations:
            record["expectations"] = rec.expectations
        if reason:
            record["skipped_reason"] = reason
        if rec and rec.operations is not None:
            record["op_timeline"] = rec.operations
        self.tk.records.append(record)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    tk = _session(session.config)
    tk.begin()
    session.config.pluginmanager.register(_ReportCollector(tk), "testkit-report-collector")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write results, report and baseline; a blocking regression against ``--testkit-baseline`` fails the run."""
    tk = _session(session.config)
    try:
        written, comparison = _write_outputs(tk, int(exitstatus))
    except Exception as exc:  # outputs must never hide the test outcome, but must not fail silently either
        tk.output_lines.append(f"testkit: could not write results: {exc!r}")
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    if comparison is not None:
        from testkit.gate import judge_comparison

        gate = judge_comparison(comparison)
        tk.output_lines.extend(gate.lines)
        if gate.exit_status is not None and session.exitstatus in (0, pytest.ExitCode.OK):
            session.exitstatus = gate.exit_status
    tk.output_lines.extend(f"testkit: wrote {path}" for path in written)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    tk = _session(config)
    write = terminalreporter.write_line
    latency_rows = [(nodeid, name, rec) for nodeid, r in tk.recorders.items() for name, rec in r.latencies.items()]
    if latency_rows:
        terminalreporter.section("testkit latency percentiles")
        write(f"{'test / recorder':60} {'count':>8} {'p50':>10} {'p99':>10} {'p99.9':>10} {'max':>10}")
        for nodeid, name, rec in latency_rows:
            s = rec.summary()
            label = f"{nodeid.split('::')[-1]} / {name}"[:60]
            write(
                f"{label:60} {s.count:>8} {_ms(s.p50_ns):>10} {_ms(s.p99_ns):>10} {_ms(s.p999_ns):>10} {_ms(s.max_ns):>10}"
            )
    matrix = tk.chaos_matrix()
    if matrix is not None:
        terminalreporter.section("testkit fault x invariant matrix (cases / faults proven / violations)")
        inv = matrix["invariants"]
        write(f"{'fault':24} " + " ".join(f"{i[:18]:>18}" for i in inv))
        for fault in matrix["faults"]:
            cells = []
            for i in inv:
                c = matrix["counts"].get(fault, {}).get(i)
                cells.append(f"{c['cases']}/{c['proven']}/{c['violations']}" if c else "-")
            write(f"{fault[:24]:24} " + " ".join(f"{c:>18}" for c in cells))
        # Known-bad configurations exist to be caught: their violations prove the suite can fail.
        by_sut: dict[str, int] = {}
        for (fault, _), cell in tk.chaos_cells.items():
            if not fault.startswith(KNOWN_BAD_PREFIX):
                for sut, count in cell.violations_by_sut.items():
                    by_sut[sut] = by_sut.get(sut, 0) + count
        caught = sum(c.violations for (f, _), c in tk.chaos_cells.items() if f.startswith(KNOWN_BAD_PREFIX))
        write("violations by system under test: " + ", ".join(f"{s} {n}" for s, n in sorted(by_sut.items())))
        if caught:
            write(f"violations caught in deliberately broken configurations ({KNOWN_BAD_PREFIX}* rows): {caught}")
    if tk.skipped_mechanisms:
        terminalreporter.section("testkit skipped mechanisms")
        for mechanism, reason in sorted(tk.skipped_mechanisms.items()):
            write(f"{mechanism}: {reason}")
    for line in tk.output_lines:
        write(line)
    if tk.failed_nodeids:
        write(f"testkit: reproduce with: {tk.rerun_command()}")


def _ms(ns: float) -> str:
    return f"{format_ms(ns)}ms"


def _write_outputs(tk: TestkitSession, exitstatus: int) -> tuple[list[Path], Any]:
    written: list[Path] = []
    if not (tk.results_dir or tk.report_dir or tk.config.getoption("testkit_save_baseline")
            or tk.config.getoption("testkit_baseline")):
        return written, None
    import json

    document = tk.results_document(int(exitstatus))
    comparison = None
    option = tk.config.getoption("testkit_baseline")
    if option:
        from testkit.gate import resolve_baseline
        from testkit.regression import compare, load_comparable
        from testkit.results import RunResults

        current = RunResults.from_dict(document)
        base, message = resolve_baseline(option, current.environment)
        tk.output_lines.append(message)
        if base is not None:
            comparison = compare(load_comparable(base), current)
    for folder in {d for d in (tk.results_dir, tk.report_dir) if d is not None}:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "results.json"
        path.write_text(json.dumps(document, indent=1, default=str))
        written.append(path)
    if tk.report_dir is not None:
        try:
            from testkit.report import render_report
        except ImportError as exc:
            tk.config.get_terminal_writer().line(f"testkit: report renderer unavailable: {exc}")
        else:
            written.append(Path(render_report([document], tk.report_dir / "index.html", comparison=comparison)))
    save = tk.config.getoption("testkit_save_baseline")
    if save:
        from testkit.regression import Baseline
        from testkit.results import RunResults

        written.append(Baseline.from_results(RunResults.from_dict(document)).save(save))
    return written, comparison


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def testkit_session(request: pytest.FixtureRequest) -> TestkitSession:
    return _session(request.config)


@pytest.fixture(scope="session")
def testkit_seed(testkit_session: TestkitSession) -> int:
    """The run's seed: pass ``--testkit-seed`` to replay a run exactly."""
    return testkit_session.seed


@pytest.fixture(scope="session")
def testkit_scale(testkit_session: TestkitSession) -> float:
    """Multiply case counts and durations by this (1.0 by default; ``--testkit-duration`` changes it)."""
    return testkit_session.scale


@pytest.fixture(scope="session")
def testkit_duration(testkit_session: TestkitSession) -> float | None:
    """The requested duration in seconds, or ``None`` for each test's own short default."""
    return testkit_session.duration


@pytest.fixture
def testkit_record(request: pytest.FixtureRequest, testkit_session: TestkitSession) -> TestRecorder:
    """This test's recorder of metrics, faults, verdicts and chaos matrix cells."""
    return testkit_session.recorder(request.node.nodeid)


@pytest.fixture
def testkit_rng(testkit_record: TestRecorder) -> random.Random:
    """A ``random.Random`` seeded from the run seed and this test's id."""
    return random.Random(testkit_record.seed)


@pytest.fixture
def latency_recorder(testkit_record: TestRecorder) -> Iterator[LatencyRecorder]:
    """A fresh HdrHistogram recorder (ns) that appears in the terminal summary and the results."""
    recorder = LatencyRecorder()
    testkit_record.latency("latency", recorder)
    yield recorder
    testkit_record.latency("latency", recorder)


@pytest.fixture
def load_runner(testkit_record: TestRecorder) -> Any:
    """A :class:`testkit.load.LoadRunner` for open-loop, closed-loop and multi-process runs; every run's
    latency (from the intended start) and per-second timeline go into this test's results."""
    from testkit.load import LoadRunner

    def record(result: Any) -> None:
        name = f"load{len(testkit_record.latencies) + 1}"
        testkit_record.latency(name, result.latency)
        testkit_record.metric(f"{name}.achieved_rate", result.achieved_rate, "ops/s", "higher")
        testkit_record.timeline(
            name,
            [
                {"t": float(p.second), "offered": p.offered, "completed": p.completed, "errors": p.errors,
                 "p50_ms": p.p50_ns / 1e6 if p.p50_ns is not None else None,
                 "p99_ms": p.p99_ns / 1e6 if p.p99_ns is not None else None}
                for p in result.timeline
            ],
            {"p50_ms": "ms", "p99_ms": "ms"},
        )

    return LoadRunner(on_result=record)


@pytest.fixture
def agent_sessions(testkit_record: TestRecorder) -> Any:
    """A seeded generator of multi-agent coordination traffic (same seed, same bytes)."""
    from testkit.data import AgentSessionGenerator

    return AgentSessionGenerator(seed=testkit_record.seed)


@pytest.fixture
def history(tmp_path: Path) -> Any:
    """An operation history journalled to disk (survives the client's crash)."""
    from testkit.checkers import History

    return History(tmp_path / "history.journal")


@pytest.fixture
def memory_tracker() -> Iterator[Any]:
    """RSS sampling and tracemalloc diffs for the test's duration."""
    from testkit.memory import MemoryTracker

    tracker = MemoryTracker()
    yield tracker
    if getattr(tracker, "running", False):
        tracker.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wants = {"store_adapter", "system_under_test"} & set(metafunc.fixturenames)
    if wants and not any(
        m.name == "parametrize" and any(w in str(m.args[0]) for w in (*wants, "adapter_spec"))
        for m in metafunc.definition.iter_markers()
    ):
        from testkit.chaos.registry import registered_systems

        systems = registered_systems(metafunc.config)
        metafunc.parametrize("system_under_test", systems, ids=[s.name for s in systems], indirect=True)


@pytest.fixture
def system_under_test(request: pytest.FixtureRequest, testkit_record: TestRecorder) -> Any:
    """The registered system under test (``--testkit-adapter``, entry points, hook); names it in the results."""
    system = request.param
    testkit_record.sut = system.name
    return system


@pytest.fixture
def adapter_spec(system_under_test: Any) -> AdapterSpec:
    return system_under_test.spec  # type: ignore[no-any-return]


@pytest.fixture
def store_adapter(adapter_spec: AdapterSpec, tmp_path: Path, testkit_record: TestRecorder) -> Any:
    """An adapter (not yet opened: open and close it in your test's event loop) over a fresh
    data directory, once per registered store."""
    adapter = adapter_spec.create(tmp_path / "store")
    testkit_record.sut = adapter.name
    return adapter
