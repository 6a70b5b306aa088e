"""Chaos: the verdict first (which system lost what under which fault), then the whole fault x invariant matrix,
the known-unsafe configurations and whether each was caught, and every violation with its offending events and
the history around it.

Every figure comes from :func:`testkit.report.facts.chaos_facts`; cells and headline numbers carry their raw
value in ``data-*`` attributes so that the page can be checked against the results file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from testkit.report.campaign_plots import history_figure
from testkit.report.facts import ChaosFacts, chaos_facts
from testkit.report.formatting import Tone
from testkit.report.html import Section, Tile, badge, code, details, escape, figure, key_values, note, table
from testkit.report.inputs import ReportInput, TestView
from testkit.report.reproduce import single_test_command

__all__ = ["render_chaos"]

#: Violation blocks shown in full; the rest are summarised in one table.
MAX_VIOLATION_BLOCKS = 30
#: Offending events listed per verdict.
MAX_EVENTS = 20
#: History views drawn: for real violations, and for the first caught known-unsafe configurations.
MAX_HISTORY_FIGURES = 10
MAX_CAUGHT_HISTORY_FIGURES = 2


def render_chaos(data: ReportInput) -> Section | None:
    facts = chaos_facts(data)
    skipped = _skipped_mechanisms(data)
    if not facts.faults and not facts.known_bad_rows and not facts.chaos_tests and not skipped:
        return None
    caught = sum(k.caught for k in facts.known_unsafe)
    undeclared = _undeclared_losses(facts)
    tone: Tone = "fail" if undeclared or facts.real_violations else (
        "warn" if facts.proven < facts.cases or caught < len(facts.known_unsafe) or facts.documented else "pass")
    tiles = [
        Tile("fault cases", f"{facts.cases:,}"),
        Tile("faults proven", f"{facts.proven:,} / {facts.cases:,}", "pass" if facts.proven == facts.cases else "warn"),
        Tile("violations (red cells)", f"{facts.violations:,} ({facts.red_cells:,})", "fail" if facts.violations
             else "pass"),
    ]
    if facts.known_unsafe:
        tiles.append(Tile("known-unsafe caught", f"{caught:,} / {len(facts.known_unsafe):,}",
                          "pass" if caught == len(facts.known_unsafe) else "fail"))
    parts = [_verdict(facts)]
    if facts.faults:
        parts.append("<h3>Fault × invariant matrix</h3>")
        parts.append(
            '<p class="note">Rows are fault kinds expected to hold, columns the invariants checked. Each cell: '
            "violations (bold), cases run, injected faults proven to have happened. Green: held; amber: held but "
            "not every fault proven; red: violated; grey: not run (this invariant was never checked under this fault).</p>")
        parts.append(_matrix_table(facts))
    if facts.known_unsafe:
        parts.append(f"<h3>Known-unsafe configurations ({len(facts.known_unsafe):,})</h3>")
        parts.append(note("Each of these loses writes on purpose; the suite must catch it, which proves it can fail. "
                          "Catch rate: the share of faults (cuts, crashes, cases) after which the checker saw a new "
                          "loss."))
        parts.append(_known_unsafe_table(facts))
    parts.append(_violations(facts))
    if skipped:
        parts.append("<h3>Skipped mechanisms</h3>")
        parts.append(table(pd.DataFrame(skipped, columns=["mechanism", "reason"])))
    return Section("chaos", "Chaos: verdict, faults × invariants", "".join(parts), tone, tuple(tiles))


def _verdict(facts: ChaosFacts) -> str:
    """One line per system under test that lost anything: under which fault, how many violations and writes."""
    if not facts.losses:
        checked = f"{facts.cases:,} fault cases" if facts.cases else "the chaos tests"
        return (f'<div class="verdict-box pass" data-fact="verdict" data-violations="0">'
                f"<b>No system under test violated an invariant</b> in {escape(checked)} "
                f"({facts.proven:,} faults proven).</div>")
    lines = []
    for sut, loss in sorted(facts.losses.items()):
        faults = sorted(set(loss.violations) | set(loss.lost_writes))
        pieces = []
        for fault in faults:
            text = f"{escape(fault)}: {loss.violations.get(fault, 0):,} violation" + (
                "s" if loss.violations.get(fault, 0) != 1 else "")
            if fault in loss.lost_writes:
                text += f", {loss.lost_writes[fault]:,} acknowledged writes lost"
            if (sut, fault) in facts.documented:
                text += " (a limitation it declares: the test xfailed)"
            pieces.append(text)
        total = sum(loss.violations.values())
        lines.append(f'<li data-sut="{escape(sut)}" data-violations="{total}"><b>{escape(sut)}</b> — '
                     + "; ".join(pieces) + "</li>")
    undeclared = _undeclared_losses(facts)
    if not undeclared:
        return (f'<div class="verdict-box warn" data-fact="verdict" data-violations="{facts.violations}">'
                f"<b>No system under test violated an invariant beyond the limitations it declares</b> "
                f"({facts.violations:,} violations in {facts.red_cells:,} cells, each under a test that xfailed "
                f"as its configuration declares):<ul>{''.join(lines)}</ul></div>")
    return (f'<div class="verdict-box fail" data-fact="verdict" data-violations="{facts.violations}">'
            f"<b>{len(undeclared)} system{'s' if len(undeclared) != 1 else ''} under test violated an invariant"
            f"</b> ({facts.violations:,} violations in {facts.red_cells:,} cells):<ul>{''.join(lines)}</ul></div>")


def _undeclared_losses(facts: ChaosFacts) -> set[str]:
    """Systems under test with a loss that is not one of their declared limitations."""
    return {sut for sut, loss in facts.losses.items()
            if any((sut, fault) not in facts.documented for fault in set(loss.violations) | set(loss.lost_writes))}


def _matrix_table(facts: ChaosFacts) -> str:
    rows = []
    for fault in facts.faults:
        cases, proven = facts.row_cases(fault)
        row: dict[str, str] = {"fault": escape(fault), "cases": f"{cases:,}"}
        for invariant in facts.invariants:
            row[_breakable(invariant)] = _cell(facts, fault, invariant)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return table(frame, raw_html=tuple(frame.columns), css_class="matrix", table_id="chaos-matrix", scroll=False)


def _breakable(name: str) -> str:
    """A column name that may wrap after its underscores: eight invariants fit a laptop screen."""
    return escape(name).replace("_", "_<wbr>")


def _cell(facts: ChaosFacts, fault: str, invariant: str) -> str:
    cell = facts.cell(fault, invariant)
    tone = {"pass": "pass", "fail": "fail", "skip": "skip", "not_run": "skip"}.get(cell.status, "info")
    if cell.status == "pass" and cell.cases and cell.proven < cell.cases:
        tone = "warn"  # held, but not every fault was shown to have happened
    if cell.status in ("skip", "not_run") and not cell.cases:
        text = "skipped" if cell.status == "skip" else "not run"
    else:
        text = f"<b>{cell.violations:,}</b>"
        if cell.cases:
            text += f"<br><small>{cell.cases:,} cases<br>{cell.proven:,} proven</small>"
    attributes = (f'data-fault="{escape(fault)}" data-invariant="{escape(invariant)}" data-status="{cell.status}" '
                  f'data-cases="{cell.cases}" data-proven="{cell.proven}" data-violations="{cell.violations}"')
    return (f'<span class="cell {tone}" data-sort="{cell.violations}" title="{escape(cell.status)}" {attributes}>'
            f"{text}</span>")


def _known_unsafe_table(facts: ChaosFacts) -> str:
    rows = []
    for item in facts.known_unsafe:
        rate = "—" if item.catch_rate is None else f"{item.catch_rate:.0%}"
        rows.append({
            "configuration": escape(item.name),
            "system under test": escape(item.sut),
            "fault": escape(item.fault),
            "caught": badge("pass" if item.caught else "fail", "caught" if item.caught else "NOT caught"),
            "catches / attempts": "—" if item.attempts is None else
            f"{'?' if item.catches is None else f'{item.catches:,}'} / {item.attempts:,}",
            "catch rate": f'<span data-fact="catch-rate">{rate}</span>',
            "acknowledged writes lost": "—" if item.lost_acknowledged is None else f"{item.lost_acknowledged:,}",
        })
    frame = pd.DataFrame(rows)
    return table(frame, raw_html=tuple(frame.columns), table_id="known-unsafe", scroll=False)


def _violations(facts: ChaosFacts) -> str:
    parts = []
    timelines = {c.view.nodeid: c.timeline for c in facts.campaigns}
    real = facts.real_violations
    if real:
        parts.append(f"<h3>Violations ({len(real):,} test{'s' if len(real) != 1 else ''})</h3>")
        for index, view in enumerate(real[:MAX_VIOLATION_BLOCKS]):
            parts.append(_violation_block(view, timelines.get(view.nodeid), draw=index < MAX_HISTORY_FIGURES))
        if len(real) > MAX_VIOLATION_BLOCKS:
            parts.append(note(f"{len(real) - MAX_VIOLATION_BLOCKS:,} more tests with violations:", "fail"))
            parts.append(_violation_summary(real[MAX_VIOLATION_BLOCKS:]))
    elif facts.violations:
        parts.append(note(f"The matrix counts {facts.violations:,} violations but no test kept the offending events "
                          "(its checker did not record a verdict); rerun the red rows to see them.", "fail"))
    elif facts.chaos_tests:
        parts.append(note("No violation in any test that was expected to hold.", "pass"))
    if facts.caught:
        parts.append(f"<h3>What the known-unsafe configurations lost ({len(facts.caught):,})</h3>")
        parts.append(note("These tests pass because the checker reported the loss it had to find. The first ones "
                          "are explained in full, as a real violation would be."))
        blocks = [_violation_block(view, timelines.get(view.nodeid), draw=index < MAX_CAUGHT_HISTORY_FIGURES,
                                   caught=True) for index, view in enumerate(facts.caught[:MAX_VIOLATION_BLOCKS])]
        parts.append(details(f"Show the offending events of {len(facts.caught):,} caught configurations",
                             "".join(blocks), open_=True))
    return "".join(parts)


def _violation_block(view: TestView, timeline: Mapping[str, Any] | None, *, draw: bool, caught: bool = False) -> str:
    test = view.test
    faults = Counter((str(f["kind"]), bool(f.get("proven"))) for f in test.get("faults") or [])
    fault_text = ", ".join(f"{kind} ×{n}{'' if proven else ' (NOT proven)'}" for (kind, proven), n in faults.items())
    parts = [
        f'<div class="violation{" caught" if caught else ""}"><h4>{escape(view.nodeid)} {badge(test["outcome"])}</h4>',
        key_values([
            ("system under test", escape(test.get("sut") or "—")),
            ("seed", escape(_seeds(view))),
            ("rerun", code(single_test_command(view.nodeid, view.rerun_seed))),
            ("faults injected", escape(fault_text or "none")),
        ], raw=True),
    ]
    for verdict in _failing_verdicts(view):
        counts = ", ".join(f"{k}={v:,}" for k, v in (verdict.get("counts") or {}).items())
        parts.append(f"<p><b>{escape(verdict.get('checker'))}</b>: {escape(counts)}</p>")
        violations = verdict.get("violations") or []
        if violations or "lost_acknowledged" not in (verdict.get("counts") or {}):  # not the campaign's totals
            parts.append(_offending_events(violations))
    if draw and timeline is not None and timeline.get("marks"):
        parts.append(_history_view(view, timeline))
    parts.append("</div>")
    return "".join(parts)


def _history_view(view: TestView, timeline: Mapping[str, Any]) -> str:
    marks = timeline["marks"]
    first, last = min(m[0] for m in marks), max(m[1] for m in marks)
    faults_before = [f for f in timeline.get("faults") or [] if f[0] <= last]
    anchor = max((f[1] for f in faults_before), default=last)  # the fault that ended the offending writes' life
    span = max(0.3, 6 * float(timeline.get("bin_s") or 0.05))
    window = (max(0.0, first - span), max(last, anchor) + span)
    png = history_figure(timeline, window, f"history around the violation · {view.nodeid.split('::', 1)[-1]}")
    total, drawn = int(timeline.get("total_ops") or 0), len(timeline.get("ops") or [])
    sampled = f" Acknowledged operations are a sample ({drawn:,} of {total:,})." if total > drawn else ""
    return figure(png, f"history around the violation in {view.nodeid}",
                  "Each bar is one operation, from invocation to answer, on its worker's lane; red bands are faults; "
                  f"outlined bars are the operations whose events the checker named.{sampled}",
                  css_class="history-figure")


def _offending_events(violations: Sequence[Any]) -> str:
    if not violations:
        return note("The checker kept no examples.")
    rows = []
    for violation in violations[:MAX_EVENTS]:
        if not isinstance(violation, Mapping):
            rows.append({"invariant": "—", "event": "", "sequences": "", "written by": "", "invoked": "",
                         "answer": "", "read back": "", "detail": str(violation)})
            continue
        events = violation.get("events") or [{"event_id": e} for e in violation.get("event_ids") or []] or [{}]
        for event in events[:5]:
            rows.append({
                "invariant": violation.get("kind", "—"),
                "event": event.get("event_id", ""),
                "sequences": _short_list(violation.get("sequences")),
                "written by": event.get("worker", "—"),
                "invoked": _at(event.get("invoked_s")),
                "answer": f"{event['answer']} {_at(event.get('answered_s'))}" if event.get("answer") else "—",
                "read back": event.get("read_back", "—"),
                "detail": violation.get("detail", ""),
            })
    more = "" if len(violations) <= MAX_EVENTS else note(
        f"First {MAX_EVENTS} of {len(violations):,} examples kept by the checker.")
    return table(pd.DataFrame(rows), sortable=False) + more


def _at(seconds: Any) -> str:
    return "—" if seconds is None else f"at {float(seconds):.3f} s"


def _violation_summary(views: Sequence[TestView]) -> str:
    rows = []
    for view in views:
        found: Counter[str] = Counter()
        for verdict in _failing_verdicts(view):
            found.update(str(v.get("kind")) for v in verdict.get("violations") or [] if isinstance(v, Mapping))
            if not verdict.get("violations"):
                found[str(verdict.get("checker"))] += 1
        rows.append({
            "test": view.nodeid,
            "sut": view.test.get("sut") or "—",
            "outcome": view.test["outcome"],
            "violations": ", ".join(f"{k} ×{n}" for k, n in found.most_common()),
            "seed": "—" if view.seed is None else str(view.seed),
        })
    return table(pd.DataFrame(rows), badges=("outcome",))


def _failing_verdicts(view: TestView) -> list[Mapping[str, Any]]:
    return [v for v in view.test.get("verdicts") or [] if not v.get("ok", True)]


def _skipped_mechanisms(data: ReportInput) -> list[tuple[str, str]]:
    """Mechanisms a run could not use: declared by the run, or chaos tests skipped with their reason."""
    found: dict[tuple[str, str], None] = {}
    for _, items in data.extra("skipped_mechanisms"):
        for item in items if isinstance(items, list) else []:
            if isinstance(item, Mapping):
                found[(str(item.get("mechanism", "?")), str(item.get("reason", "")))] = None
    for view in data.tests():
        if view.test["outcome"] == "skipped" and "/chaos/" in f"/{view.nodeid}":
            found[(view.nodeid, str(view.test.get("skipped_reason") or "(no reason given)"))] = None
    return list(found)


def _seeds(view: TestView) -> str:
    run_seed = view.run.run.get("seed")
    if view.test.get("seed") is None or view.test.get("seed") == run_seed:
        return "—" if run_seed is None else str(run_seed)
    return f"{view.test['seed']} (this test's, derived from the run seed {run_seed})"


def _short_list(values: Any, limit: int = 5) -> str:
    if not values:
        return ""
    items = [str(v) for v in values]
    return ", ".join(items[:limit]) + (f" … (+{len(items) - limit})" if len(items) > limit else "")
