"""Latency: percentile distributions (HdrHistogram style, ours and the peers' on one plot per measurement) and
throughput and latency over time with the fault windows shaded.

Only a handful of figures are drawn whatever the number of tests: one per measured quantity, not per test,
and a capped number of timelines chosen for interest (faults first, then failures).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from testkit.percentiles import LatencyRecorder, PercentileError, format_ms
from testkit.report import plots
from testkit.report.html import Section, Tile, details, escape, figure, note, table
from testkit.report.inputs import ReportInput, TestView

__all__ = ["TIME_UNITS", "Curve", "histogram_unit", "latency_curve", "percentile_figures", "render_latency"]

TIME_UNITS = frozenset({"ns", "us", "µs", "ms", "s"})
_NS_PER: dict[str, float] = {"ns": 1.0, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9}
#: Distribution plots drawn at most (one per measured quantity); the rest are named in a note.
MAX_DISTRIBUTIONS = 8
#: Timelines drawn at most (a group of stores side by side counts once).
MAX_TIMELINES = 6
#: Stores side by side in one timeline figure at most.
MAX_SIDE_BY_SIDE = 3
#: ``"burst [sqlite]"``: a timeline of the named store.
_PER_STORE = re.compile(r"\s*\[[^\[\]]+\]$")
#: Rows of the percentile table at most.
MAX_TABLE_ROWS = 500
#: Percentiles in the table.
TABLE_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
#: Raw samples a metric needs before its percentile curve is drawn.
MIN_SAMPLES = 50
#: Curves per distribution plot.
MAX_CURVES = 6

_SERIES_NAMES: dict[str, tuple[str, ...]] = {
    "offered": ("offered", "intended", "scheduled"),
    "completed": ("completed", "throughput", "achieved", "ops"),
    "errors": ("errors", "error", "failed"),
    "p50": ("p50",),
    "p99": ("p99",),
}


@dataclass(frozen=True, slots=True)
class _Measured:
    view: TestView
    name: str
    metric: Mapping[str, Any]


def render_latency(data: ReportInput) -> Section | None:
    primary = data.primary_sut
    groups: dict[tuple[Any, str], list[_Measured]] = {}
    for view in data.tests():
        for name, metric in (view.test.get("metrics") or {}).items():
            if metric.get("unit") in TIME_UNITS and (metric.get("histogram") or _enough(metric.get("samples"))):
                groups.setdefault((view.family, name), []).append(_Measured(view, name, metric))
    timelines = _pick_timelines(data)
    if not groups and not timelines:
        return None
    parts: list[str] = []
    tiles: list[Tile] = []
    if groups:
        ranked = sorted(groups.values(), key=lambda g: (-len({m.view.test.get("sut") for m in g}), -len(g)))
        parts.append("<h3>Percentile distribution</h3>")
        parts.append('<p class="note">Latency at each percentile; the x axis stretches the tail '
                     "(log of 1/(1-p)), so p99.9 and p99.99 get as much room as the median. Solid: "
                     f"{escape(primary or 'system under test')}; dashed: peers.</p>")
        figures = [_distribution_figure(group, primary) for group in ranked[:MAX_DISTRIBUTIONS]]
        parts.append('<div class="grid2">' + "".join(figures) + "</div>")
        if len(ranked) > MAX_DISTRIBUTIONS:
            names = sorted({g[0].name for g in ranked[MAX_DISTRIBUTIONS:]})
            rest = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
            parts.append(note(f"{len(ranked) - MAX_DISTRIBUTIONS} more distributions not drawn ({rest}); "
                              "their percentiles are in the table below."))
        measured = [m for group in ranked for m in group]
        parts.append(details(f"Percentiles of every latency metric ({len(measured):,})",
                             _percentile_table(measured[:MAX_TABLE_ROWS])))
        tiles.append(Tile("latency distributions", f"{len(groups):,}"))
    if timelines:
        parts.append("<h3>Over time</h3>")
        parts.append('<p class="note">Throughput and latency per second; red bands are fault windows, amber bands '
                     'load bursts; the same load on several stores is drawn side by side.</p>')
        for group in timelines:
            parts.append(_timeline_figure(group))
    return Section("latency", "Latency and throughput", "".join(parts), "info", tuple(tiles))


@dataclass(frozen=True, slots=True)
class Curve:
    """A metric's percentile curve; ``unit`` is the unit of ``values`` (not always the metric's own)."""

    percentiles: list[float]
    values: list[float]
    max_value: float | None
    count: int | None
    unit: str


def latency_curve(metric: Mapping[str, Any]) -> Curve:
    """The percentile curve of a metric, from its HdrHistogram or else its raw samples."""
    unit = str(metric.get("unit", ""))
    blob = metric.get("histogram")
    if blob:
        try:
            recorder = LatencyRecorder.decode(blob)
        except PercentileError:
            recorder = None
        if recorder is not None and recorder.count:
            levels = _levels(recorder.count)
            found = recorder.percentiles(levels)
            return Curve(levels, [float(found[p]) for p in levels], float(recorder.max_ns), recorder.count,
                         _histogram_unit(metric, recorder))
    samples = np.asarray(metric.get("samples") or [], dtype=float)
    if not len(samples):
        return Curve([], [], None, None, unit)
    levels = _levels(len(samples))
    values = np.percentile(samples, levels, method="inverted_cdf")
    return Curve(levels, [float(v) for v in values], float(samples.max()), len(samples), unit)


def _levels(count: int) -> list[float]:
    """Percentile levels evenly spaced on the 1/(1-p) log axis, up to where ``count`` values still say something
    (beyond 1 - 1/count every level is the maximum). One pass over the histogram answers them all."""
    decades = float(np.log10(max(count, 2)))
    return [float(p) for p in 100.0 * (1.0 - 10.0 ** -np.linspace(0.0, decades, max(8, int(decades * 24))))]


def histogram_unit(metric: Mapping[str, Any]) -> str:
    """The unit a metric's histogram holds its values in (see :func:`_histogram_unit`)."""
    try:
        recorder = LatencyRecorder.decode(metric["histogram"])
    except (KeyError, PercentileError):
        return str(metric.get("unit", ""))
    return _histogram_unit(metric, recorder) if recorder.count else str(metric.get("unit", ""))


def _histogram_unit(metric: Mapping[str, Any], recorder: LatencyRecorder) -> str:
    """The unit the histogram was recorded in: ``histogram_unit`` when the writer said so. Otherwise the schema
    says the metric's own unit, but a writer that reports ``value`` in ms beside a LatencyRecorder's ns histogram
    and forgets ``histogram_unit`` is an easy mistake: pick the time unit in which the metric's value falls inside
    the histogram's range, preferring the metric's unit, then ns."""
    if metric.get("histogram_unit"):
        return str(metric["histogram_unit"])
    unit = str(metric.get("unit", ""))
    if unit not in _NS_PER:
        return unit
    value_ns = float(metric.get("value", 0.0)) * _NS_PER[unit]
    low, high = recorder.min_ns, recorder.max_ns
    for candidate in dict.fromkeys((unit, "ns", "us", "ms", "s")):
        in_candidate = value_ns / _NS_PER[candidate]
        if low / 2 <= in_candidate <= high * 2:
            return candidate
    return unit


def _distribution_figure(group: Sequence[_Measured], primary: str | None) -> str:
    ordered = sorted(group, key=lambda m: (m.view.test.get("sut") != primary, str(m.view.test.get("sut"))))
    suts = [str(m.view.test.get("sut") or "?") for m in ordered]
    curves = []
    unit = ""
    for measured, sut in zip(ordered[:MAX_CURVES], suts, strict=False):
        curve = latency_curve(measured.metric)
        if not curve.values:
            continue
        scale = _NS_PER.get(curve.unit, 1.0)  # every curve in ns, so stores recorded differently still compare
        label = sut if suts.count(sut) == 1 else f"{sut} · {measured.view.run.label}"
        curves.append(plots.PercentileCurve(
            label, curve.percentiles, [v * scale for v in curve.values], peer=sut != (primary or suts[0]),
            max_value=None if curve.max_value is None else curve.max_value * scale, count=curve.count))
        unit = "ns" if curve.unit in _NS_PER else curve.unit
    if not curves:
        return ""
    name = group[0].name
    function, params = group[0].view.family
    where = function.split("::", 1)[-1] + (" [" + ", ".join(f"{k}={v}" for k, v in params) + "]" if params else "")
    png = plots.percentile_distribution(curves, unit, f"{name} — {where}")
    return figure(png, f"percentile distribution of {name}", f"{name} in {function}")


def percentile_figures(metric: Mapping[str, Any]) -> dict[str, float] | None:
    """Count, percentiles and max of a latency metric in ns, computed exactly as the terminal summary does
    (:meth:`LatencyRecorder.summary` of the decoded histogram; raw samples: the inverted-CDF percentile)."""
    blob = metric.get("histogram")
    if blob:
        try:
            recorder = LatencyRecorder.decode(blob)
        except PercentileError:
            recorder = None
        if recorder is not None and recorder.count:
            per_ns = _NS_PER.get(_histogram_unit(metric, recorder), 1.0)
            summary = recorder.summary()
            return {"count": float(summary.count), "p50": summary.p50_ns * per_ns, "p90": summary.p90_ns * per_ns,
                    "p99": summary.p99_ns * per_ns, "p99.9": summary.p999_ns * per_ns,
                    "p99.99": summary.p9999_ns * per_ns, "max": summary.max_ns * per_ns}
    samples = np.asarray(metric.get("samples") or [], dtype=float)
    if not len(samples):
        return None
    per_ns = _NS_PER.get(str(metric.get("unit", "")), 1.0)
    values = np.percentile(samples, list(TABLE_PERCENTILES), method="inverted_cdf") * per_ns
    figures = {"count": float(len(samples))}
    figures.update({f"p{p:g}": float(v) for p, v in zip(TABLE_PERCENTILES, values, strict=True)})
    figures["max"] = float(samples.max()) * per_ns
    return figures


def _percentile_table(measured: Sequence[_Measured]) -> str:
    """Milliseconds with three decimals, as the terminal prints them: the two can be read side by side."""
    rows = []
    for m in measured:
        figures = percentile_figures(m.metric)
        if figures is None:
            continue
        row: dict[str, Any] = {"metric": escape(m.name), "test": escape(m.view.nodeid),
                               "sut": escape(m.view.test.get("sut") or "—"), "count": f"{int(figures['count']):,}"}
        for key in (*(f"p{p:g}" for p in TABLE_PERCENTILES), "max"):
            row[key] = f'<span data-percentile="{key}" data-ns="{figures[key]:.0f}">{format_ms(figures[key])} ms</span>'
        rows.append(row)
    frame = pd.DataFrame(rows)
    return table(frame, table_id="latency-percentiles", raw_html=tuple(frame.columns))


def _pick_timelines(data: ReportInput) -> list[list[tuple[TestView, Mapping[str, Any]]]]:
    """Timelines to draw, grouped so that the same load on several stores ("burst [lighthouse]", "burst
    [sqlite]", or one test per store) is drawn side by side; faults first, then failures."""
    groups: dict[tuple[Any, str], list[tuple[TestView, Mapping[str, Any]]]] = {}
    rank: dict[tuple[Any, str], tuple[bool, bool, str]] = {}
    for view in data.tests():
        for timeline in view.test.get("timelines") or []:
            columns = _columns(timeline)
            if any(key in columns for key in ("completed", "offered", "p50", "p99")):
                key = (view.family, _PER_STORE.sub("", str(timeline.get("name", ""))))
                groups.setdefault(key, []).append((view, timeline))
                has_faults = any(f.get("window") for f in view.test.get("faults") or [])
                failed = view.test["outcome"] in ("failed", "error")
                rank[key] = min(rank.get(key, (True, True, "")), (not has_faults, not failed, view.nodeid))
    ordered = sorted(groups, key=lambda key: rank[key])
    return [groups[key][:MAX_SIDE_BY_SIDE] for key in ordered[:MAX_TIMELINES]]


def _columns(timeline: Mapping[str, Any]) -> dict[str, str]:
    """Which stored series plays which role (offered, completed, errors, p50, p99)."""
    found: dict[str, str] = {}
    names = list((timeline.get("series") or {}).keys())
    for role, prefixes in _SERIES_NAMES.items():
        for name in names:
            if name.lower().startswith(prefixes) and role not in found:
                found[role] = name
    return found


def _timeline_figure(group: Sequence[tuple[TestView, Mapping[str, Any]]]) -> str:
    columns_drawn, shaded, outside = [], 0, 0
    for view, timeline in group:
        series, windows, skipped = _timeline_series(view, timeline, titled=len(group) > 1)
        columns_drawn.append(series)
        shaded += len(windows)
        outside += skipped
    png = plots.timelines_side_by_side(columns_drawn)
    view = group[0][0]
    if len(group) == 1:
        caption = f"{view.nodeid} — {shaded} fault window{'s' if shaded != 1 else ''} shaded"
    else:
        caption = (f"{view.nodeid.split('[', 1)[0]} — the same load on {len(group)} stores side by side; "
                   f"{shaded} window{'s' if shaded != 1 else ''} shaded")
    if outside:
        caption += f"; {outside} fault window(s) lie outside the timeline's clock and are not shown"
    return figure(png, f"timeline of {view.nodeid}", caption)


def _timeline_series(view: TestView, timeline: Mapping[str, Any], *,
                     titled: bool) -> tuple[plots.TimelineSeries, list[plots.FaultWindow], int]:
    columns = _columns(timeline)
    series = timeline.get("series") or {}
    units = timeline.get("units") or {}
    t = timeline.get("t") or []
    latency_column = columns.get("p99") or columns.get("p50") or ""
    unit = units.get(latency_column) or _unit_from_name(latency_column)
    start, end = (min(t), max(t)) if t else (0.0, 0.0)
    windows, outside = [], 0
    for fault in view.test.get("faults") or []:
        window = fault.get("window")
        if not window:
            continue
        if window[1] < start - 1 or window[0] > end + 1:
            outside += 1  # another clock (e.g. epoch seconds): shading it would mislead
            continue
        windows.append(plots.FaultWindow(str(fault["kind"]), float(window[0]), float(window[1])))
    for begin, finish, label in timeline.get("shaded") or []:
        windows.append(plots.FaultWindow(str(label), float(begin), float(finish), tone=str(label).split()[0]))
    name = str(timeline.get("name", ""))
    title = name if titled else f"{view.nodeid.split('::', 1)[-1]} · {name}"
    if view.test.get("sut") and not _PER_STORE.search(str(timeline.get("name", ""))):
        title += f" · {view.test['sut']}"
    return plots.TimelineSeries(
        title=title, t=t,
        offered=series.get(columns.get("offered", ""), []),
        completed=series.get(columns.get("completed", ""), []),
        errors=series.get(columns.get("errors", ""), []),
        p50=series.get(columns.get("p50", ""), []),
        p99=series.get(columns.get("p99", ""), []),
        latency_unit=unit, faults=windows,
    ), windows, outside


def _unit_from_name(name: str) -> str:
    for unit in ("ns", "us", "ms", "s"):
        if name.endswith(f"_{unit}"):
            return unit
    return "ns"


def _enough(samples: Any) -> bool:
    """A percentile curve from fewer raw samples than this is a staircase, not a distribution."""
    return isinstance(samples, list) and len(samples) >= MIN_SAMPLES

