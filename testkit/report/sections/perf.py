"""Performance against the targets: every metric that has a pass line (ADR-004's and ours) with our figure, the
peer's figure from the same test on another store, the ratio, and pass/fail; one chart shows how much of each
target is used."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from testkit.report import plots
from testkit.report.formatting import format_number, format_quantity, target_met, target_text
from testkit.report.html import Section, Tile, figure, note, table
from testkit.report.inputs import PREFERRED_SUT, ReportInput, TestView

__all__ = ["render_perf"]

#: Bars in the target chart at most (worst first).
MAX_BARS = 40


#: ``"append p99[sqlite]"``: a figure of the named store, recorded by a test that measured several stores.
_PER_STORE = re.compile(r"^(?P<base>.*)\[(?P<sut>[^\[\]]+)\]$")


def _split(name: str, view: TestView) -> tuple[str, str | None]:
    """The metric's name without its store suffix, and the store it belongs to."""
    match = _PER_STORE.match(name)
    if match:
        return match["base"], match["sut"]
    sut = view.test.get("sut")
    return name, None if sut is None else str(sut)


def render_perf(data: ReportInput) -> Section | None:
    primary = data.primary_sut
    groups: dict[tuple[Any, str], list[tuple[TestView, Mapping[str, Any], str | None]]] = {}
    for view in data.tests():
        injected = bool(view.test.get("faults"))
        for name, metric in (view.test.get("metrics") or {}).items():
            if injected and not metric.get("target"):
                continue  # a fault test's own figures (seconds per kill cycle) are no performance claim vs a peer
            base, sut = _split(name, view)
            groups.setdefault((view.family, base), []).append((view, metric, sut))
    if primary is not None and "+" in primary:  # one test measured several stores: ours is the preferred one
        named = {sut for members in groups.values() for _, _, sut in members if sut}
        primary = PREFERRED_SUT if PREFERRED_SUT in named else primary
    rows: list[dict[str, Any]] = []
    bars: list[plots.BudgetBar] = []
    for (family, name), entries in groups.items():
        suts = {str(sut) for _, _, sut in entries}
        if not any(metric.get("target") for _, metric, _ in entries) and len(suts) < 2:
            continue
        ours = [(v, m, s) for v, m, s in entries if s in (primary, None)]
        peers = [(v, m, s) for v, m, s in entries if s not in (primary, None)] if ours else []
        ours = ours or entries
        for view, metric, _sut in ours:
            met = target_met(metric["value"], metric.get("target"))
            if met is not None:
                bars.append(plots.BudgetBar(name, _used(metric), "pass" if met else "fail"))
            for _peer_view, peer, peer_sut in peers or [(None, None, None)]:
                rows.append(_row(name, family, metric, peer_sut, peer, met))
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


def _row(name: str, family: Any, metric: Mapping[str, Any], peer_sut: str | None,
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
        "peer": "—" if peer is None
        else f"{peer_sut}: {format_quantity(peer['value'], str(peer.get('unit', '')))}",
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
    """The test function's name; its parameters are in the tests table, not repeated here."""
    function, _params = family
    return str(function.split("::", 1)[-1])
