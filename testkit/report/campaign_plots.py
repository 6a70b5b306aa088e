"""The pictures of a fault campaign, drawn from its operation timeline (see :class:`testkit.results.OpTimeline`).

One figure per campaign (latency of every operation with p50/p99 lines, throughput and errors over time, fault
windows shaded and labelled, recovery time per cycle, acknowledged vs recovered per cycle), and one history view
per explained violation (operations per worker over time around it, the fault moments and the offending
operations marked). Figures are sized for a laptop screen: 1,100 px wide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import io

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from testkit.report.formatting import format_number, scale_for
from testkit.report.plots import _DPI, _STYLE, FAULT_SHADE, OURS, TONE_COLOURS

__all__ = ["campaign_figure", "history_figure"]

#: Fault windows labelled by name at most (the rest are shaded; the legend says how many).
MAX_FAULT_LABELS = 12
#: Worker lanes in a history view at most.
MAX_LANES = 36
#: Offending operations labelled by name in a history view (all are outlined).
MAX_MARK_LABELS = 8
_STATUS_COLOURS = {1: OURS, 2: TONE_COLOURS["fail"], 3: "#e0a800"}
_STATUS_NAMES = {1: "acknowledged", 2: "refused", 3: "unknown"}


def campaign_figure(timeline: Mapping[str, Any], title: str) -> bytes:
    """Latency, throughput and errors over time with the faults shaded; recovery and acknowledged vs recovered."""
    ops = timeline.get("ops") or []
    bins = timeline.get("bins") or []
    faults = timeline.get("faults") or []
    cycles = timeline.get("cycles") or []
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(11.0, 7.6), dpi=_DPI)
        grid = figure.add_gridspec(3, 2, height_ratios=(1.25, 0.85, 1.0), hspace=0.55, wspace=0.22,
                                   left=0.07, right=0.985, top=0.93, bottom=0.07)
        latency_axes = figure.add_subplot(grid[0, :])
        rate_axes = figure.add_subplot(grid[1, :], sharex=latency_axes)
        recovery_axes = figure.add_subplot(grid[2, 0])
        acked_axes = figure.add_subplot(grid[2, 1])
        _latency_panel(latency_axes, ops, bins, int(timeline.get("total_ops") or len(ops)))
        _rate_panel(rate_axes, bins, float(timeline.get("bin_s") or 1.0))
        for axes in (latency_axes, rate_axes):
            _shade(axes, faults, label=axes is latency_axes, count=axes is latency_axes)
        latency_axes.tick_params(labelbottom=False)
        read_back = timeline.get("cycle_kind") == "read_back"
        _recovery_panel(recovery_axes, cycles, read_back=read_back)
        _acked_panel(acked_axes, cycles, read_back=read_back)
        figure.suptitle(title, x=0.07, y=0.99, ha="left", fontsize=11, fontweight="bold")
        return _fixed_png(figure)


def history_figure(timeline: Mapping[str, Any], window: tuple[float, float], title: str) -> bytes:
    """Operations per worker over ``window`` (seconds on the timeline's clock): one bar per operation from its
    invocation to its answer, coloured by the answer; faults shaded; offending operations outlined in black."""
    ops = timeline.get("ops") or []
    workers = timeline.get("workers") or []
    marks = [m for m in timeline.get("marks") or [] if m[1] >= window[0] and m[0] <= window[1]]
    start, end = window
    inside = [op for op in ops if start <= op[0] <= end or (op[1] is not None and op[0] <= start <= op[0] + op[1])]
    marked = {int(m[2]) for m in marks}
    lanes = sorted({int(op[3]) for op in inside} | marked, key=lambda w: (w not in marked, w))[:MAX_LANES]
    lanes.sort()
    row_of = {w: i for i, w in enumerate(lanes)}
    with matplotlib.rc_context(_STYLE):
        height = min(1.6 + 0.22 * max(len(lanes), 4), 9.0)
        figure = Figure(figsize=(11.0, height), dpi=_DPI)
        axes = figure.subplots()
        shortest = (end - start) / 800  # an operation too quick to see still shows
        fault_starts = sorted(float(f[0]) for f in timeline.get("faults") or [])

        def length(op: Sequence[Any]) -> float:
            """An operation never answered lasts until the next fault (its worker's death), else the window's end."""
            if op[1] is not None:
                return max(float(op[1]), shortest)
            following = [f for f in fault_starts if f >= op[0]]
            return max((following[0] if following else end) - op[0], shortest)

        for status, colour in _STATUS_COLOURS.items():
            chosen = [op for op in inside if op[2] == status and int(op[3]) in row_of]
            if chosen:  # one bar collection per answer: thousands of operations draw in one call
                axes.barh([row_of[int(op[3])] for op in chosen], [length(op) for op in chosen],
                          left=[op[0] for op in chosen], height=0.7, color=colour,
                          alpha=0.75 if status == 1 else 0.95, linewidth=0)
        shown = [m for m in marks if int(m[2]) in row_of]
        if shown:
            axes.barh([row_of[int(m[2])] for m in shown], [max(m[1] - m[0], shortest * 2) for m in shown],
                      left=[m[0] for m in shown], height=0.9, color="none", edgecolor="#111111", linewidth=1.6)
            last_per_lane: dict[tuple[int, str], Sequence[Any]] = {}
            for mark in shown:  # one label per lane and kind: the marks themselves can be dense
                last_per_lane[(int(mark[2]), str(mark[3]))] = mark
            for (lane, kind), mark in list(last_per_lane.items())[:MAX_MARK_LABELS]:
                count = sum(1 for m in shown if int(m[2]) == lane and str(m[3]) == kind)
                axes.annotate(f"{kind} ×{count}" if count > 1 else kind, xy=(mark[1], row_of[lane]), xytext=(4, 0),
                              textcoords="offset points", fontsize=7.5, va="center", color="#111111",
                              bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                                    "alpha": 0.85})
        _shade(axes, [f for f in timeline.get("faults") or [] if f[1] >= start and f[0] <= end], label=True)
        axes.set_xlim(start, end)
        axes.set_ylim(-0.8, max(len(lanes), 1) - 0.2)
        axes.set_yticks(range(len(lanes)), [str(workers[w]) if w < len(workers) else str(w) for w in lanes])
        axes.tick_params(axis="y", labelsize=7.5)
        axes.invert_yaxis()
        axes.grid(axis="y", visible=False)
        axes.set_xlabel("seconds since the campaign started")
        axes.set_ylabel("worker (incarnation-client)")
        legend = [Patch(color=c, label=_STATUS_NAMES[s]) for s, c in _STATUS_COLOURS.items()]
        legend += [Patch(facecolor="none", edgecolor="#111111", label="named by the violation"),
                   Patch(color=FAULT_SHADE, alpha=0.25, label="fault")]
        axes.legend(handles=legend, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=5, fontsize=8)
        axes.set_title(title, loc="left", fontsize=10, pad=22)
        figure.subplots_adjust(left=0.1, right=0.97, top=1 - 0.75 / height, bottom=0.55 / height)
        return _fixed_png(figure)


def _fixed_png(figure: Figure) -> bytes:
    """Rasterise once with the margins set above (a tight bounding box would draw the figure twice)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _latency_panel(axes: Any, ops: Sequence[Sequence[Any]], bins: Sequence[Sequence[Any]], total: int) -> None:
    latencies = [op[1] for op in ops if op[1] is not None and op[1] > 0]
    shown_unit, divisor = scale_for(max(latencies, default=1.0), "s")
    dot = max(5.0, min(24.0, 4000.0 / max(len(ops), 1)))  # a short campaign's few points stay visible
    for status, colour in _STATUS_COLOURS.items():
        points = [(op[0], op[1] / divisor) for op in ops if op[2] == status and op[1] is not None and op[1] > 0]
        if points:
            x, y = zip(*points, strict=True)
            axes.scatter(x, y, s=dot if status == 1 else 14, color=colour, alpha=0.45 if status == 1 else 0.9,
                         marker="o" if status == 1 else "x", linewidths=0.9 if status != 1 else 0,
                         label=f"{_STATUS_NAMES[status]} ({len(points):,})", zorder=5)
    unanswered = [op[0] for op in ops if op[1] is None]
    if unanswered:  # in flight when the worker died: no latency, shown as ticks along the bottom
        axes.scatter(unanswered, [0.02] * len(unanswered), transform=axes.get_xaxis_transform(), marker="|", s=60,
                     color=_STATUS_COLOURS[3], linewidths=1.2, label=f"no answer, worker died ({len(unanswered):,})",
                     zorder=5)
    t = [row[0] for row in bins]
    for column, colour, name in ((3, "#1f2933", "p50"), (4, "#e07b00", "p99")):
        values = [np.nan if row[column] is None else row[column] / divisor for row in bins]
        if any(v == v for v in values):
            axes.step(t, values, where="post", color=colour, linewidth=1.4, label=name, zorder=4)
    if latencies and max(latencies) / max(min(latencies), 1e-12) > 50:
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
        axes.yaxis.set_minor_locator(NullLocator())
    axes.set_ylabel(f"latency ({shown_unit})")
    sampled = f"; {len(ops):,} of {total:,} operations drawn" if total > len(ops) else ""
    axes.set_title(f"latency of every operation (p50/p99 per bin over all {total:,}){sampled}", loc="left",
                   fontsize=9.5, fontweight="normal")
    if axes.get_legend_handles_labels()[0]:  # a campaign without operations draws no lines
        axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=5, fontsize=8, borderaxespad=0.2)


def _rate_panel(axes: Any, bins: Sequence[Sequence[Any]], bin_s: float) -> None:
    t = np.asarray([row[0] for row in bins], dtype=float)
    ok = np.asarray([row[1] for row in bins], dtype=float) / bin_s
    failed = np.asarray([row[2] for row in bins], dtype=float) / bin_s
    if len(t):
        axes.step(t, ok, where="post", color=OURS, linewidth=1.5, label="acknowledged ops/s")
        if failed.sum() > 0:
            axes.bar(t, failed, width=bin_s, align="edge", color=TONE_COLOURS["fail"], alpha=0.75,
                     label="refused or timed out ops/s")
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
    axes.set_ylabel("ops/s")
    axes.set_xlabel("seconds since the campaign started")
    axes.set_title(f"throughput and errors ({format_number(bin_s)} s bins)", loc="left", fontsize=9.5,
                   fontweight="normal")
    if axes.get_legend_handles_labels()[0]:  # a campaign without operations draws no lines
        axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, borderaxespad=0.2)


def _recovery_panel(axes: Any, cycles: Sequence[Sequence[float]], *, read_back: bool = False) -> None:
    seconds = np.asarray([c[1] for c in cycles], dtype=float)
    if len(seconds):
        shown_unit, divisor = scale_for(float(seconds.max()) or 1e-3, "s")
        values = seconds / divisor
        axes.hist(values, bins=min(30, max(5, len(values) // 2)), color=OURS, alpha=0.8)
        p50, p99 = np.percentile(values, [50, 99], method="inverted_cdf")
        axes.axvline(p50, color="#1f2933", linewidth=1.2, label=f"p50 {format_number(float(p50))} {shown_unit}")
        axes.axvline(p99, color="#e07b00", linewidth=1.2, label=f"p99 {format_number(float(p99))} {shown_unit}")
        axes.set_xlabel(f"open and read back per damaged copy ({shown_unit})" if read_back
                        else f"recovery time per cycle ({shown_unit})")
        axes.legend(loc="upper right", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no recovery was judged", ha="center", va="center", transform=axes.transAxes)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("cycles")
    axes.set_title(f"open and read back ({len(seconds):,} damaged copies)" if read_back
                   else f"recovery time ({len(seconds):,} recoveries)", loc="left", fontsize=9.5, fontweight="normal")


def _acked_panel(axes: Any, cycles: Sequence[Sequence[float]], *, read_back: bool = False) -> None:
    """Acknowledged vs recovered per check. For read-backs of damaged copies, events missing are the ones the
    damage destroyed (the campaign judges whether the store said so), so they are not drawn as losses."""
    if cycles:
        index = np.arange(1, len(cycles) + 1)
        acked = np.asarray([c[2] for c in cycles], dtype=float)
        present = np.asarray([c[3] for c in cycles], dtype=float)
        axes.plot(index, acked, "o-", color="#9aa5b1", markersize=5, linewidth=1.4, label="acknowledged")
        axes.plot(index, present, "o--", color=OURS, markersize=4, linewidth=1.2,
                  label="served intact" if read_back else "recovered")
        lost = acked - present
        if lost.any():
            where = lost > 0
            axes.scatter(index[where], present[where], color=TONE_COLOURS["warn" if read_back else "fail"], zorder=4,
                         s=22, label=(f"not served after the damage ({int(lost.max()):,} at worst)" if read_back
                                      else f"lost ({int(lost.max()):,} at worst)"))
        axes.set_xlim(0.5, len(cycles) + 0.5)
        axes.set_ylim(bottom=0)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
        axes.legend(loc="upper left", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no recovery was judged", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("damaged copy read back" if read_back else "check (recovery judged)")
    axes.set_ylabel("events")
    axes.set_title("acknowledged vs served intact per damaged copy" if read_back
                   else "acknowledged vs recovered per check", loc="left", fontsize=9.5, fontweight="normal")


def _shade(axes: Any, faults: Sequence[Sequence[Any]], *, label: bool, count: bool = False) -> None:
    """Each fault window shaded; the first few named at the top of the axes (a name only where it does not
    run into the previous one), the count under the axes."""
    if not faults:
        return
    axes.autoscale_view()
    left, right = axes.get_xlim()
    left = min(left, min(float(f[0]) for f in faults))
    right = max(right, max(float(f[1]) for f in faults))
    minimum = (right - left) / 600  # an instant (a SIGKILL) still shows as a line
    for start, end in _coalesced(faults, minimum):
        axes.axvspan(start, end, color=FAULT_SHADE, alpha=0.22, linewidth=0)
    named = 0
    last_named = -float("inf")
    for start, _end, name in faults:
        if not label or named >= MAX_FAULT_LABELS:
            break
        if float(start) - last_named < (right - left) / 12:
            continue
        axes.annotate(str(name), xy=(start, 1.0), xycoords=("data", "axes fraction"), xytext=(1, -9),
                      textcoords="offset points", fontsize=7, color="#a02020", rotation=0)
        named += 1
        last_named = float(start)
    if count:
        more = f", {named} named" if named < len(faults) else ""
        axes.text(0.0, -0.02, f"{len(faults):,} fault window{'s' if len(faults) != 1 else ''} shaded{more}",
                  transform=axes.transAxes, fontsize=7.5, color="#a02020", va="top", ha="left")


def _coalesced(faults: Sequence[Sequence[Any]], minimum: float) -> list[tuple[float, float]]:
    """Fault windows widened to ``minimum`` and merged where they touch: a thousand back-to-back corruption
    cases draw as the few bands they look like, not as a thousand overlapping patches."""
    spans: list[tuple[float, float]] = []
    for start, end in sorted((float(f[0]), max(float(f[1]), float(f[0]) + minimum)) for f in faults):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans
