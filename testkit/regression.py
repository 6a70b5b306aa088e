"""Baselines and a regression gate that does not cry wolf.

A metric is a *regression* only when two things agree: the change is larger than the threshold (5 % to
investigate, 15 % to block, per metric if needed) AND a statistical test on the raw distributions says the
change is real (Mann-Whitney U on raw samples, a bootstrap on HdrHistograms). Either alone misleads: a
threshold alone flags noise on a busy runner, a test alone flags a 0.5 % shift measured with a million samples.

Within-run samples cannot see between-job drift (the same code on a different day or VM is often 10 %+ off;
mui/mui-public#1712 saw a t-test *raise* false alarms for exactly this reason; a pooled histogram of a million
values makes a 1 % shift "significant"). So when the baseline holds ``MIN_RUNS_FOR_SPREAD`` or more runs, the
test is the one asv and pytest-benchmark make: each run contributes one statistic (its p99, its median, its
rate), and the new run's statistic is judged against the spread of the baseline's, a Student-t on the log of
the statistic with the baseline's run-to-run variance (a prediction interval for one new run, Welch's test for
several). The within-run tests remain only for baselines of one or two runs, which say so in the row's note.
The spread of the per-run statistics is also a *noise floor* that a blocking change must exceed.

Like ``asv compare`` (a change must exceed a factor *and* be statistically different) and ``pyperf compare_to``
("Not significant" when a t-test cannot tell), a change is flagged only when both agree. Each run-to-run row also
carries its *noise band*: the half-width of the interval the change would need to leave to be real. When the
change is inside a band wider than the warn threshold the verdict is ``inconclusive`` ("noise ±X %"), never
"ok" (the data could hide a blocking slowdown) and never "regression".
``python -m benchmarks.compare_error_rates`` measures how often this cries wolf and how often it catches a
planted slowdown.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, TypeGuard

import numpy as np
from hdrh.histogram import HdrHistogram

from testkit.environment import FingerprintError, MachineFingerprint
from testkit.results import (
    DIRECTIONS,
    SCHEMA_VERSION,
    ResultsSchemaError,
    RunResults,
    check_schema_version,
    read_json,
    write_json_atomically,
)

__all__ = [
    "BACK_TO_BACK_S",
    "BASELINE_KIND",
    "MIN_RUNS_FOR_SPREAD",
    "VERDICTS",
    "Baseline",
    "BaselineError",
    "Comparison",
    "ComparisonRow",
    "MetricRun",
    "MetricSeries",
    "RunToRunTest",
    "Thresholds",
    "baseline_path",
    "compare",
    "load_comparable",
]

BASELINE_KIND = "testkit-baseline"
Verdict = Literal["ok", "improved", "warn", "regression", "insufficient_data", "inconclusive"]
#: Verdicts from least to most alarming.
VERDICTS: tuple[str, ...] = ("ok", "improved", "insufficient_data", "inconclusive", "warn", "regression")
_KEY_SEPARATOR = "::"
#: A baseline of at least this many runs is judged by its run-to-run spread, not by within-run sampling error.
MIN_RUNS_FOR_SPREAD = 3
#: Baseline runs that all started within this many seconds were taken back to back: their spread cannot show how
#: a shared machine drifts over longer times (measured here: such a baseline gave 2 of 30 A/A false alarms).
BACK_TO_BACK_S = 300.0


class BaselineError(ResultsSchemaError):
    """A baseline cannot be built, read or used as asked."""


# ------------------------------------------------------------------------------------------------------ baseline


@dataclass(slots=True)
class MetricRun:
    """One run's measurement of a metric: raw samples, an encoded HdrHistogram, or only a value."""

    value: float
    samples: list[float] | None = None
    histogram: str | None = None

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"value": self.value}
        if self.samples is not None:
            document["samples"] = list(self.samples)
        if self.histogram is not None:
            document["histogram"] = self.histogram
        return document


@dataclass(slots=True)
class MetricSeries:
    """A metric across one or more runs, with the unit and which direction is better.

    ``histogram_unit`` is the unit of the histogram's values when it differs from ``unit``.
    """

    unit: str
    direction: str
    runs: list[MetricRun] = field(default_factory=list)
    histogram_unit: str | None = None

    @property
    def kind(self) -> Literal["samples", "histogram", "value"]:
        """The richest form every run has: samples beat histograms beat bare values."""
        if self.runs and all(run.samples for run in self.runs):
            return "samples"
        if self.runs and all(run.histogram for run in self.runs):
            return "histogram"
        return "value"

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"unit": self.unit, "direction": self.direction,
                                    "runs": [run.to_dict() for run in self.runs]}
        if self.histogram_unit is not None:
            document["histogram_unit"] = self.histogram_unit
        return document


@dataclass(slots=True)
class Baseline:
    """Per-metric distributions from one or more runs on one kind of machine.

    Metrics are keyed ``"<test nodeid>::<metric name>"``.
    """

    fingerprint: MachineFingerprint
    metrics: dict[str, MetricSeries]
    created: str
    source_runs: int
    run_started: list[str] = field(default_factory=list)

    @property
    def span_s(self) -> float | None:
        """Seconds between the first and the last run's start (``None`` when the runs' times are unknown)."""
        if len(self.run_started) < 2:
            return None
        times = [datetime.fromisoformat(text).timestamp() for text in self.run_started]
        return max(times) - min(times)

    @classmethod
    def from_results(cls, *runs: RunResults) -> Baseline:
        """Pool one or more runs; they must come from machines with the same fingerprint key."""
        if not runs:
            raise BaselineError("a baseline needs at least one run")
        fingerprint = runs[0].environment
        for other in runs[1:]:
            if other.environment.key != fingerprint.key:
                raise BaselineError(
                    "cannot pool runs from different machines into one baseline: "
                    f"{_describe_differences(fingerprint.differences(other.environment))}")
        metrics: dict[str, MetricSeries] = {}
        for run in runs:
            for test in run.tests:
                for name, metric in test.metrics.items():
                    key = f"{test.nodeid}{_KEY_SEPARATOR}{name}"
                    series = metrics.setdefault(
                        key, MetricSeries(metric.unit, metric.direction, histogram_unit=metric.histogram_unit))
                    mine = (series.unit, series.direction, series.histogram_unit)
                    theirs = (metric.unit, metric.direction, metric.histogram_unit)
                    if mine != theirs:
                        raise BaselineError(f"{key}: unit or direction changed between runs ({mine} vs {theirs})")
                    series.runs.append(MetricRun(metric.value, metric.samples, metric.histogram))
        return cls(fingerprint, metrics, datetime.now(UTC).isoformat(timespec="seconds"), len(runs),
                   [run.run.started for run in runs])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": BASELINE_KIND,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "source_runs": self.source_runs,
            "run_started": list(self.run_started),
            "fingerprint": self.fingerprint.to_dict(),
            "metrics": {key: series.to_dict() for key, series in sorted(self.metrics.items())},
        }

    @classmethod
    def from_dict(cls, document: Any) -> Baseline:
        if not isinstance(document, Mapping) or document.get("kind") != BASELINE_KIND:
            raise BaselineError(f"not a baseline document (kind must be {BASELINE_KIND!r})")
        check_schema_version(document.get("schema_version"), "baseline")
        try:
            fingerprint = MachineFingerprint.from_dict(document.get("fingerprint"))
        except FingerprintError as error:
            raise BaselineError(f"baseline.fingerprint: {error}") from error
        metrics_doc = document.get("metrics")
        if not isinstance(metrics_doc, Mapping):
            raise BaselineError("baseline.metrics: expected an object")
        metrics = {key: _series_from_dict(value, f"baseline.metrics.{key}") for key, value in metrics_doc.items()}
        created, source_runs = document.get("created"), document.get("source_runs")
        if not isinstance(created, str) or not isinstance(source_runs, int):
            raise BaselineError("baseline: 'created' must be a string and 'source_runs' an integer")
        run_started = document.get("run_started", [])
        if not isinstance(run_started, list) or not all(_iso_time(item) for item in run_started):
            raise BaselineError("baseline.run_started: expected a list of ISO 8601 timestamps")
        return cls(fingerprint, metrics, created, source_runs, run_started)

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_json_atomically(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        return cls.from_dict(read_json(path))


def _series_from_dict(document: Any, where: str) -> MetricSeries:
    if not isinstance(document, Mapping):
        raise BaselineError(f"{where}: expected an object")
    unit, direction, runs = document.get("unit"), document.get("direction"), document.get("runs")
    histogram_unit = document.get("histogram_unit")
    if not isinstance(unit, str) or direction not in DIRECTIONS or not isinstance(runs, list) or not runs:
        raise BaselineError(f"{where}: needs a string unit, direction lower/higher and a non-empty runs list")
    if histogram_unit is not None and not isinstance(histogram_unit, str):
        raise BaselineError(f"{where}.histogram_unit: expected a string")
    parsed: list[MetricRun] = []
    for index, run in enumerate(runs):
        value, samples, histogram = (run.get("value"), run.get("samples"), run.get("histogram")) \
            if isinstance(run, Mapping) else (None, None, None)
        if not _finite(value):
            raise BaselineError(f"{where}.runs[{index}].value: expected a finite number")
        if samples is not None and not (isinstance(samples, list) and all(_finite(item) for item in samples)):
            raise BaselineError(f"{where}.runs[{index}].samples: expected a list of finite numbers")
        if histogram is not None and not isinstance(histogram, str):
            raise BaselineError(f"{where}.runs[{index}].histogram: expected an encoded HdrHistogram string")
        parsed.append(MetricRun(value, samples, histogram))
    return MetricSeries(unit, direction, parsed, histogram_unit)


def _iso_time(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value) is not None
    except ValueError:
        return False


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def baseline_path(directory: str | os.PathLike[str], fingerprint: MachineFingerprint) -> Path:
    """Where the baseline for this kind of machine lives in a baselines directory (``<key>.json``)."""
    return Path(directory) / f"{fingerprint.key}.json"


def load_comparable(path: str | os.PathLike[str]) -> Baseline:
    """Read either a baseline file or a results file as something :func:`compare` accepts."""
    document = read_json(path)
    try:
        if isinstance(document, Mapping) and document.get("kind") == BASELINE_KIND:
            return Baseline.from_dict(document)
        return Baseline.from_results(RunResults.from_dict(document))
    except ResultsSchemaError as error:
        raise type(error)(f"{path}: {error}") from error


# ---------------------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Relative change that earns a warning (investigate) and one that blocks."""

    warn: float = 0.05
    fail: float = 0.15

    def __post_init__(self) -> None:
        if not (0 < self.warn <= self.fail):
            raise ValueError(f"thresholds need 0 < warn <= fail, got warn={self.warn}, fail={self.fail}")


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One metric's comparison. ``delta_relative`` is ``current / baseline - 1`` (sign as measured)."""

    metric: str
    unit: str
    direction: str
    statistic: str
    baseline: float
    current: float
    delta_relative: float | None
    p_value: float | None
    verdict: Verdict
    method: str
    n_baseline: int
    n_current: int
    noise_floor: float
    thresholds: Thresholds
    note: str = ""
    noise_band: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "unit": self.unit, "direction": self.direction, "statistic": self.statistic,
            "baseline": self.baseline, "current": self.current, "delta_relative": self.delta_relative,
            "p_value": self.p_value, "verdict": self.verdict, "method": self.method,
            "n_baseline": self.n_baseline, "n_current": self.n_current, "noise_floor": self.noise_floor,
            "noise_band": self.noise_band,
            "warn": self.thresholds.warn, "fail": self.thresholds.fail, "note": self.note,
        }


@dataclass(slots=True)
class Comparison:
    """The outcome of :func:`compare`: rows, what was missing on either side, and whether machines match."""

    rows: list[ComparisonRow]
    baseline_fingerprint: MachineFingerprint
    current_fingerprint: MachineFingerprint
    alpha: float
    thresholds: Thresholds
    only_in_baseline: list[str] = field(default_factory=list)
    only_in_current: list[str] = field(default_factory=list)
    baseline_runs: int = 0
    baseline_span_s: float | None = None

    @property
    def fingerprint_mismatch(self) -> bool:
        return self.baseline_fingerprint.key != self.current_fingerprint.key

    @property
    def fingerprint_differences(self) -> dict[str, tuple[Any, Any]]:
        return self.baseline_fingerprint.differences(self.current_fingerprint)

    @property
    def regressions(self) -> list[ComparisonRow]:
        return [row for row in self.rows if row.verdict == "regression"]

    @property
    def blocking(self) -> bool:
        """True when any metric regressed beyond its fail threshold, provably."""
        return bool(self.regressions)

    @property
    def unresolved(self) -> list[ComparisonRow]:
        """Inconclusive rows whose measured change is worse than the fail threshold: the runs' spread cannot
        tell that regression from noise, so the gate cannot say the code did not regress (it must not pass)."""
        def worse_by(row: ComparisonRow) -> float:
            delta = row.delta_relative or 0.0
            return delta if row.direction == "lower" else -delta

        return [row for row in self.rows
                if row.verdict == "inconclusive" and worse_by(row) > row.thresholds.fail]

    def counts(self) -> dict[str, int]:
        return {verdict: sum(row.verdict == verdict for row in self.rows) for verdict in VERDICTS}

    def warnings(self) -> list[str]:
        """Things a reader must not miss: different machines, metrics that disappeared."""
        messages = []
        if self.fingerprint_mismatch:
            messages.append(
                f"machine fingerprints differ (baseline {self.baseline_fingerprint.key}, current "
                f"{self.current_fingerprint.key}): {_describe_differences(self.fingerprint_differences)}; "
                "deltas may reflect the machine, not the code")
        span = self.baseline_span_s
        if self.baseline_runs >= MIN_RUNS_FOR_SPREAD and span is not None and span < BACK_TO_BACK_S:
            messages.append(
                f"the baseline's {self.baseline_runs} runs started within {span:.0f} s of each other: their spread "
                "cannot show how this machine drifts over longer times, so noise bands may be too narrow; "
                "make baseline runs at different times")
        if self.only_in_baseline:
            messages.append(f"{len(self.only_in_baseline)} baseline metric(s) missing from the current run: "
                            + ", ".join(self.only_in_baseline[:5]) + (" ..." if len(self.only_in_baseline) > 5 else ""))
        return messages

    def summary(self) -> str:
        counts = self.counts()
        parts = ", ".join(f"{counts[v]} {v}" for v in reversed(VERDICTS) if counts[v])
        return (f"{len(self.rows)} metric(s): {parts or 'none compared'} "
                f"(warn {self.thresholds.warn:.0%}, fail {self.thresholds.fail:.0%}, alpha {self.alpha:g})")

    def format_table(self) -> str:
        """A plain-text table for a terminal or a CI log."""
        header = ("metric", "stat", "unit", "baseline", "current", "delta", "noise", "p-value", "verdict")
        lines = [tuple(_table_cells(row)) for row in self.rows]
        widths = [max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i])
                  for i in range(len(header))]
        numeric = {3, 4, 5, 6, 7}

        def render(cells: Sequence[str]) -> str:
            return "  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                             for i, cell in enumerate(cells)).rstrip()

        output = [f"WARNING: {message}" for message in self.warnings()]
        output += [render(header), render(["-" * width for width in widths])]
        output += [render(line) for line in lines]
        output.append(self.summary())
        return "\n".join(output)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha, "warn": self.thresholds.warn, "fail": self.thresholds.fail,
            "blocking": self.blocking, "counts": self.counts(),
            "fingerprint_mismatch": self.fingerprint_mismatch,
            "fingerprint_differences": {k: list(v) for k, v in self.fingerprint_differences.items()},
            "baseline_fingerprint": self.baseline_fingerprint.key, "current_fingerprint": self.current_fingerprint.key,
            "only_in_baseline": list(self.only_in_baseline), "only_in_current": list(self.only_in_current),
            "rows": [row.to_dict() for row in self.rows],
            "baseline_runs": self.baseline_runs, "baseline_span_s": self.baseline_span_s,
        }

    def to_html(self, title: str = "testkit regression comparison") -> str:
        """A small self-contained HTML page (no scripts, no external files)."""
        header = ("metric", "stat", "unit", "baseline", "current", "delta", "noise", "p-value", "verdict", "note")
        body = "\n".join(
            f'<tr class="{row.verdict}">' + "".join(f"<td>{html.escape(cell)}</td>" for cell in _table_cells(row))
            + f"<td>{html.escape(row.note)}</td></tr>" for row in self.rows)
        warnings = "".join(f'<p class="warning">WARNING: {html.escape(m)}</p>' for m in self.warnings())
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
td:first-child, td:nth-child(2), td:nth-child(3), td:last-child {{ text-align: left; }}
th {{ background: #eee; }}
tr.regression td {{ background: #f8d0d0; }} tr.warn td {{ background: #fbefc4; }}
tr.improved td {{ background: #d4f0d4; }} tr.insufficient_data td, tr.inconclusive td {{ color: #777; }}
.warning {{ color: #a00; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{warnings}<p>{html.escape(self.summary())}</p>
<table><thead><tr>{"".join(f"<th>{h}</th>" for h in header)}</tr></thead>
<tbody>
{body}
</tbody></table>
<p>A metric is a regression only if its change exceeds the fail threshold (and the baseline's between-run noise
floor) and the statistical test gives p &lt; {self.alpha:g}. "noise" is the half-width of the
{1 - self.alpha:.0%} interval of the change from the runs' spread; a change inside a band wider than the warn
threshold is <em>inconclusive</em>, neither "no change" nor a regression.</p>
</body></html>
"""


def _table_cells(row: ComparisonRow) -> list[str]:
    delta = "n/a" if row.delta_relative is None else f"{row.delta_relative:+.1%}"
    band = "-" if row.noise_band is None else f"±{row.noise_band:.1%}"
    p_value = "-" if row.p_value is None else f"{row.p_value:.2g}"
    return [row.metric, row.statistic, row.unit, _number(row.baseline), _number(row.current), delta, band, p_value,
            row.verdict.upper() if row.verdict == "regression" else row.verdict]


def _number(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _describe_differences(differences: Mapping[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{part}: {a!r} -> {b!r}" for part, (a, b) in differences.items()) or "no key part differs"


def compare(base: Baseline | RunResults, new: Baseline | RunResults, *, warn: float = 0.05, fail: float = 0.15,
            per_metric_thresholds: Mapping[str, Thresholds | tuple[float, float]] | None = None,
            alpha: float = 0.01, min_samples: int = 5, quantiles: Sequence[float] = (50.0, 99.0),
            bootstrap_resamples: int = 2000, seed: int = 0) -> Comparison:
    """Compare every metric the two sides share.

    ``per_metric_thresholds`` maps a metric key or bare metric name, or a glob pattern over either, to
    ``Thresholds`` or ``(warn, fail)``; the first matching entry wins. Raw-sample metrics are compared on their
    median with Mann-Whitney U; histogram metrics on each of ``quantiles`` with a bootstrap of that quantile
    (``bootstrap_resamples`` replicates per side, deterministic for a given ``seed``).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    default = Thresholds(warn, fail)
    overrides = [(pattern, value if isinstance(value, Thresholds) else Thresholds(*value))
                 for pattern, value in (per_metric_thresholds or {}).items()]
    baseline = base if isinstance(base, Baseline) else Baseline.from_results(base)
    current = new if isinstance(new, Baseline) else Baseline.from_results(new)
    rng = np.random.default_rng(seed)
    rows: list[ComparisonRow] = []
    for key in sorted(baseline.metrics.keys() & current.metrics.keys()):
        before, after = baseline.metrics[key], current.metrics[key]
        if after.direction != before.direction:
            raise BaselineError(f"{key}: direction changed from {before.direction} to {after.direction}")
        limits = _thresholds_for(key, overrides, default)
        unit_note = "" if after.unit == before.unit else f"unit changed {before.unit} -> {after.unit}"
        kind_before, kind_after = before.kind, after.kind
        if len(before.runs) >= MIN_RUNS_FOR_SPREAD:
            rows.extend(_compare_across_runs(key, before, after, quantiles, limits, alpha, unit_note))
        elif kind_before == kind_after == "samples":
            rows.append(_compare_samples(key, before, after, limits, alpha, min_samples, unit_note))
        elif kind_before == kind_after == "histogram":
            before_unit, after_unit = before.histogram_unit or before.unit, after.histogram_unit or after.unit
            unit_note = "" if after_unit == before_unit else f"unit changed {before_unit} -> {after_unit}"
            rows.extend(_compare_histograms(key, before, after, quantiles, limits, alpha, min_samples,
                                            bootstrap_resamples, rng, unit_note))
        else:
            rows.append(_compare_values(key, before, after, limits, unit_note))
    return Comparison(
        rows=rows,
        baseline_fingerprint=baseline.fingerprint,
        current_fingerprint=current.fingerprint,
        alpha=alpha,
        thresholds=default,
        only_in_baseline=sorted(baseline.metrics.keys() - current.metrics.keys()),
        only_in_current=sorted(current.metrics.keys() - baseline.metrics.keys()),
        baseline_runs=baseline.source_runs,
        baseline_span_s=baseline.span_s,
    )


def _thresholds_for(key: str, overrides: Iterable[tuple[str, Thresholds]], default: Thresholds) -> Thresholds:
    name = key.rsplit(_KEY_SEPARATOR, 1)[-1]
    for pattern, limits in overrides:
        if fnmatchcase(key, pattern) or fnmatchcase(name, pattern):
            return limits
    return default


def _relative(before: float, after: float) -> float | None:
    if before == 0:
        return 0.0 if after == 0 else None
    return after / before - 1.0


def _noise_floor(per_run: Sequence[float], pooled: float) -> float:
    """The largest relative deviation of one run's statistic from the pooled one (0 with a single run)."""
    if len(per_run) < 2 or pooled == 0:
        return 0.0
    return float(max(abs(value / pooled - 1.0) for value in per_run))


def _judge(delta: float | None, p_value: float | None, direction: str, limits: Thresholds, alpha: float,
           noise_floor: float) -> tuple[Verdict, str]:
    """The verdict rules: magnitude AND significance, in the direction that is worse for this metric."""
    if delta is None:
        return "insufficient_data", "baseline is zero: relative change undefined"
    magnitude = abs(delta)
    if p_value is None:
        if magnitude <= limits.warn:
            return "ok", "no distribution to test; change within the warn threshold"
        return "insufficient_data", "no distribution to test (single value or too few samples)"
    if p_value >= alpha:
        return "ok", "" if magnitude <= limits.warn else "change not statistically significant"
    worse = delta > 0 if direction == "lower" else delta < 0
    if not worse:
        return ("improved", "") if magnitude > limits.warn else ("ok", "")
    if magnitude > max(limits.fail, noise_floor):
        return "regression", ""
    if magnitude > limits.warn:
        note = "within the baseline's between-run noise floor" if magnitude > limits.fail else ""
        return "warn", note
    return "ok", ""


def _compare_samples(key: str, before: MetricSeries, after: MetricSeries, limits: Thresholds, alpha: float,
                     min_samples: int, unit_note: str) -> ComparisonRow:
    from scipy import stats  # imported here: it costs 0.5 s that every `testkit` command start would pay

    base_runs = [np.asarray(run.samples or [], dtype=float) for run in before.runs]
    new_runs = [np.asarray(run.samples or [], dtype=float) for run in after.runs]
    base_samples, new_samples = np.concatenate(base_runs), np.concatenate(new_runs)
    base_center, new_center = float(np.median(base_samples)), float(np.median(new_samples))
    floor = max(_noise_floor([float(np.median(samples)) for samples in base_runs], base_center),
                _noise_floor([float(np.median(samples)) for samples in new_runs], new_center))
    p_value: float | None = None
    if len(base_samples) >= min_samples and len(new_samples) >= min_samples:
        if np.ptp(np.concatenate([base_samples, new_samples])) == 0:
            p_value = 1.0
        else:
            p_value = float(stats.mannwhitneyu(base_samples, new_samples, alternative="two-sided").pvalue)
    delta = _relative(base_center, new_center)
    verdict, note = _judge(delta, p_value, before.direction, limits, alpha, floor)
    return ComparisonRow(key, after.unit, before.direction, "median", base_center, new_center, delta, p_value,
                         verdict, "mann-whitney-u", len(base_samples), len(new_samples), floor, limits,
                         "; ".join(filter(None, [note, unit_note])))


def _merged_histogram(series: MetricSeries) -> tuple[HdrHistogram, list[HdrHistogram]]:
    decoded = []
    for run in series.runs:
        try:
            decoded.append(HdrHistogram.decode(run.histogram))
        except Exception as error:  # hdrh raises assorted zlib/base64/struct errors on damaged input
            raise BaselineError(f"a histogram cannot be decoded ({error})") from error
    merged = HdrHistogram(min(h.lowest_trackable_value for h in decoded),
                          max(h.highest_trackable_value for h in decoded),
                          max(h.significant_figures for h in decoded))
    for histogram in decoded:
        merged.add(histogram)
    return merged, decoded


def _distribution(histogram: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """The histogram's recorded values (each bucket's highest equivalent value) and their CDF.

    Reads the counts array with numpy: the library's recorded-value iterator walks every sub-bucket in Python.
    """
    counts = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len]
    indices = np.flatnonzero(counts)
    values = np.array([histogram.get_highest_equivalent_value(histogram.get_value_from_index(int(index)))
                       for index in indices], dtype=float)
    cdf = np.cumsum(counts[indices], dtype=float)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return values, cdf


def _bootstrap_quantile(distribution: tuple[np.ndarray, np.ndarray], count: int, quantile: float,
                        resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the sample quantile, drawn exactly rather than by resampling every value.

    The k-th smallest of n uniform draws follows Beta(k, n - k + 1); mapping it through the histogram's
    inverse CDF gives the k-th smallest of n draws from the histogram, i.e. one bootstrap replicate of the
    quantile, in O(log buckets) instead of O(n).
    """
    values, cdf = distribution
    k = min(count, max(1, math.ceil(quantile / 100.0 * count)))
    uniforms = rng.beta(k, count - k + 1, size=resamples)
    return values[np.minimum(np.searchsorted(cdf, uniforms, side="left"), len(values) - 1)]


def _compare_histograms(key: str, before: MetricSeries, after: MetricSeries, quantiles: Sequence[float],
                        limits: Thresholds, alpha: float, min_samples: int, resamples: int,
                        rng: np.random.Generator, unit_note: str) -> list[ComparisonRow]:
    base_merged, base_runs = _merged_histogram(before)
    new_merged, new_runs = _merged_histogram(after)
    n_base, n_new = base_merged.get_total_count(), new_merged.get_total_count()
    testable = n_base >= min_samples and n_new >= min_samples
    base_distribution = _distribution(base_merged) if testable else None
    new_distribution = _distribution(new_merged) if testable else None
    rows = []
    for quantile in quantiles:
        base_center = float(base_merged.get_value_at_percentile(quantile))
        new_center = float(new_merged.get_value_at_percentile(quantile))
        floor = max(_noise_floor([float(h.get_value_at_percentile(quantile)) for h in base_runs], base_center),
                    _noise_floor([float(h.get_value_at_percentile(quantile)) for h in new_runs], new_center))
        p_value: float | None = None
        if base_distribution is not None and new_distribution is not None:
            differences = (_bootstrap_quantile(new_distribution, n_new, quantile, resamples, rng)
                           - _bootstrap_quantile(base_distribution, n_base, quantile, resamples, rng))
            below, above = int(np.sum(differences <= 0)), int(np.sum(differences >= 0))
            p_value = min(1.0, 2.0 * (min(below, above) + 1) / (resamples + 1))
        delta = _relative(base_center, new_center)
        verdict, note = _judge(delta, p_value, before.direction, limits, alpha, floor)
        rows.append(ComparisonRow(key, after.histogram_unit or after.unit, before.direction, f"p{quantile:g}",
                                  base_center, new_center,
                                  delta, p_value, verdict, "bootstrap", n_base, n_new, floor, limits,
                                  "; ".join(filter(None, [note, unit_note]))))
    return rows


def _per_run_statistics(series: MetricSeries, kind: str, quantile: float | None) -> list[float]:
    """One figure per run: a histogram's quantile, the samples' median, or the bare value."""
    if kind == "histogram":
        assert quantile is not None
        out = []
        for run in series.runs:
            try:
                histogram = HdrHistogram.decode(run.histogram)
            except Exception as error:  # hdrh raises assorted zlib/base64/struct errors on damaged input
                raise BaselineError(f"a histogram cannot be decoded ({error})") from error
            out.append(float(histogram.get_value_at_percentile(quantile)))
        return out
    if kind == "samples":
        return [float(np.median(run.samples)) for run in series.runs]
    return [float(run.value) for run in series.runs]


@dataclass(frozen=True, slots=True)
class RunToRunTest:
    """Is the new runs' statistic outside the baseline runs' spread? On log statistics, so changes are ratios.

    ``change`` is ``new / baseline - 1`` of the geometric means; ``band`` is the half-width of the
    ``1 - alpha`` interval of that change, as a ratio (``exp(t_crit * se) - 1``): a change inside it cannot be
    told from run-to-run noise. One new run: a prediction interval, ``se = s * sqrt(1 + 1/k)`` with ``k - 1``
    degrees of freedom (asv's and pyperf's question "does this run fall among the reference runs?"). Several:
    Welch's standard error and degrees of freedom.
    """

    change: float
    band: float
    p_value: float

    @classmethod
    def of(cls, before: Sequence[float], after: Sequence[float], alpha: float) -> RunToRunTest | None:
        """``None`` when a statistic is not positive (no log) or the baseline has fewer than two runs."""
        from scipy import stats  # imported here: it costs 0.5 s that every `testkit` command start would pay

        if len(before) < 2 or min(min(before), min(after)) <= 0:
            return None
        base, new = np.log(np.asarray(before, dtype=float)), np.log(np.asarray(after, dtype=float))
        gap = float(np.mean(new) - np.mean(base))
        base_variance = float(np.var(base, ddof=1))
        if len(new) >= 2:
            new_variance = float(np.var(new, ddof=1))
            parts = (base_variance / len(base), new_variance / len(new))
            se = math.sqrt(sum(parts))
            denominator = parts[0] ** 2 / (len(base) - 1) + parts[1] ** 2 / (len(new) - 1)
            freedom = sum(parts) ** 2 / denominator if denominator > 0 else float(len(base) + len(new) - 2)
        else:
            se = math.sqrt(base_variance * (1 + 1 / len(base)))
            freedom = float(len(base) - 1)
        if se == 0:
            return cls(math.expm1(gap), 0.0, 1.0 if gap == 0 else 0.0)
        critical = float(stats.t.ppf(1 - alpha / 2, freedom))
        p_value = float(2 * stats.t.sf(abs(gap) / se, freedom))
        return cls(math.expm1(gap), math.expm1(critical * se), p_value)


def _judge_against_noise(test: RunToRunTest, direction: str, limits: Thresholds, alpha: float,
                         noise_floor: float) -> tuple[Verdict, str]:
    """asv's rule (a change must exceed a factor AND be significant), plus an honest third answer.

    A change that the runs' spread cannot resolve is *inconclusive* when the band is wider than the warn
    threshold: the data cannot say "no change" (a blocking slowdown would look the same) nor "regression".
    Only a band narrower than the warn threshold lets a non-significant change be "ok".
    """
    if test.p_value >= alpha:
        if test.band > limits.warn:
            return "inconclusive", (f"inconclusive: noise ±{test.band:.1%} is wider than the change "
                                    f"({test.change:+.1%}); more or steadier runs needed")
        return "ok", ""
    return _judge(test.change, test.p_value, direction, limits, alpha, noise_floor)


def _compare_across_runs(key: str, before: MetricSeries, after: MetricSeries, quantiles: Sequence[float],
                         limits: Thresholds, alpha: float, unit_note: str) -> list[ComparisonRow]:
    """Judge each statistic by the baseline's run-to-run spread (see the module docstring)."""
    kind = "histogram" if before.kind == after.kind == "histogram" else (
        "samples" if before.kind == after.kind == "samples" else "value")
    unit = (after.histogram_unit or after.unit) if kind == "histogram" else after.unit
    if kind == "histogram" and (before.histogram_unit or before.unit) != unit:
        unit_note = f"unit changed {before.histogram_unit or before.unit} -> {unit}"
    rows = []
    for quantile in quantiles if kind == "histogram" else (None,):
        base_runs = _per_run_statistics(before, kind, quantile)
        new_runs = _per_run_statistics(after, kind, quantile)
        positive = min(min(base_runs), min(new_runs)) > 0
        base_center = float(np.exp(np.mean(np.log(base_runs)))) if positive else float(np.mean(base_runs))
        new_center = float(np.exp(np.mean(np.log(new_runs)))) if positive else float(np.mean(new_runs))
        floor = _noise_floor(base_runs, base_center)
        test = RunToRunTest.of(base_runs, new_runs, alpha)
        delta = _relative(base_center, new_center)
        if test is None:
            verdict, note = _judge(delta, None, before.direction, limits, alpha, floor)
        else:
            verdict, note = _judge_against_noise(test, before.direction, limits, alpha, floor)
        statistic = f"p{quantile:g}" if quantile is not None else ("median" if kind == "samples" else "value")
        rows.append(ComparisonRow(key, unit, before.direction, statistic, base_center, new_center, delta,
                                  None if test is None else test.p_value,
                                  verdict, f"run-to-run t ({len(base_runs)} vs {len(new_runs)} runs)",
                                  len(base_runs), len(new_runs), floor, limits,
                                  "; ".join(filter(None, [note, unit_note])),
                                  None if test is None else test.band))
    return rows


def _compare_values(key: str, before: MetricSeries, after: MetricSeries, limits: Thresholds,
                    unit_note: str) -> ComparisonRow:
    base_center = float(np.mean([run.value for run in before.runs]))
    new_center = float(np.mean([run.value for run in after.runs]))
    delta = _relative(base_center, new_center)
    verdict, note = _judge(delta, None, before.direction, limits, 0.0, 0.0)
    return ComparisonRow(key, after.unit, before.direction, "value", base_center, new_center, delta, None,
                         verdict, "none", len(before.runs), len(after.runs), 0.0, limits,
                         "; ".join(filter(None, [note, unit_note])))
