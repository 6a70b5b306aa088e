"""The ``testkit`` command end to end, in a subprocess: its tables, files and exit codes are what CI sees."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suites.unit.testkit.measured_workload import calibrated_iterations, timed_runs
from testkit.results import Metric, RunResults, TestRecord

REPO_ROOT = Path(__file__).resolve().parents[3]
NODEID = "suites/perf/test_workload.py::test_call"


def _testkit(*arguments: str | Path, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``testkit ARGS`` as CI would; ``prelude`` is Python run first in the child (to remove a module)."""
    code = f"{prelude}\nimport sys\nfrom testkit.cli import main\nsys.exit(main(sys.argv[1:]))"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", code, *map(str, arguments)], capture_output=True, text=True,
                          env=environment, timeout=120, check=False)


def _save_run(path: Path, durations: list[float], iterations: int) -> Path:
    results = RunResults.start(["pytest", "suites/perf"], seed=7, data_path=path.parent)
    latency = Metric(sorted(durations)[len(durations) // 2], "us", "lower", samples=durations)
    results.add(TestRecord(NODEID, "passed", sum(durations) / 1e6, sut="spin-loop",
                           parameters={"iterations": iterations}, metrics={"call_latency": latency}))
    results.finish("passed")
    return results.save(path)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Results files of three real measured runs: the workload, the same again, and 30 % slower."""
    directory = tmp_path_factory.mktemp("measured")
    iterations = calibrated_iterations()
    runs = timed_runs(iterations, (0.0, 0.0, 0.30))
    return {name: _save_run(directory / f"{name}.json", durations, iterations)
            for name, durations in zip(("base", "same", "slow"), runs, strict=True)}


def test_the_same_code_measured_twice_exits_zero(measured: dict[str, Path]) -> None:
    completed = _testkit("compare", measured["base"], measured["same"])
    print(completed.stdout)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"{NODEID}::call_latency" in completed.stdout and "REGRESSION" not in completed.stdout
    assert "BLOCKING" not in completed.stdout


def test_an_injected_slowdown_exits_one_and_names_the_metric(measured: dict[str, Path], tmp_path: Path) -> None:
    html, report = tmp_path / "cmp.html", tmp_path / "cmp.json"

    completed = _testkit("compare", measured["base"], measured["slow"], "--html", html, "--json", report)
    print(completed.stdout)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "REGRESSION" in completed.stdout
    assert f"BLOCKING: 1 regression(s): {NODEID}::call_latency [median]" in completed.stdout
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'class="regression"' in page and "<script" not in page
    document = json.loads(report.read_text())
    assert document["blocking"] is True and document["rows"][0]["verdict"] == "regression"


def test_thresholds_from_the_command_line_change_the_verdict(measured: dict[str, Path]) -> None:
    lenient = _testkit("compare", measured["base"], measured["slow"], "--warn", "0.5", "--fail", "0.9")
    per_metric = _testkit("compare", measured["base"], measured["slow"], "--threshold", "call_*=0.5:0.9")

    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert per_metric.returncode == 0, per_metric.stdout + per_metric.stderr


def test_a_pooled_baseline_compares_like_a_results_file(measured: dict[str, Path], tmp_path: Path) -> None:
    baseline = tmp_path / "baselines" / "machine.json"

    pooled = _testkit("baseline", baseline, measured["base"], measured["same"])
    compared = _testkit("compare", baseline, measured["slow"])

    assert pooled.returncode == 0 and "from 2 run(s)" in pooled.stdout, pooled.stderr
    assert json.loads(baseline.read_text())["kind"] == "testkit-baseline"
    assert compared.returncode == 1, compared.stdout + compared.stderr


def test_a_run_from_another_machine_is_compared_with_a_warning(measured: dict[str, Path], tmp_path: Path) -> None:
    other = RunResults.load(measured["same"])
    other.environment = dataclasses.replace(other.environment, cpu_model="Another CPU", logical_cores=64)
    path = other.save(tmp_path / "other.json")

    completed = _testkit("compare", measured["base"], path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("WARNING: machine fingerprints differ")
    assert "cpu_model" in completed.stdout and "logical_cores" in completed.stdout


@pytest.mark.parametrize(("content", "message"), [
    ("{ not json", "not valid JSON"),
    (json.dumps({"kind": "testkit-results", "schema_version": 0}), "older"),
    (json.dumps({"kind": "testkit-results", "schema_version": 99}), "newer"),
])
def test_an_unreadable_or_old_file_exits_two(measured: dict[str, Path], tmp_path: Path, content: str,
                                             message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)

    completed = _testkit("compare", measured["base"], bad)

    assert completed.returncode == 2
    assert "testkit compare: error:" in completed.stderr and message in completed.stderr


@pytest.mark.parametrize("arguments", [
    ("compare",),
    ("compare", "a.json"),
    ("compare", "BASE", "NEW", "--warn", "0.3", "--fail", "0.1"),
    ("compare", "BASE", "NEW", "--warn", "-1"),
    ("compare", "BASE", "NEW", "--threshold", "p99=oops"),
    ("compare", "BASE", "missing.json"),
    ("frobnicate",),
])
def test_usage_errors_exit_two(measured: dict[str, Path], arguments: tuple[str, ...]) -> None:
    substituted = [str(measured["base"]) if a == "BASE" else str(measured["same"]) if a == "NEW" else a
                   for a in arguments]

    completed = _testkit(*substituted)

    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "error" in completed.stderr


def test_report_says_clearly_when_the_renderer_is_missing(measured: dict[str, Path], tmp_path: Path) -> None:
    completed = _testkit("report", measured["base"], "--out", tmp_path / "r.html",
                         prelude="import sys; sys.modules['testkit.report'] = None")

    assert completed.returncode == 2
    assert "testkit.report.render_report is not available" in completed.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_delegates_to_the_renderer(measured: dict[str, Path], tmp_path: Path) -> None:
    try:
        from testkit.report import render_report  # noqa: F401
    except ImportError as error:
        pytest.skip(f"testkit.report.render_report does not exist yet, nothing to delegate to ({error})")
    out = tmp_path / "report.html"

    completed = _testkit("report", measured["base"], measured["slow"], "--out", out)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert out.is_file() and out.stat().st_size > 0
