"""The report's figures, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` directly (not pyplot), so nothing is kept in a global
figure registry and rendering a report in a long pytest session leaks nothing. Each function draws one figure
that summarises many tests: the page never holds one plot per test.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from testkit.report.formatting import Tone, format_number, format_quantity, scale_for

__all__ = [
    "BudgetBar",
    "FaultWindow",
    "PercentileCurve",
    "RegressionPanel",
    "TimelineSeries",
    "budget_bars",
    "memory_over_time",
    "percentile_distribution",
    "regression_distributions",
    "timeline",
    "timelines_side_by_side",
]

OURS = "#2457a6"
PEER_COLOURS = ("#e07b00", "#2e9e5b", "#8e44ad", "#c0392b", "#7f8c8d", "#16a085")
TONE_COLOURS: dict[str, str] = {"pass": "#2e9e5b", "fail": "#d64545", "warn": "#e0a800", "skip": "#9aa5b1",
                                "info": "#2457a6"}
FAULT_SHADE = "#d64545"
BURST_SHADE = "#e0a800"

#: Percentile ticks on the 1/(1-p) axis, as HdrHistogram's plotter labels them.
PERCENTILE_TICKS: tuple[tuple[float, str], ...] = (
    (1.0, "0%"), (2.0, "50%"), (10.0, "90%"), (100.0, "99%"), (1e3, "99.9%"), (1e4, "99.99%"),
    (1e5, "99.999%"), (1e6, "99.9999%"),
)

#: The ticks a small panel has room for.
_SPARSE_TICKS = frozenset({"50%", "99%", "99.99%"})

_STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelcolor": "#3d4852",
    "axes.edgecolor": "#b8c0cc",
    "axes.grid": True,
    "grid.color": "#e6e9ee",
    "grid.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": "#3d4852",
    "ytick.color": "#3d4852",
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "figure.facecolor": "white",
}
_DPI = 100


@dataclass(frozen=True, slots=True)
class PercentileCurve:
    """Values (in ``unit``) at ``percentiles`` (0..100) for one system under test."""

    label: str
    percentiles: Sequence[float]
    values: Sequence[float]
    peer: bool = False
    max_value: float | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A time span (seconds from the test's start) during which a fault was active."""

    kind: str
    start: float
    end: float
    tone: str = "fault"  # "fault" (red) or another word for a shaded span that is not a fault, e.g. "burst"


@dataclass(frozen=True, slots=True)
class TimelineSeries:
    """Per-second rows of one load run: throughput and latency columns, aligned on ``t``."""

    title: str
    t: Sequence[float]
    offered: Sequence[float | None] = ()
    completed: Sequence[float | None] = ()
    errors: Sequence[float | None] = ()
    p50: Sequence[float | None] = ()
    p99: Sequence[float | None] = ()
    latency_unit: str = "ns"
    faults: Sequence[FaultWindow] = field(default=())


@dataclass(frozen=True, slots=True)
class BudgetBar:
    """How much of its target a metric uses: ``used`` = 1.0 is exactly on the line, below 1 passes."""

    label: str
    used: float
    tone: Tone


@dataclass(frozen=True, slots=True)
class RegressionPanel:
    """One metric in the baseline and in the current run: raw samples (drawn as box and points) or, for
    histogram metrics, percentile curves ``(percentiles, values)`` (drawn HdrHistogram style)."""

    metric: str
    unit: str
    tone: Tone
    baseline: Sequence[float] = ()
    current: Sequence[float] = ()
    baseline_curve: tuple[Sequence[float], Sequence[float]] | None = None
    current_curve: tuple[Sequence[float], Sequence[float]] | None = None


def percentile_distribution(curves: Sequence[PercentileCurve], unit: str, title: str) -> bytes:
    """HdrHistogram-style percentile distribution: latency against 1/(1-p) on a log axis, every system under
    test on the same axes so the tails can be compared where they matter."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(6.4, 3.8), dpi=_DPI)
        axes = figure.subplots()
        top = max((max(c.values) for c in curves if len(c.values)), default=1.0)
        shown_unit, divisor = scale_for(top, unit)
        right = 2.0
        peer_index = 0
        for curve in curves:
            p = np.asarray(curve.percentiles, dtype=float)
            keep = p < 100.0
            x = 1.0 / (1.0 - p[keep] / 100.0)
            y = np.asarray(curve.values, dtype=float)[keep] / divisor
            if not len(x):
                continue
            right = max(right, float(x[-1]))
            if curve.peer:
                colour, style = PEER_COLOURS[peer_index % len(PEER_COLOURS)], "--"
                peer_index += 1
            else:
                colour, style = OURS, "-"
            label = curve.label
            if curve.max_value is not None:
                label += f" (max {format_number(curve.max_value / divisor)} {shown_unit}"
                label += f", n={curve.count:,})" if curve.count else ")"
            axes.plot(x, y, style, color=colour, linewidth=2.0 if not curve.peer else 1.7, label=label)
        axes.set_xscale("log")
        ticks = [(x, name) for x, name in PERCENTILE_TICKS if x <= right * 1.0001]
        axes.set_xticks([x for x, _ in ticks], [name for _, name in ticks])
        axes.xaxis.set_minor_locator(NullLocator())  # minor log ticks cost more to lay out than the curves
        axes.set_xlim(1.0, max(right, 10.0))
        values = [v for c in curves for v in c.values if v and v > 0]
        if values and max(values) / max(min(values), 1e-12) > 50:
            axes.set_yscale("log")
            axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
            axes.yaxis.set_minor_locator(NullLocator())
        else:
            axes.set_ylim(bottom=0)
        axes.set_xlabel("percentile")
        axes.set_ylabel(f"latency ({shown_unit})")
        axes.set_title(title, loc="left")
        axes.legend(loc="upper left")
        return _png(figure)


def timeline(series: TimelineSeries) -> bytes:
    """Throughput (top) and latency (bottom) per second of one load run, fault windows shaded on both."""
    return timelines_side_by_side([series])


def timelines_side_by_side(columns: Sequence[TimelineSeries]) -> bytes:
    """One column per run (e.g. lighthouse and its peer under the same load), throughput above latency, the
    rows sharing their y axes so the columns compare at a glance; shaded windows on every panel."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(11.2, 4.6), dpi=_DPI)
        grid = figure.subplots(2, len(columns), sharex="col", sharey="row", squeeze=False,
                               gridspec_kw={"hspace": 0.12, "wspace": 0.06})
        for index, series in enumerate(columns):
            _draw_timeline(grid[0][index], grid[1][index], series, first=index == 0, solo=len(columns) == 1)
        if len(columns) == 1:
            figure.suptitle(columns[0].title, x=0.125, ha="left", fontsize=11, fontweight="bold")
        return _png(figure)


def _draw_timeline(rate_axes: Any, latency_axes: Any, series: TimelineSeries, *, first: bool, solo: bool) -> None:
    t = np.asarray(series.t, dtype=float)
    if _has(series.offered):
        rate_axes.plot(t, _floats(series.offered), "--", color="#9aa5b1", linewidth=1.3, label="offered/s")
    if _has(series.completed):
        rate_axes.plot(t, _floats(series.completed), color=OURS, linewidth=1.8, label="completed/s")
    if _has(series.errors):
        errors = _floats(series.errors)
        if np.nansum(errors) > 0:
            rate_axes.bar(t, errors, width=0.9, color=TONE_COLOURS["fail"], alpha=0.8, label="errors/s")
    rates = [v for v in (*_floats(series.offered), *_floats(series.completed)) if v == v]
    top = 1.15 * max(rates, default=1.0) or 1.0  # headroom for the window labels
    rate_axes.set_ylim(0, max(top, rate_axes.get_ylim()[1]) if not first else top)
    rate_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
    latencies = [v for v in (*_floats(series.p50), *_floats(series.p99)) if v == v]
    shown_unit, divisor = scale_for(max(latencies, default=1.0), series.latency_unit)
    if _has(series.p50):
        latency_axes.plot(t, _floats(series.p50) / divisor, color=OURS, linewidth=1.6, label="p50")
    if _has(series.p99):
        latency_axes.plot(t, _floats(series.p99) / divisor, color="#e07b00", linewidth=1.6, label="p99")
    positive = [v for v in latencies if v > 0]
    if positive and max(positive) / min(positive) > 50:
        latency_axes.set_yscale("log")
        latency_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
        latency_axes.yaxis.set_minor_locator(NullLocator())
    if positive:
        low, high = min(positive) / divisor, max(positive) / divisor
        log = latency_axes.get_yscale() == "log"
        low, high = (low / 1.5 if log else 0), (high * 4 if log else high * 1.3)
        if not first:  # the row shares its y axis: widen it, never cut another column's line
            low, high = min(low, latency_axes.get_ylim()[0]), max(high, latency_axes.get_ylim()[1])
        latency_axes.set_ylim(low, high)
    if first:
        rate_axes.set_ylabel("ops/s")
        latency_axes.set_ylabel(f"latency ({shown_unit})")
    latency_axes.set_xlabel("seconds since start")
    for index, window in enumerate(series.faults):
        colour = FAULT_SHADE if window.tone == "fault" else BURST_SHADE
        for axes in (rate_axes, latency_axes):
            axes.axvspan(window.start, max(window.end, window.start + 0.05), color=colour,
                         alpha=0.13, linewidth=0, label=window.tone if index == 0 and axes is rate_axes else None)
        rate_axes.annotate(window.kind, xy=(window.start, 1.0), xycoords=("data", "axes fraction"),
                           xytext=(2, -11), textcoords="offset points", fontsize=7.5,
                           color="#a02020" if window.tone == "fault" else "#8a5a00")
    if solo:
        rate_axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=4)  # above the plot, beside the title
    else:
        rate_axes.set_title(series.title, loc="left", fontsize=9.5)
        if first:
            rate_axes.legend(loc="lower left", ncol=4, fontsize=7.5)
    if first:
        latency_axes.legend(loc="upper right", ncol=2)


def memory_over_time(
    t: Sequence[float], rss_bytes: Sequence[float], *, title: str, warmup_end: float | None = None,
    slope_bytes_per_s: float | None = None,
) -> bytes:
    """Resident memory over a run; the excluded warm-up is greyed and the fitted slope drawn when known."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(11.2, 3.4), dpi=_DPI)
        axes = figure.subplots()
        x = np.asarray(t, dtype=float)
        y = np.asarray(rss_bytes, dtype=float)
        shown_unit, divisor = scale_for(float(np.nanmax(y)) if len(y) else 1.0, "bytes")
        axes.plot(x, y / divisor, color=OURS, linewidth=1.8, label="RSS")
        if warmup_end is not None and len(x):
            axes.axvspan(float(x[0]), warmup_end, color="#9aa5b1", alpha=0.18, linewidth=0,
                         label="warm-up (excluded)")
        if slope_bytes_per_s is not None and len(x):
            after = x >= (warmup_end if warmup_end is not None else x[0])
            if after.any():
                x0 = float(x[after][0])
                y0 = float(np.nanmedian(y[after][: max(1, int(after.sum() // 10))]))
                fitted = (y0 + slope_bytes_per_s * (x[after] - x0)) / divisor
                axes.plot(x[after], fitted, "--", color="#e07b00", linewidth=1.4,
                          label=f"slope {format_quantity(slope_bytes_per_s, 'bytes')}/s")
        axes.set_xlabel("seconds since start")
        axes.set_ylabel(f"resident memory ({shown_unit})")
        axes.set_title(title, loc="left")
        axes.legend(loc="lower right")
        return _png(figure)


def budget_bars(bars: Sequence[BudgetBar], title: str) -> bytes:
    """One bar per metric: the share of its target used (1.0 = on the line), pass green, fail red."""
    with matplotlib.rc_context(_STYLE):
        height = 1.2 + 0.28 * len(bars)
        figure = Figure(figsize=(11.2, height), dpi=_DPI)
        axes = figure.subplots()
        labels = [b.label for b in bars][::-1]
        used = np.asarray([max(b.used, 1e-3) for b in bars][::-1], dtype=float)
        colours = [TONE_COLOURS[b.tone] for b in bars][::-1]
        container = axes.barh(range(len(bars)), used, color=colours, height=0.62)
        axes.bar_label(container, labels=[f"{u:.0%}" if u >= 0.01 else f"{u:.1%}" for u in used], padding=3,
                       fontsize=8, color="#3d4852")
        axes.axvline(1.0, color="#1f2933", linewidth=1.2)
        axes.set_yticks(range(len(bars)), labels)
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}" if v >= 0.01 else f"{v:.1%}"))
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_xlim(min(0.5 * float(used.min()), 0.5), max(2.0 * float(used.max()), 2.0))
        axes.grid(axis="y", visible=False)
        axes.set_xlabel("share of the target used (the black line is the target; left of it passes)")
        axes.set_title(title, loc="left")
        figure.tight_layout()
        return _png(figure)


def regression_distributions(panels: Sequence[RegressionPanel], title: str) -> bytes:
    """Small multiples: for each metric, baseline and current side by side (box plus points for raw samples,
    percentile curves for histograms)."""
    with matplotlib.rc_context(_STYLE):
        columns = min(3, len(panels))
        rows = -(-len(panels) // columns)
        figure = Figure(figsize=(11.2, 0.6 + 2.6 * rows), dpi=_DPI)
        grid = figure.subplots(rows, columns, squeeze=False)
        jitter = np.random.default_rng(0)  # fixed seed: the same results draw the same picture
        for index, axes in enumerate(grid.flat):
            if index >= len(panels):
                axes.set_visible(False)
                continue
            panel = panels[index]
            if panel.baseline_curve is not None and panel.current_curve is not None:
                _curves_panel(axes, panel)
            else:
                _samples_panel(axes, panel, jitter)
            axes.set_title(panel.metric, loc="left", fontsize=9,
                           color=TONE_COLOURS["fail"] if panel.tone == "fail" else "#1f2933")
        figure.suptitle(title, x=0.01, ha="left", fontsize=11, fontweight="bold")
        figure.tight_layout()
        return _png(figure)


def _samples_panel(axes: Any, panel: RegressionPanel, jitter: np.random.Generator) -> None:
    samples = [np.asarray(panel.baseline, dtype=float), np.asarray(panel.current, dtype=float)]
    top = max((float(np.nanmax(s)) for s in samples if len(s)), default=1.0)
    shown_unit, divisor = scale_for(top, panel.unit)
    scaled = [s / divisor for s in samples]
    present = [i for i, s in enumerate(scaled) if len(s)]
    axes.boxplot([scaled[i] for i in present], positions=[i + 1 for i in present], widths=0.5,
                 showfliers=False, medianprops={"color": "#1f2933"})
    for i in present:
        xs = i + 1 + jitter.uniform(-0.17, 0.17, len(scaled[i]))
        axes.scatter(xs, scaled[i], s=9, alpha=0.55,
                     color="#9aa5b1" if i == 0 else TONE_COLOURS[panel.tone], zorder=3)
    axes.set_xticks([1, 2], ["baseline", "current"])
    axes.set_xlim(0.4, 2.6)
    axes.set_ylabel(shown_unit)
    axes.grid(axis="x", visible=False)


def _curves_panel(axes: Any, panel: RegressionPanel) -> None:
    if panel.baseline_curve is None or panel.current_curve is None:
        raise ValueError("a percentile panel needs both curves")
    top = max([*panel.baseline_curve[1], *panel.current_curve[1], 1.0])
    shown_unit, divisor = scale_for(top, panel.unit)
    right = 10.0
    for (percentiles, values), colour, label in ((panel.baseline_curve, "#9aa5b1", "baseline"),
                                                 (panel.current_curve, TONE_COLOURS[panel.tone], "current")):
        p = np.asarray(percentiles, dtype=float)
        keep = p < 100.0
        x = 1.0 / (1.0 - p[keep] / 100.0)
        if len(x):
            right = max(right, float(x[-1]))
            axes.plot(x, np.asarray(values, dtype=float)[keep] / divisor, color=colour, linewidth=1.6, label=label)
    axes.set_xscale("log")
    ticks = [(x, name) for x, name in PERCENTILE_TICKS if x <= right * 1.0001 and name in _SPARSE_TICKS]
    axes.set_xticks([x for x, _ in ticks], [name for _, name in ticks])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xlim(1.0, right)
    axes.set_ylabel(shown_unit)
    axes.legend(loc="upper left", fontsize=7.5)


def _png(figure: Figure) -> bytes:
    """Rasterise on an Agg canvas attached to this figure alone (the global backend is left untouched)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", pad_inches=0.12)
    return buffer.getvalue()


def _floats(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)


def _has(values: Sequence[float | None]) -> bool:
    return any(v is not None for v in values)
