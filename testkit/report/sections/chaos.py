"""Chaos: which invariant held under which fault, how many cases ran and were proven, and every violation with
the events it names and the seed that replays it.

Violations found by tests that *passed* are the suite's sensitivity checks (a known-bad configuration that the
checker must catch); they are listed apart so that a deliberate catch never reads as a broken store.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from testkit.report.formatting import Tone
from testkit.report.html import Section, Tile, badge, code, details, escape, key_values, note, table
from testkit.report.inputs import ReportInput, TestView
from testkit.report.reproduce import single_test_command

__all__ = ["render_chaos"]

#: Violation blocks shown in full; the rest are summarised in one table.
MAX_VIOLATION_BLOCKS = 30
#: Offending events listed per verdict.
MAX_EVENTS = 20
_STATUS_RANK = {"fail": 3, "pass": 2, "skip": 1, "not_run": 0}
_PASSING_OUTCOMES = ("passed", "xfailed")


@dataclass(slots=True)
class _Matrix:
    faults: list[str] = field(default_factory=list)
    invariants: list[str] = field(default_factory=list)
    status: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (cases, faults proven, violations) per cell, when the writer counted them (the testkit plugin does).
    counts: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)

    def merge(self, document: Mapping[str, Any]) -> None:
        for fault in document.get("faults", []):
            if fault not in self.faults:
                self.faults.append(fault)
        for invariant in document.get("invariants", []):
            if invariant not in self.invariants:
                self.invariants.append(invariant)
        for fault, row in (document.get("cells") or {}).items():
            for invariant, cell in row.items():
                status = cell.get("status", "not_run") if isinstance(cell, Mapping) else str(cell)
                key = (fault, invariant)
                if _STATUS_RANK.get(status, 0) >= _STATUS_RANK.get(self.status.get(key, "not_run"), 0):
                    self.status[key] = status
        for fault, row in (document.get("counts") or {}).items():
            for invariant, cell in (row or {}).items():
                if isinstance(cell, Mapping):
                    before = self.counts.get((fault, invariant), (0, 0, 0))
                    self.counts[(fault, invariant)] = (
                        before[0] + int(cell.get("cases", 0)),
                        before[1] + int(cell.get("proven", cell.get("faults_proven", 0))),
                        before[2] + int(cell.get("violations", 0)),
                    )


@dataclass(slots=True)
class _Tally:
    """What the tests say about one fault kind."""

    tests: int = 0
    injected: int = 0
    proven: int = 0
    violations: Counter[str] = field(default_factory=Counter)  # in tests that failed: real findings
    caught: Counter[str] = field(default_factory=Counter)  # in tests that passed: sensitivity catches


def render_chaos(data: ReportInput) -> Section | None:
    matrix = _Matrix()
    for _, document in data.extra("chaos_matrix"):
        matrix.merge(document)
    # Tests that injected a fault and had a checker judge it; a load test that merely shades fault windows
    # on its timeline, or a perf test that checks durability without a fault, is not chaos.
    chaos_tests = [t for t in data.tests() if t.test.get("verdicts") and t.test.get("faults")]
    skipped = _skipped_mechanisms(data)
    if not matrix.faults and not chaos_tests and not skipped:
        return None
    if not matrix.invariants:
        matrix.invariants = sorted({str(v["checker"]) for t in chaos_tests for v in t.test.get("verdicts", [])})
    tallies = _tally(chaos_tests, matrix.invariants)
    if not matrix.faults:  # no matrix written: build its rows from the tests that injected faults and judged them
        matrix.faults = list(tallies)

    real = [t for t in chaos_tests if _failing_verdicts(t) and t.test["outcome"] not in _PASSING_OUTCOMES]
    caught = [t for t in chaos_tests if _failing_verdicts(t) and t.test["outcome"] in _PASSING_OUTCOMES]
    injected, proven, violation_total = _totals(matrix, tallies)
    matrix_failed = any(status == "fail" for status in matrix.status.values())
    tone: Tone = "fail" if real or violation_total or matrix_failed else ("warn" if proven < injected else "pass")
    tiles = [
        Tile("fault cases", f"{injected:,}"),
        Tile("faults proven", f"{proven:,} / {injected:,}", "pass" if proven == injected else "warn"),
        Tile("tests with violations", f"{len(real):,}", "fail" if real else "pass"),
    ]
    if caught:
        tiles.append(Tile("known-bad configs caught", f"{len(caught):,}", "pass"))

    parts = []
    if matrix.faults:
        parts.append(
            '<p class="note">Rows are fault kinds, columns the invariants the history checker verifies. Each cell: '
            "violations found, cases run, and how many injected faults were proven to have taken effect. Green: "
            "held; amber: held but not every fault proven; red: violated; grey: skipped or not run.</p>")
        parts.append(_matrix_table(matrix, tallies))
    if real:
        parts.append(f"<h3>Violations ({len(real):,} test{'s' if len(real) != 1 else ''})</h3>")
        parts.extend(_violation_block(t) for t in real[:MAX_VIOLATION_BLOCKS])
        if len(real) > MAX_VIOLATION_BLOCKS:
            parts.append(note(f"{len(real) - MAX_VIOLATION_BLOCKS:,} more tests with violations:", "fail"))
            parts.append(_violation_summary(real[MAX_VIOLATION_BLOCKS:]))
    elif chaos_tests:
        parts.append(note("No violation in any test that was expected to hold.", "pass"))
    if caught:
        parts.append(f"<h3>Sensitivity: known-bad configurations caught ({len(caught):,})</h3>")
        parts.append(note("These tests pass because the checker reported the loss it had to find; they prove "
                          "the suite can fail."))
        parts.append(details("Show what each caught", _violation_summary(caught), open_=len(caught) <= 10))
    if skipped:
        parts.append("<h3>Skipped mechanisms</h3>")
        parts.append(table(pd.DataFrame(skipped, columns=["mechanism", "reason"])))
    return Section("chaos", "Chaos: faults × invariants", "".join(parts), tone, tuple(tiles))


def _totals(matrix: _Matrix, tallies: Mapping[str, _Tally]) -> tuple[int, int, int]:
    """(cases, proven, violations) of the whole run. With the writer's per-cell counts, a fault kind's cases are
    those of its busiest cell (every case is checked against each invariant); otherwise the tests' own records."""
    if matrix.counts:
        per_fault: dict[str, tuple[int, int]] = {}
        for (fault, _), (cases, fault_proven, _) in matrix.counts.items():
            per_fault[fault] = max(per_fault.get(fault, (0, 0)), (cases, fault_proven))
        return (sum(c for c, _ in per_fault.values()), sum(p for _, p in per_fault.values()),
                sum(v for _, _, v in matrix.counts.values()))
    return (sum(t.injected for t in tallies.values()), sum(t.proven for t in tallies.values()),
            sum(sum(t.violations.values()) for t in tallies.values()))


def _tally(tests: Iterable[TestView], invariants: Sequence[str]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for view in tests:
        faults = view.test.get("faults") or []
        kinds = {str(f["kind"]) for f in faults}
        for fault in faults:
            tally = tallies[str(fault["kind"])]
            tally.injected += 1
            tally.proven += bool(fault.get("proven"))
        passing = view.test["outcome"] in _PASSING_OUTCOMES
        found = _violations_by_invariant(view, invariants)
        for kind in kinds:
            tally = tallies[kind]
            tally.tests += 1
            (tally.caught if passing else tally.violations).update(found)
    return dict(tallies)


def _violations_by_invariant(view: TestView, invariants: Sequence[str]) -> Counter[str]:
    """Violations per invariant: the checker's true count when it kept one, else the examples it listed."""
    found: Counter[str] = Counter()
    for verdict in view.test.get("verdicts") or []:
        examples = Counter(str(v.get("kind")) for v in verdict.get("violations") or [] if isinstance(v, Mapping))
        counts = verdict.get("counts") or {}
        for invariant in invariants:
            n = max(examples.get(invariant, 0), int(counts.get(invariant, 0) or 0))
            if n == 0 and verdict.get("checker") == invariant and not verdict.get("ok", True):
                n = max(1, len(verdict.get("violations") or []))
            found[invariant] += n
    return +found


def _matrix_table(matrix: _Matrix, tallies: Mapping[str, _Tally]) -> str:
    rows = []
    for fault in matrix.faults:
        tally = tallies.get(fault, _Tally())
        row: dict[str, str] = {"fault": escape(fault), "tests": f"{tally.tests:,}" if tally.tests else "—"}
        for invariant in matrix.invariants:
            row[escape(invariant)] = _cell(matrix, fault, invariant, tally)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return table(frame, raw_html=tuple(frame.columns), sortable=False, css_class="matrix")


def _cell(matrix: _Matrix, fault: str, invariant: str, tally: _Tally) -> str:
    """Status colour, violations in bold, then cases and how many of their faults were proven."""
    counted = matrix.counts.get((fault, invariant))
    if counted is not None:
        cases, proven, found = counted
    else:
        cases, proven, found = tally.injected, tally.proven, tally.violations.get(invariant, 0)
    caught = tally.caught.get(invariant, 0)
    status = matrix.status.get((fault, invariant))
    if status is None:
        status = "fail" if found else ("pass" if cases or tally.tests else "not_run")
    tone = {"pass": "pass", "fail": "fail", "skip": "skip", "not_run": "skip"}.get(status, "info")
    if status == "pass" and cases and proven < cases:
        tone = "warn"  # held, but not every fault was shown to have happened
    if status in ("skip", "not_run") and not cases:
        text = "skipped" if status == "skip" else "not run"
    else:
        text = f"<b>{found:,}</b> violation{'s' if found != 1 else ''}"
        if cases:
            text += f"<br><small>{cases:,} cases · {proven:,} proven</small>"
    if caught:
        text += f"<br><small>{caught:,} caught in known-bad</small>"
    return f'<span class="cell {tone}" title="{escape(status)}">{text}</span>'


def _failing_verdicts(view: TestView) -> list[Mapping[str, Any]]:
    return [v for v in view.test.get("verdicts") or [] if not v.get("ok", True)]


def _violation_block(view: TestView) -> str:
    test = view.test
    faults = Counter((str(f["kind"]), bool(f.get("proven"))) for f in test.get("faults") or [])
    fault_text = ", ".join(f"{kind} ×{n}{'' if proven else ' (NOT proven)'}" for (kind, proven), n in faults.items())
    parts = [
        f'<div class="violation"><h4>{escape(view.nodeid)} {badge(test["outcome"])}</h4>',
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
        parts.append(_offending_events(verdict.get("violations") or []))
    parts.append("</div>")
    return "".join(parts)


def _offending_events(violations: Sequence[Any]) -> str:
    if not violations:
        return note("The checker kept no examples.")
    rows = []
    for violation in violations[:MAX_EVENTS]:
        if isinstance(violation, Mapping):
            rows.append({
                "invariant": violation.get("kind", "—"),
                "event ids": _short_list(violation.get("event_ids")),
                "sequences": _short_list(violation.get("sequences")),
                "detail": violation.get("detail", ""),
            })
        else:
            rows.append({"invariant": "—", "event ids": "", "sequences": "", "detail": str(violation)})
    more = "" if len(violations) <= MAX_EVENTS else note(
        f"First {MAX_EVENTS} of {len(violations):,} examples kept by the checker.")
    return table(pd.DataFrame(rows), sortable=False) + more


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
