"""The regression gate, both ways: a real slowdown is flagged, the same code measured twice is not.

Measured tests time a real calibrated workload (real noise from this shared machine); the crafted-data tests pin
down each rule of the verdict with seeded distributions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from suites.unit.testkit.measured_workload import calibrated_iterations, timed_runs
from testkit.environment import MachineFingerprint, machine_fingerprint
from testkit.regression import (
    Baseline,
    BaselineError,
    Thresholds,
    baseline_path,
    compare,
    load_comparable,
)
from testkit.results import Metric, ResultsSchemaError, RunResults, TestRecord

NODEID = "suites/perf/test_workload.py::test_call"


def _run(metrics: dict[str, Metric], fingerprint: MachineFingerprint | None = None) -> RunResults:
    results = RunResults.start(["pytest"], seed=1)
    if fingerprint is not None:
        results.environment = fingerprint
        results.run.fingerprint = fingerprint.key
    results.add(TestRecord(NODEID, "passed", 1.0, sut="demo", metrics=metrics))
    results.finish("passed")
    return results


def _samples_run(samples: Sequence[float], *, name: str = "latency", unit: str = "us",
                 direction: str = "lower") -> RunResults:
    values = [float(v) for v in samples]
    return _run({name: Metric(float(np.median(values)), unit, direction, samples=values)})  # type: ignore[arg-type]


def _only_row(base: RunResults | Baseline, new: RunResults | Baseline, **options: object):  # type: ignore[no-untyped-def]
    comparison = compare(base, new, **options)  # type: ignore[arg-type]
    assert len(comparison.rows) == 1, comparison.format_table()
    return comparison.rows[0]


# ------------------------------------------------------------------------------- measured: a real workload


def test_an_injected_thirty_percent_slowdown_is_a_regression() -> None:
    baseline, slowed = timed_runs(calibrated_iterations(), (0.0, 0.30))

    row = _only_row(_samples_run(baseline), _samples_run(slowed))

    assert row.verdict == "regression", f"{row}"
    assert 0.15 < row.delta_relative < 0.60 and row.p_value is not None and row.p_value < 0.01


def test_two_runs_of_the_same_code_are_not_a_regression() -> None:
    first, second = timed_runs(calibrated_iterations(), (0.0, 0.0))

    comparison = compare(_samples_run(first), _samples_run(second))

    assert not comparison.blocking, comparison.format_table()
    assert comparison.rows[0].verdict in ("ok", "warn", "improved")


# ------------------------------------------------------------------------------------------- crafted data


def _normal(center: float, spread: float, n: int, seed: int) -> list[float]:
    return [float(value) for value in np.random.default_rng(seed).normal(center, spread, n)]


def test_noise_alone_is_ok() -> None:
    row = _only_row(_samples_run(_normal(100, 5, 50, 1)), _samples_run(_normal(100, 5, 50, 2)))
    assert row.verdict == "ok"


def test_a_small_shift_in_big_noise_is_not_flagged() -> None:
    row = _only_row(_samples_run(_normal(100, 25, 30, 3)), _samples_run(_normal(103, 25, 30, 4)))
    assert row.verdict == "ok" and row.p_value is not None and row.p_value > 0.01


def test_a_thirty_percent_slowdown_is_a_regression() -> None:
    row = _only_row(_samples_run(_normal(100, 10, 30, 5)), _samples_run(_normal(130, 13, 30, 6)))
    assert row.verdict == "regression"
    assert row.delta_relative == pytest.approx(0.30, abs=0.08)


def test_a_thirty_percent_speedup_is_an_improvement() -> None:
    row = _only_row(_samples_run(_normal(100, 10, 30, 7)), _samples_run(_normal(70, 7, 30, 8)))
    assert row.verdict == "improved"


def test_direction_decides_which_way_is_worse() -> None:
    before = _samples_run(_normal(10_000, 300, 30, 9), name="throughput", unit="ops/s", direction="higher")
    fewer = _samples_run(_normal(7_000, 300, 30, 10), name="throughput", unit="ops/s", direction="higher")
    more = _samples_run(_normal(13_000, 300, 30, 11), name="throughput", unit="ops/s", direction="higher")

    assert _only_row(before, fewer).verdict == "regression"
    assert _only_row(before, more).verdict == "improved"


def test_a_significant_change_between_the_thresholds_is_a_warning() -> None:
    row = _only_row(_samples_run(_normal(100, 2, 40, 12)), _samples_run(_normal(110, 2, 40, 13)))
    assert row.verdict == "warn"


def test_a_tiny_but_significant_change_is_ok() -> None:
    """With many samples any shift is significant; the threshold keeps a 1 % change from crying wolf."""
    row = _only_row(_samples_run(_normal(100, 1, 5_000, 14)), _samples_run(_normal(101, 1, 5_000, 15)))
    assert row.p_value is not None and row.p_value < 1e-6
    assert row.verdict == "ok"


def test_too_few_samples_give_insufficient_data_not_a_verdict() -> None:
    row = _only_row(_samples_run([100, 101, 99]), _samples_run([140, 141, 139]))
    assert row.verdict == "insufficient_data" and row.p_value is None


def test_a_single_value_is_never_blocking() -> None:
    before = _run({"replay_seconds": Metric(5.0, "s", "lower")})
    after = _run({"replay_seconds": Metric(9.0, "s", "lower")})
    same = _run({"replay_seconds": Metric(5.1, "s", "lower")})

    assert _only_row(before, after).verdict == "insufficient_data"
    assert _only_row(before, same).verdict == "ok"


def test_per_metric_thresholds_override_the_defaults() -> None:
    base, new = _samples_run(_normal(100, 2, 40, 16)), _samples_run(_normal(110, 2, 40, 17))

    assert _only_row(base, new).verdict == "warn"
    assert _only_row(base, new, per_metric_thresholds={"lat*": (0.02, 0.05)}).verdict == "regression"
    assert _only_row(base, new, per_metric_thresholds={f"{NODEID}::latency": Thresholds(0.2, 0.4)}).verdict == "ok"
    assert _only_row(base, new, per_metric_thresholds={"other": (0.02, 0.05)}).verdict == "warn"


def test_between_run_drift_in_the_baseline_raises_the_bar() -> None:
    """Three baseline runs whose medians differ by up to 20 % make an 18 % change inconclusive, not a block; the
    same change against three steady runs is a regression (judged by run-to-run spread, not within-run samples)."""
    runs = [_samples_run(_normal(center, 2, 40, seed)) for center, seed in ((85, 18), (100, 19), (120, 20))]
    drifting = Baseline.from_results(*runs)
    steady = Baseline.from_results(*(_samples_run(_normal(100, 2, 40, seed)) for seed in (21, 22, 23)))
    new = _samples_run(_normal(118, 2, 40, 24))

    drifting_row, steady_row = _only_row(drifting, new), _only_row(steady, new)

    assert drifting_row.noise_floor > 0.18 and drifting_row.verdict == "inconclusive"
    assert "noise ±" in drifting_row.note
    assert steady_row.noise_floor < 0.05 and steady_row.verdict == "regression"
    assert drifting_row.method == steady_row.method == "run-to-run t (3 vs 1 runs)"


def _histogram_run(scale: float, seed: int, count: int = 20_000) -> RunResults:
    """Latencies around 1 ms recorded in ns, reported as p99 in ms (as the plugin's latency recorder does)."""
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    for value in np.random.default_rng(seed).lognormal(np.log(1_000_000 * scale), 0.5, count):
        histogram.record_value(int(value))
    encoded = histogram.encode().decode("ascii")
    p99_ms = histogram.get_value_at_percentile(99) / 1e6
    return _run({"append": Metric(p99_ms, "ms", "lower", histogram=encoded, histogram_unit="ns")})


def test_histograms_are_compared_per_quantile_with_a_bootstrap() -> None:
    base = _histogram_run(1.0, 25)
    slowed = compare(base, _histogram_run(1.3, 26))
    same = compare(base, _histogram_run(1.0, 27))

    assert [row.statistic for row in slowed.rows] == ["p50", "p99"]
    assert {row.unit for row in slowed.rows} == {"ns"}, "quantiles are shown in the histogram's unit"
    assert 500_000 < slowed.rows[0].baseline < 2_000_000
    assert {row.verdict for row in slowed.rows} == {"regression"}
    assert all(row.method == "bootstrap" and row.n_baseline == 20_000 for row in slowed.rows)
    assert {row.verdict for row in same.rows} == {"ok"}, same.format_table()


def test_the_bootstrap_does_not_cry_wolf_across_many_null_comparisons() -> None:
    false_alarms = sum(row.p_value is not None and row.p_value < 0.01
                       for seed in range(15)
                       for row in compare(_histogram_run(1.0, 100 + seed, 2_000),
                                          _histogram_run(1.0, 200 + seed, 2_000)).rows)
    assert false_alarms <= 1, "p < 0.01 in more than 1 of 30 null comparisons"


def test_a_fingerprint_mismatch_is_flagged_not_silent(tmp_path: Path) -> None:
    here = machine_fingerprint(tmp_path)
    elsewhere = dataclasses.replace(here, cpu_model="Other CPU 9000")
    base = _run({"latency": Metric(1.0, "us", "lower", samples=_normal(100, 5, 30, 28))}, here)
    new = _run({"latency": Metric(1.0, "us", "lower", samples=_normal(100, 5, 30, 29))}, elsewhere)

    mismatched, matched = compare(base, new), compare(base, base)

    assert mismatched.fingerprint_mismatch and "cpu_model" in mismatched.fingerprint_differences
    assert mismatched.format_table().startswith("WARNING: machine fingerprints differ")
    assert "machine fingerprints differ" in mismatched.to_html()
    assert not matched.fingerprint_mismatch and "WARNING" not in matched.format_table()


def test_metrics_present_on_one_side_only_are_listed() -> None:
    base = _run({"a": Metric(1.0, "s", "lower"), "gone": Metric(1.0, "s", "lower")})
    new = _run({"a": Metric(1.0, "s", "lower"), "added": Metric(1.0, "s", "lower")})

    comparison = compare(base, new)

    assert comparison.only_in_baseline == [f"{NODEID}::gone"]
    assert comparison.only_in_current == [f"{NODEID}::added"]
    assert any("missing from the current run" in warning for warning in comparison.warnings())


def test_a_baseline_round_trips_and_keeps_every_run(tmp_path: Path) -> None:
    runs = [_samples_run(_normal(100, 5, 20, seed)) for seed in (30, 31, 32)]
    baseline = Baseline.from_results(*runs)
    path = baseline.save(baseline_path(tmp_path / "baselines", baseline.fingerprint))

    loaded = Baseline.load(path)

    assert path.name == f"{baseline.fingerprint.key}.json"
    assert loaded.to_dict() == baseline.to_dict()
    assert loaded.source_runs == 3 and len(loaded.metrics[f"{NODEID}::latency"].runs) == 3
    assert load_comparable(path).to_dict() == baseline.to_dict()
    results_path = runs[0].save(tmp_path / "results.json")
    assert set(load_comparable(results_path).metrics) == {f"{NODEID}::latency"}


def test_baselines_refuse_mixed_machines_and_damaged_files(tmp_path: Path) -> None:
    here = machine_fingerprint(tmp_path)
    elsewhere = dataclasses.replace(here, logical_cores=here.logical_cores + 64)
    metric = {"latency": Metric(1.0, "us", "lower", samples=[1.0, 2.0])}
    with pytest.raises(BaselineError, match="different machines"):
        Baseline.from_results(_run(metric, here), _run(metric, elsewhere))
    with pytest.raises(BaselineError, match="at least one run"):
        Baseline.from_results()

    document = Baseline.from_results(_run(metric, here)).to_dict()
    document["metrics"][f"{NODEID}::latency"]["direction"] = "sideways"
    damaged = tmp_path / "damaged.json"
    damaged.write_text(__import__("json").dumps(document))
    with pytest.raises(ResultsSchemaError, match="direction lower/higher"):
        load_comparable(damaged)
    document["schema_version"] = 0
    damaged.write_text(__import__("json").dumps(document))
    with pytest.raises(ResultsSchemaError, match="older"):
        load_comparable(damaged)


def test_bad_comparison_parameters_raise() -> None:
    run = _samples_run([1.0] * 10)
    with pytest.raises(ValueError, match="warn <= fail"):
        compare(run, run, warn=0.2, fail=0.1)
    with pytest.raises(ValueError, match="alpha"):
        compare(run, run, alpha=1.5)


def test_the_html_table_is_self_contained_and_escaped() -> None:
    base = _run({"<script>": Metric(1.0, "us", "lower", samples=_normal(100, 1, 20, 33))})
    new = _run({"<script>": Metric(1.0, "us", "lower", samples=_normal(140, 1, 20, 34))})

    page = compare(base, new).to_html()

    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'class="regression"' in page and "http" not in page
