"""Memory: resident memory over the run with the leak verdict (judged by testkit.memory, shown here with the
slope it was judged on) and the bytes each stored event costs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from testkit.report import plots
from testkit.report.formatting import Tone, format_quantity, target_met, target_text
from testkit.report.html import Section, Tile, badge, escape, figure, key_values, table
from testkit.report.inputs import ReportInput, RunView, TestView

__all__ = ["leak_words", "render_memory"]

#: Per-test RSS timelines drawn at most.
MAX_RSS_TIMELINES = 3
_PER_EVENT_UNITS = ("b/event", "bytes/event", "byte/event", "b/evt")


def leak_words(leak: Mapping[str, Any] | None) -> tuple[str, Tone]:
    """A verdict that could not tell the run's own ups and downs from a leak says so: it is not a pass."""
    if not leak:
        return "not judged", "skip"
    if leak.get("leaking"):
        return "leak", "fail"
    return ("inconclusive", "warn") if leak.get("inconclusive") else ("no leak", "pass")


def render_memory(data: ReportInput) -> Section | None:
    records = data.extra("memory")
    per_event = [(view, name, metric) for view in data.tests()
                 for name, metric in (view.test.get("metrics") or {}).items() if _is_per_event(name, metric)]
    rss_timelines = [(view, timeline) for view in data.tests() for timeline in view.test.get("timelines") or []
                     if _rss_column(timeline)]
    if not records and not per_event and not rss_timelines:
        return None
    parts: list[str] = []
    tiles: list[Tile] = []
    tone: Tone = "info"
    for run, record in records:
        words, leak_tone = leak_words(record.get("leak"))
        tone = _worse(tone, leak_tone)
        tiles.append(Tile("peak RSS" + (f" ({run.label})" if len(records) > 1 else ""),
                          format_quantity(record.get("peak_rss_bytes"), "bytes")))
        tiles.append(Tile("leak verdict", words, leak_tone))
        parts.append(_run_memory(run, record, len(records) > 1))
    if per_event:
        parts.append("<h3>Bytes per stored event</h3>")
        parts.append(_per_event_table(per_event))
        primary = data.primary_sut
        ours = [m for v, _, m in per_event if v.test.get("sut") in (primary, None)]
        if ours:
            verdicts = [target_met(m["value"], m.get("target")) for m in ours]
            tiles.append(Tile("bytes per event", format_quantity(ours[0]["value"], "bytes"),
                              "fail" if False in verdicts else ("pass" if True in verdicts else "info")))
            if False in verdicts:
                tone = "fail"
    for view, timeline in rss_timelines[:MAX_RSS_TIMELINES]:
        column = _rss_column(timeline)
        assert column is not None
        scale = _bytes_per_unit(column, (timeline.get("units") or {}).get(column))
        points = [(t, v * scale) for t, v in zip(timeline["t"], timeline["series"][column], strict=False)
                  if v is not None]
        if len(points) < 2:
            continue
        png = plots.memory_over_time([p[0] for p in points], [p[1] for p in points],
                                     title=f"{view.nodeid.split('::', 1)[-1]} · {view.test.get('sut') or ''}")
        peak = format_quantity(max(p[1] for p in points), "bytes")
        parts.append(figure(png, f"resident memory of {view.nodeid}", f"{view.nodeid}: peak {peak}"))
    return Section("memory", "Memory", "".join(parts), tone, tuple(tiles))


def _run_memory(run: RunView, record: Mapping[str, Any], labelled: bool) -> str:
    leak = record.get("leak")
    samples = record.get("samples") or []
    words, leak_tone = leak_words(leak)
    facts: list[tuple[str, str]] = [
        ("peak resident memory", escape(format_quantity(record.get("peak_rss_bytes"), "bytes"))),
        ("leak verdict", badge(leak_tone, words)),
    ]
    warmup_end = None
    if leak:
        facts.append(("growth", escape(
            f"{format_quantity(leak.get('slope_bytes_per_s'), 'bytes')}/s "
            f"(95% CI {format_quantity(leak.get('slope_low'), 'bytes')} .. "
            f"{format_quantity(leak.get('slope_high'), 'bytes')}/s), "
            f"{100 * float(leak.get('relative_per_hour') or 0):.2f} %/h")))
        facts.append(("why", escape(leak.get("reason", ""))))
        warmup_end = _warmup_end(samples, leak)
    out = (f"<h3>{escape(run.label)}</h3>" if labelled else "") + key_values(facts, raw=True)
    if len(samples) >= 2:
        png = plots.memory_over_time(
            [s[0] for s in samples], [s[1] for s in samples],
            title=f"Resident memory over the run{' · ' + run.label if labelled else ''}",
            warmup_end=warmup_end, slope_bytes_per_s=leak.get("slope_bytes_per_s") if leak else None)
        out += figure(png, "resident memory over time", "RSS sampled in the background; the grey band is the "
                      "warm-up the leak verdict leaves out, the dashed line the slope it judged.")
    return out


_SEVERITY: dict[Tone, int] = {"info": 0, "skip": 0, "pass": 1, "warn": 2, "fail": 3}


def _worse(tone: Tone, other: Tone) -> Tone:
    """The section's tone: the worst verdict it holds (a skipped one does not make it pass or fail)."""
    return other if _SEVERITY[other] > _SEVERITY[tone] else tone


def _warmup_end(samples: list[Any], leak: Mapping[str, Any]) -> float | None:
    """Where the judged part starts: stated by the record, or the first sample the verdict used."""
    if leak.get("warmup_end_s") is not None:
        return float(leak["warmup_end_s"])
    used = leak.get("samples_used")
    if isinstance(used, int) and 0 < used < len(samples) <= 2000:  # beyond 2000 the verdict binned samples
        return float(samples[len(samples) - used][0])
    return None


def _per_event_table(rows: list[tuple[TestView, str, Mapping[str, Any]]]) -> str:
    frame = pd.DataFrame([
        {
            "test": view.nodeid,
            "sut": view.test.get("sut") or "—",
            "metric": name,
            "value": format_quantity(metric["value"], "bytes") + "/event",
            "target": target_text(metric.get("target"), "bytes"),
            "verdict": {True: "pass", False: "fail", None: None}[target_met(metric["value"], metric.get("target"))],
        }
        for view, name, metric in rows
    ])
    return table(frame, badges=("verdict",))


def _is_per_event(name: str, metric: Mapping[str, Any]) -> bool:
    unit = str(metric.get("unit", "")).lower().replace(" ", "")
    return unit in _PER_EVENT_UNITS or ("per_event" in name.lower() and unit in ("b", "bytes", "byte"))


#: what one unit of a memory timeline's column is, in bytes (decimal and binary prefixes, as tools write them)
_BYTES_PER_UNIT: dict[str, float] = {"b": 1.0, "bytes": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9,
                                     "kib": 1024.0, "mib": 1024.0**2, "gib": 1024.0**3}


def _bytes_per_unit(column: str, unit: str | None) -> float:
    """A timeline states its columns' units (``{"rss_mb": "MB"}``) or names them (``rss_mb``); bytes otherwise."""
    if unit and unit.strip().lower() in _BYTES_PER_UNIT:
        return _BYTES_PER_UNIT[unit.strip().lower()]
    suffix = column.lower().rsplit("_", 1)[-1]
    return _BYTES_PER_UNIT.get(suffix, 1.0) if "_" in column else 1.0


def _rss_column(timeline: Mapping[str, Any]) -> str | None:
    for name in (timeline.get("series") or {}):
        if name.lower().startswith("rss"):
            return str(name)
    return None
