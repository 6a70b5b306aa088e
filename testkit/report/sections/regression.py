"""Regression: each metric's baseline and current figure, the change, the statistical verdict of
:mod:`testkit.regression`, and the distribution of both runs so a reader sees whether a delta is a shift or
noise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from testkit.percentiles import LatencyRecorder, PercentileError
from testkit.report import plots
from testkit.report.formatting import Tone, format_quantity, tone_of
from testkit.report.html import Section, Tile, figure, note, table
from testkit.report.inputs import ReportInput
from testkit.report.sections.latency import histogram_unit, latency_curve

__all__ = ["render_regression"]

#: Metrics whose distributions are drawn at most (most alarming first).
MAX_PANELS = 12
_SEPARATOR = "::"
_ALARM = {"regression": 0, "warn": 1, "inconclusive": 2, "improved": 3, "insufficient_data": 4, "ok": 5}


def render_regression(data: ReportInput) -> Section | None:
    rows = _rows(data)
    if not rows:
        return None
    rows.sort(key=lambda r: (_ALARM.get(str(r.get("verdict")), 5), str(r.get("metric"))))
    counts = {verdict: sum(r.get("verdict") == verdict for r in rows) for verdict in _ALARM}
    tone: Tone = "fail" if counts["regression"] else ("warn" if counts["warn"] else "pass")
    tiles = (
        Tile("metrics compared", f"{len(rows):,}"),
        Tile("regressions", f"{counts['regression']:,}", "fail" if counts["regression"] else "pass"),
        Tile("to investigate", f"{counts['warn']:,}", "warn" if counts["warn"] else "pass"),
    )
    parts: list[str] = []
    for message in (data.comparison or {}).get("warnings", []):
        parts.append(note(f"Warning: {message}", "warn"))
    if data.comparison:
        comparison = data.comparison
        parts.append(note(
            f"A change is a regression only when it exceeds the fail threshold "
            f"({100 * float(comparison.get('fail', 0.15)):.0f} %) and the statistical test says it is real "
            f"(p < {comparison.get('alpha', 0.01)}); above {100 * float(comparison.get('warn', 0.05)):.0f} % it is "
            "worth a look."))
    current = {f"{t.nodeid}{_SEPARATOR}{name}": metric
               for t in data.tests() for name, metric in (t.test.get("metrics") or {}).items()}
    units = {key: histogram_unit(metric) for key, metric in current.items()
             if metric.get("histogram") and any(r.get("metric") == key for r in rows)}
    parts.append(table(pd.DataFrame([_table_row(r, units) for r in rows]), badges=("verdict",)))
    panels = _panels(data, rows, current)
    if panels:
        png = plots.regression_distributions(panels, "Baseline vs current")
        parts.append(figure(png, "distributions of baseline and current runs",
                            "Grey: baseline; coloured: current (red when the verdict is a regression)."))
    return Section("regression", "Regression vs baseline", "".join(parts), tone, tiles)


def _rows(data: ReportInput) -> list[dict[str, Any]]:
    """Rows of the comparison, or of a ``regression`` list carried in a results document."""
    rows: list[dict[str, Any]] = [dict(r) for r in (data.comparison or {}).get("rows", [])]
    for _, carried in data.extra("regression"):
        items = carried.get("rows", []) if isinstance(carried, Mapping) else carried
        rows.extend(dict(r) for r in items if isinstance(r, Mapping))
    for row in rows:
        if row.get("delta_relative") is None and row.get("delta") is not None:
            row["delta_relative"] = row["delta"]
    return rows


def _table_row(row: Mapping[str, Any], histogram_units: Mapping[str, str]) -> dict[str, Any]:
    key = str(row.get("metric", "?"))
    test, name = _split(key)
    unit = _row_unit(row, histogram_units)
    delta = row.get("delta_relative")
    p_value = row.get("p_value")
    return {
        "metric": name + (f" ({row['statistic']})" if row.get("statistic") else ""),
        "test": test,
        "baseline": format_quantity(row.get("baseline"), unit),
        "current": format_quantity(row.get("current"), unit),
        "delta": "—" if delta is None else f"{100 * float(delta):+.1f}\u00a0%",
        "noise": "—" if row.get("noise_band") is None else f"±{100 * float(row['noise_band']):.1f}\u00a0%",
        "p-value": "—" if p_value is None else ("< 0.0001" if p_value < 1e-4 else f"{p_value:.4f}"),
        "samples": f"{_count(row.get('n_baseline'))}\u00a0/\u00a0{_count(row.get('n_current'))}",
        "verdict": row.get("verdict"),
        "note": row.get("note", ""),
    }


def _row_unit(row: Mapping[str, Any], histogram_units: Mapping[str, str]) -> str:
    """Quantiles of a histogram comparison are in the histogram's unit, which may not be the metric's."""
    key = str(row.get("metric", ""))
    if key in histogram_units and str(row.get("method", "")).startswith("bootstrap"):
        return histogram_units[key]
    return str(row.get("unit", ""))


def _panels(data: ReportInput, rows: Sequence[Mapping[str, Any]],
            current: Mapping[str, Mapping[str, Any]]) -> list[plots.RegressionPanel]:
    panels: list[plots.RegressionPanel] = []
    seen: set[str] = set()
    for row in rows:
        key = str(row.get("metric"))
        if key in seen or len(panels) >= MAX_PANELS:
            continue
        seen.add(key)
        tone = tone_of(row.get("verdict"))
        test, name = _split(key)
        label = name + (f" {test[test.index('['):]}" if "[" in test else "")
        unit = str(row.get("unit", ""))
        if row.get("baseline_samples") and row.get("current_samples"):
            panels.append(plots.RegressionPanel(label, unit, tone, row["baseline_samples"], row["current_samples"]))
            continue
        series = data.baseline.metrics.get(key) if data.baseline is not None else None
        now = current.get(key)
        if series is None or now is None:
            continue
        base_samples = [v for run in series.runs for v in (run.samples or [])]
        if base_samples and now.get("samples"):
            panels.append(plots.RegressionPanel(label, unit, tone, base_samples, now["samples"]))
        elif all(run.histogram for run in series.runs) and now.get("histogram"):
            merged = _merged_curve([run.histogram for run in series.runs if run.histogram])
            current_curve = latency_curve(now)
            if merged[1] and current_curve.values:
                panels.append(plots.RegressionPanel(label, current_curve.unit, tone, baseline_curve=merged,
                                                    current_curve=(current_curve.percentiles, current_curve.values)))
    return panels


def _merged_curve(histograms: Sequence[str]) -> tuple[list[float], list[float]]:
    """The percentile curve of the baseline's runs pooled into one histogram."""
    try:
        recorders = [LatencyRecorder.decode(h) for h in histograms]
        pooled = recorders[0].copy().merge(*recorders[1:])
    except (PercentileError, IndexError):
        return [], []
    curve = latency_curve({"histogram": pooled.encode()})
    return curve.percentiles, curve.values


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "—"


def _split(key: str) -> tuple[str, str]:
    if _SEPARATOR in key:
        test, name = key.rsplit(_SEPARATOR, 1)
        return test, name
    return "—", key
