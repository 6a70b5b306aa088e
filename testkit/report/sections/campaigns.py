"""Fault campaigns: one picture per campaign that recorded an operation timeline, Jepsen style (latency of every
operation and throughput over time with the fault windows shaded, recovery time and acknowledged vs recovered
per cycle), with the figures under it read from the same record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from testkit.report.campaign_plots import campaign_figure
from testkit.report.facts import CampaignView, chaos_facts
from testkit.report.html import Section, Tile, escape, figure, note
from testkit.report.inputs import ReportInput

__all__ = ["render_campaigns"]

#: Campaign pictures drawn at most (a full chaos run has about 90 campaigns; any beyond are named).
MAX_CAMPAIGNS = 120


def render_campaigns(data: ReportInput) -> Section | None:
    campaigns = chaos_facts(data).campaigns
    if not campaigns:
        return None
    ordered = sorted(campaigns, key=_interest)
    parts = [note("One picture per fault campaign. Top: every operation's latency (blue acknowledged, red refused, "
                  "amber unknown) with p50/p99 per time bin over all operations; middle: acknowledged and failed "
                  "operations per second; red bands are the injected faults. Bottom: how long each recovery took "
                  "and, per check, how many acknowledged events the recovered log still held.")]
    for campaign in ordered[:MAX_CAMPAIGNS]:
        parts.append(_campaign(campaign))
    if len(ordered) > MAX_CAMPAIGNS:
        names = ", ".join(c.view.nodeid for c in ordered[MAX_CAMPAIGNS:])
        parts.append(note(f"{len(ordered) - MAX_CAMPAIGNS} more campaigns not drawn: {names}"))
    faults = sum(len(c.timeline.get("faults") or []) for c in campaigns)
    tiles = (Tile("campaigns drawn", f"{min(len(ordered), MAX_CAMPAIGNS):,}"), Tile("fault windows", f"{faults:,}"))
    return Section("campaigns", "Fault campaigns over time", "".join(parts), "info", tiles)


def _interest(campaign: CampaignView) -> tuple[bool, bool, str]:
    """Failures first, then campaigns that lost something, then by name."""
    failed = campaign.view.test["outcome"] in ("failed", "error")
    lost = any(c[3] < c[2] for c in campaign.timeline.get("cycles") or [])
    return (not failed, not lost, campaign.view.nodeid)


def _campaign(campaign: CampaignView) -> str:
    view, timeline = campaign.view, campaign.timeline
    sut = view.test.get("sut") or "—"
    title = f"{view.nodeid.split('::', 1)[-1]} · {sut}"
    png = campaign_figure(timeline, title)
    return (f'<h3 id="campaign-{escape(_slug(view.nodeid))}">{escape(view.nodeid)}</h3>'
            + _facts_line(timeline)
            + figure(png, f"campaign {view.nodeid}", f"{view.nodeid}: latency, throughput, recovery",
                     css_class="campaign-figure"))


def _facts_line(timeline: Mapping[str, Any]) -> str:
    cycles = timeline.get("cycles") or []
    acknowledged = cycles[-1][2] if cycles else 0
    recovered = cycles[-1][3] if cycles else 0
    return (f'<p class="note">{int(timeline.get("total_ops") or 0):,} operations by '
            f"{len(timeline.get('workers') or []):,} workers; {len(timeline.get('faults') or []):,} faults; "
            f"{len(cycles):,} recoveries judged; at the last check {int(acknowledged):,} acknowledged events, "
            f"{int(recovered):,} recovered.</p>")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[:80]
