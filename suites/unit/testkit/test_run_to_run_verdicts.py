"""The run-to-run decision rule on crafted run sets: no timing, every figure chosen so the verdict is known.

A baseline of several runs gives one statistic per run (a histogram's p50/p99, a rate); a new run is judged by
where it falls in that spread. These tests pin each answer: ok (inside a narrow band), warn and REGRESSION
(significant and past the thresholds), improved, and inconclusive (the band is wider than the change, so the
data can say neither "no change" nor "regression").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from testkit.regression import BACK_TO_BACK_S, Baseline, ComparisonRow, RunToRunTest, compare
from testkit.results import Metric, RunResults, TestRecord

NODEID = "suites/perf/test_workload.py::test_append"
#: Relative run-to-run spreads of a steady and of a noisy machine (each run's statistic times one of these).
STEADY = (0.98, 1.0, 1.02, 0.99, 1.01, 1.0, 0.985, 1.015, 0.995, 1.005)
NOISY = (0.8, 1.0, 1.25, 0.9, 1.1, 0.85, 1.2, 0.95, 1.05, 1.0)


def _run(latency_ms: float, rate: float) -> RunResults:
    """One run: 1,000 appends whose latency is exactly ``latency_ms`` (p50) with a 2 % tail at 5x (the p99), and a rate."""
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    histogram.record_value(int(latency_ms * 1e6), 980)
    histogram.record_value(int(5 * latency_ms * 1e6), 20)
    metrics = {
        "append latency": Metric(5 * latency_ms, "ms", "lower", histogram=histogram.encode().decode("ascii"),
                                 histogram_unit="ns"),
        "append rate": Metric(rate, "events/s", "higher"),
    }
    results = RunResults.start(["pytest"], seed=1)
    results.add(TestRecord(NODEID, "passed", 1.0, sut="demo", metrics=metrics))
    results.finish("passed")
    return results


def _baseline(spread: Sequence[float]) -> Baseline:
    return Baseline.from_results(*(_run(1.0 * factor, 1000.0 / factor) for factor in spread))


def _rows(base: Baseline, *new: RunResults) -> dict[str, ComparisonRow]:
    current = Baseline.from_results(*new) if len(new) > 1 else new[0]
    comparison = compare(base, current)
    assert comparison.rows, comparison.format_table()
    return {("rate" if row.metric.endswith("rate") else row.statistic): row for row in comparison.rows}


def test_the_same_code_inside_a_narrow_band_is_ok_and_says_how_narrow() -> None:
    rows = _rows(_baseline(STEADY), _run(1.01, 990.0))

    assert {row.verdict for row in rows.values()} == {"ok"}
    for row in rows.values():
        assert row.noise_band is not None and 0 < row.noise_band < row.thresholds.warn
        assert row.method == "run-to-run t (10 vs 1 runs)"


@pytest.mark.parametrize("slowdown", [0.30, 0.50])
def test_a_large_slowdown_on_a_steady_machine_is_a_regression_on_latency_and_throughput(slowdown: float) -> None:
    rows = _rows(_baseline(STEADY), _run(1.0 + slowdown, 1000.0 / (1.0 + slowdown)))

    assert {name: row.verdict for name, row in rows.items()} == {"p50": "regression", "p99": "regression",
                                                               "rate": "regression"}
    assert rows["p50"].delta_relative == pytest.approx(slowdown, rel=0.02)
    assert rows["rate"].delta_relative == pytest.approx(1 / (1 + slowdown) - 1, rel=0.02)


def test_a_ten_percent_slowdown_outside_a_narrow_band_is_flagged_but_does_not_block() -> None:
    rows = _rows(_baseline(STEADY), _run(1.10, 1000.0 / 1.10))

    assert {row.verdict for row in rows.values()} == {"warn"}
    assert all(row.noise_band is not None and row.noise_band < 0.10 for row in rows.values())


@pytest.mark.parametrize("slowdown", [0.0, 0.10, 0.30])
def test_a_band_wider_than_the_change_is_inconclusive_never_ok_nor_regression(slowdown: float) -> None:
    rows = _rows(_baseline(NOISY), _run(1.0 + slowdown, 1000.0 / (1.0 + slowdown)))

    for row in rows.values():
        assert row.noise_band is not None and row.noise_band > max(slowdown, row.thresholds.warn)
        assert row.verdict == "inconclusive", row
        assert f"noise ±{row.noise_band:.1%}" in row.note


def test_inconclusive_does_not_block_and_is_shown_with_its_band() -> None:
    comparison = compare(_baseline(NOISY), _run(1.3, 1000.0 / 1.3))

    assert not comparison.blocking
    assert comparison.counts()["inconclusive"] == 3
    table = comparison.format_table()
    assert "inconclusive" in table and "±" in table and "noise" in table.splitlines()[0]


def test_an_improvement_outside_the_band_is_improved() -> None:
    rows = _rows(_baseline(STEADY), _run(0.7, 1000.0 / 0.7))

    assert {row.verdict for row in rows.values()} == {"improved"}


def test_several_new_runs_narrow_the_band_welch() -> None:
    """Five new runs 10 % slower on a moderately noisy machine: one run alone is inconclusive, five are flagged."""
    moderate = (0.96, 1.0, 1.04, 0.98, 1.02)
    base = _baseline(moderate)
    single = _rows(base, _run(1.10, 1000.0 / 1.10))
    several = _rows(base, *(_run(1.10 * factor, 1000.0 / (1.10 * factor)) for factor in moderate))

    assert single["p50"].verdict == "inconclusive"
    assert several["p50"].verdict == "warn" and several["rate"].verdict == "warn"
    assert several["p50"].noise_band is not None and single["p50"].noise_band is not None
    assert several["p50"].noise_band < single["p50"].noise_band
    assert several["p50"].method == "run-to-run t (5 vs 5 runs)"


def test_the_band_is_the_prediction_interval_of_one_new_run() -> None:
    """Baseline logs -a, 0, +a: s = a, k = 3, 2 degrees of freedom, two-sided 99 % t = 9.9248 (t table)."""
    spread = 0.01
    base = [math.exp(-spread), 1.0, math.exp(spread)]

    test = RunToRunTest.of(base, [1.0], alpha=0.01)

    assert test is not None
    assert test.band == pytest.approx(math.expm1(9.9248 * spread * math.sqrt(1 + 1 / 3)), rel=1e-4)
    assert test.change == pytest.approx(0.0, abs=1e-12) and test.p_value == pytest.approx(1.0)


def test_no_test_without_a_spread_or_with_non_positive_statistics() -> None:
    assert RunToRunTest.of([1.0], [1.0], alpha=0.01) is None
    assert RunToRunTest.of([0.0, 1.0, 2.0], [1.0], alpha=0.01) is None
    identical = RunToRunTest.of([2.0, 2.0, 2.0], [2.2], alpha=0.01)
    assert identical is not None and identical.band == 0.0 and identical.p_value == 0.0


def _started_at(results: RunResults, when: str) -> RunResults:
    results.run.started = when
    return results


def test_a_baseline_of_back_to_back_runs_is_flagged_and_runs_spread_over_time_are_not(tmp_path: Path) -> None:
    """Runs taken within minutes cannot show a shared machine's drift (measured: 2 of 30 A/A false alarms)."""
    back_to_back = Baseline.from_results(*(_started_at(_run(factor, 1000.0 / factor), f"2026-01-01T10:00:{10 * i:02d}")
                                           for i, factor in enumerate(STEADY[:5])))
    spread = Baseline.from_results(*(_started_at(_run(factor, 1000.0 / factor), f"2026-01-0{i + 1}T10:00:00")
                                     for i, factor in enumerate(STEADY[:5])))
    reloaded = Baseline.load(back_to_back.save(tmp_path / "baseline.json"))

    assert back_to_back.span_s == 40.0 and reloaded.span_s == 40.0 and spread.span_s == 4 * 86_400.0
    flagged, calm = compare(reloaded, _run(1.0, 1000.0)), compare(spread, _run(1.0, 1000.0))
    assert any("5 runs started within 40 s" in message for message in flagged.warnings())
    assert flagged.format_table().startswith("WARNING: the baseline's 5 runs")
    assert not calm.warnings() and flagged.to_dict()["baseline_span_s"] == 40.0
    assert BACK_TO_BACK_S > 40.0


def test_a_slowdown_past_the_fail_line_hidden_in_noise_is_unresolved_and_the_command_does_not_pass(
        tmp_path: Path) -> None:
    """The gate must not pass silently: +30 % inside a ±40 % band is neither a regression nor a pass (exit 3)."""
    from suites.unit.testkit.test_cli_compare import _testkit

    base = _baseline(NOISY)
    assert compare(base, _run(1.0, 1000.0)).unresolved == []  # the same code: nothing to resolve
    slowed = compare(base, _run(1.3, 1000.0 / 1.3))
    assert {row.verdict for row in slowed.unresolved} == {"inconclusive"} and not slowed.blocking
    assert all((row.delta_relative or 0) * (1 if row.direction == "lower" else -1) > row.thresholds.fail
               for row in slowed.unresolved)

    runs = [_run(factor, 1000.0 / factor).save(tmp_path / f"run{i}.json") for i, factor in enumerate(NOISY)]
    assert _testkit("baseline", tmp_path / "baseline.json", *runs).returncode == 0
    same = _testkit("compare", tmp_path / "baseline.json", _run(1.0, 1000.0).save(tmp_path / "same.json"))
    slow = _testkit("compare", tmp_path / "baseline.json", _run(1.3, 1000.0 / 1.3).save(tmp_path / "slow.json"))
    assert same.returncode == 0, same.stdout + same.stderr
    assert slow.returncode == 3 and "UNRESOLVED" in slow.stdout, slow.stdout + slow.stderr
