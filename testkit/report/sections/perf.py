"""Performance against the targets: every metric that has a pass line (ADR-004's and ours) with our figure, the
peer's figure from the same test on another store, the ratio, and pass/fail; one chart shows how much of each
target is used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from testkit.report import plots
from testkit.report.formatting import format_number, format_quantity, target_met, target_text
from testkit.report.html import Section, Tile, figure, note, table
from testkit.report.inputs import ReportInput, TestView

__all__ = ["render_perf"]

#: Bars in the target chart at most (worst first).
MAX_BARS = 40


def render_perf(data: ReportInput) -> Section | None:
    primary = data.primary_sut
    groups: dict[tuple[Any, str], list[tuple[TestView, Mapping[str, Any]]]] = {}
    for view in data.tests():
        for name, metric in (view.test.get("metrics") or {}).items():
            groups.setdefault((view.family, name), []).append((view, metric))
    rows: list[dict[str, Any]] = []
    bars: list[plots.BudgetBar] = []
    for (family, name), members in groups.items():
        suts = {str(view.test.get("sut")) for view, _ in members}
        if not any(metric.get("target") for _, metric in members) and len(suts) < 2:
            continue
        ours = [(v, m) for v, m in members if v.test.get("sut") in (primary, None)]
        peers = [(v, m) for v, m in members if v.test.get("sut") not in (primary, None)] if ours else []
        ours = ours or members
        for view, metric in ours:
            met = target_met(metric["value"], metric.get("target"))
            if met is not None:
                bars.append(plots.BudgetBar(f"{name} · {_short(family)}", _used(metric), "pass" if met else "fail"))
            for peer_view, peer in peers or [(None, None)]:
                rows.append(_row(name, family, view, metric, peer_view, peer, met))
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    met_count, judged_count = sum(b.tone == "pass" for b in bars), len(bars)  # once per metric, not per peer
    compared = frame[frame["vs peer"] != "—"]
    better = int(compared["vs peer"].str.contains("better").sum())
    tiles = []
    if judged_count:
        tiles.append(Tile("targets met", f"{met_count} / {judged_count}",
                          "pass" if met_count == judged_count else "fail"))
    if len(compared):
        tiles.append(Tile("better than peer", f"{better} / {len(compared)}",
                          "pass" if better == len(compared) else "warn"))
    parts = ['<p class="note">Ours is the figure of '
             f"{primary or 'the system under test'}; the peer's comes from the same test run against another "
             "store. Ratio = ours / peer.</p>",
             table(frame.sort_values(["metric", "test"]), badges=("verdict",))]
    if bars:
        bars.sort(key=lambda b: -b.used)
        png = plots.budget_bars(bars[:MAX_BARS], "Share of each target used")
        parts.append(figure(png, "share of each target used", "Bars left of the line are within their target."))
        if len(bars) > MAX_BARS:
            parts.append(note(f"{len(bars) - MAX_BARS} more metrics with targets are in the table only."))
    tone = "fail" if met_count < judged_count else ("pass" if judged_count else "info")
    return Section("perf", "Performance vs targets", "".join(parts), tone, tuple(tiles))


def _row(name: str, family: Any, view: TestView, metric: Mapping[str, Any], peer_view: TestView | None,
         peer: Mapping[str, Any] | None, met: bool | None) -> dict[str, Any]:
    unit = str(metric.get("unit", ""))
    ratio_text = "—"
    if peer is not None and peer.get("unit") == unit and peer["value"]:
        ratio = float(metric["value"]) / float(peer["value"])
        better = ratio < 1 if metric.get("direction") == "lower" else ratio > 1
        word = "about equal" if abs(ratio - 1) < 0.01 else ("better" if better else "worse")
        ratio_text = f"{format_number(ratio)}× ({word})"
    return {
        "metric": name,
        "test": _short(family),
        "target": target_text(metric.get("target"), unit),
        "ours": f"{format_quantity(metric['value'], unit)}",
        "peer": "—" if peer is None or peer_view is None
        else f"{peer_view.test.get('sut')}: {format_quantity(peer['value'], str(peer.get('unit', '')))}",
        "vs peer": ratio_text,
        "better when": "lower" if metric.get("direction") == "lower" else "higher",
        "verdict": {True: "pass", False: "fail", None: None}[met],
    }


def _used(metric: Mapping[str, Any]) -> float:
    """Share of the target used: value/target when lower is better, target/value when higher is better."""
    value, limit = float(metric["value"]), float(metric["target"]["value"])
    higher_is_better = str(metric["target"].get("op", "<=")).startswith(">")
    numerator, denominator = (limit, value) if higher_is_better else (value, limit)
    return min(numerator / denominator, 1e3) if denominator > 0 else 1e3


def _short(family: Any) -> str:
    function, params = family
    name = function.split("::", 1)[-1]
    return name + (" [" + ", ".join(f"{k}={v}" for k, v in params) + "]" if params else "")
