"""Every chaos figure the page shows, derived from the results documents in one place.

The verdict line, the headline tiles, each matrix cell and the known-unsafe table all read :func:`chaos_facts`,
so a headline can never disagree with the matrix below it: both are sums over the same cells. A cell the run did
not count is ``not_run``, never "held". Every rendered figure also carries its raw number in a ``data-*``
attribute, which is how the consistency test checks the page against the results file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testkit.report.inputs import ReportInput, TestView

__all__ = ["KNOWN_BAD_PREFIX", "CampaignView", "Cell", "ChaosFacts", "KnownUnsafe", "SutLoss", "chaos_facts",
           "is_chaos_test"]

#: Matrix rows of deliberately broken configurations (the plugin's convention): violations there are expected.
KNOWN_BAD_PREFIX = "known-bad:"
_STATUS_RANK = {"fail": 3, "pass": 2, "skip": 1, "not_run": 0}
_PASSING_OUTCOMES = ("passed", "xfailed")


@dataclass(frozen=True, slots=True)
class Cell:
    """One fault x invariant cell: its status and the evidence it rests on."""

    status: str  # pass, fail, skip, not_run
    cases: int = 0
    proven: int = 0
    violations: int = 0


@dataclass(slots=True)
class SutLoss:
    """What one system under test lost, by fault kind (rows that were expected to hold only)."""

    sut: str
    violations: dict[str, int] = field(default_factory=dict)  # fault -> violations (matrix)
    lost_writes: dict[str, int] = field(default_factory=dict)  # fault -> acknowledged writes missing (tests)


@dataclass(frozen=True, slots=True)
class KnownUnsafe:
    """A configuration that must lose writes: did the checker catch it, how often."""

    name: str
    sut: str
    fault: str
    caught: bool
    attempts: int | None
    catches: int | None
    catch_rate: float | None
    source: str  # "expectation" (the test said so) or "matrix" (read from a known-bad row)
    lost_acknowledged: int | None = None


@dataclass(frozen=True, slots=True)
class CampaignView:
    """A test that recorded an operation timeline."""

    view: TestView
    timeline: Mapping[str, Any]


@dataclass(slots=True)
class ChaosFacts:
    faults: list[str] = field(default_factory=list)  # rows expected to hold, in order
    known_bad_rows: list[str] = field(default_factory=list)
    invariants: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    counted: bool = False  # the writer counted cells (else they were rebuilt from the tests)
    losses: dict[str, SutLoss] = field(default_factory=dict)
    # (sut, row) whose violations only tests that xfailed recorded: a limitation the configuration declares
    documented: set[tuple[str, str]] = field(default_factory=set)
    known_unsafe: list[KnownUnsafe] = field(default_factory=list)
    chaos_tests: list[TestView] = field(default_factory=list)
    real_violations: list[TestView] = field(default_factory=list)  # failing tests with failing verdicts
    caught: list[TestView] = field(default_factory=list)  # passing tests with failing verdicts (known-bad)
    campaigns: list[CampaignView] = field(default_factory=list)

    def cell(self, fault: str, invariant: str) -> Cell:
        return self.cells.get((fault, invariant), Cell("not_run"))

    def row_cases(self, fault: str) -> tuple[int, int]:
        """(cases, proven) of a row: its busiest cell (every case is checked against each invariant)."""
        cells = [self.cell(fault, invariant) for invariant in self.invariants]
        return max(((c.cases, c.proven) for c in cells), default=(0, 0))

    @property
    def cases(self) -> int:
        return sum(self.row_cases(fault)[0] for fault in self.faults)

    @property
    def proven(self) -> int:
        return sum(self.row_cases(fault)[1] for fault in self.faults)

    @property
    def violations(self) -> int:
        """Violations in rows expected to hold: the red cells' total."""
        return sum(self.cell(f, i).violations for f in self.faults for i in self.invariants)

    @property
    def red_cells(self) -> int:
        return sum(self.cell(f, i).status == "fail" for f in self.faults for i in self.invariants)

    @property
    def not_run_cells(self) -> int:
        return sum(self.cell(f, i).status == "not_run" for f in self.faults for i in self.invariants)


def is_chaos_test(view: TestView) -> bool:
    """A test that injected a fault and had a checker judge it (a load test that merely shades fault windows
    on its timeline, or a perf test that checks durability without a fault, is not chaos)."""
    return bool(view.test.get("verdicts")) and bool(view.test.get("faults"))


def chaos_facts(data: ReportInput) -> ChaosFacts:
    """Everything the chaos part of the page says, from the results documents and nothing else."""
    facts = ChaosFacts()
    matrices = [document for _, document in data.extra("chaos_matrix")]
    rows: list[str] = []
    by_sut: dict[str, dict[str, int]] = {}
    for document in matrices:
        _merge_matrix(facts, document, rows)
        for fault, suts in (document.get("violations_by_sut") or {}).items():
            for sut, found in (suts or {}).items():
                by_sut.setdefault(fault, {})[sut] = by_sut.get(fault, {}).get(sut, 0) + int(found)
    facts.chaos_tests = [t for t in data.tests() if is_chaos_test(t)]
    failing = [t for t in facts.chaos_tests if _failing_verdicts(t)]
    facts.real_violations = [t for t in failing if t.test["outcome"] not in _PASSING_OUTCOMES]
    facts.caught = [t for t in failing if t.test["outcome"] in _PASSING_OUTCOMES]
    if not matrices:
        _matrix_from_tests(facts, rows)
    facts.faults = [r for r in rows if not r.startswith(KNOWN_BAD_PREFIX)]
    facts.known_bad_rows = [r for r in rows if r.startswith(KNOWN_BAD_PREFIX)]
    _losses(facts, data, by_sut)
    _documented_limitations(facts, data)
    _known_unsafe(facts, data)
    facts.campaigns = [CampaignView(t, t.test["op_timeline"]) for t in data.tests()
                       if isinstance(t.test.get("op_timeline"), Mapping)
                       and t.test["op_timeline"].get("ops") is not None]
    return facts


def _merge_matrix(facts: ChaosFacts, document: Mapping[str, Any], rows: list[str]) -> None:
    facts.counted = facts.counted or bool(document.get("counts"))
    for fault in document.get("faults", []):
        if fault not in rows:
            rows.append(fault)
    for invariant in document.get("invariants", []):
        if invariant not in facts.invariants:
            facts.invariants.append(invariant)
    counts = document.get("counts") or {}
    for fault, row in (document.get("cells") or {}).items():
        for invariant, status in row.items():
            status = status.get("status", "not_run") if isinstance(status, Mapping) else str(status)
            numbers = (counts.get(fault) or {}).get(invariant) or {}
            before = facts.cells.get((fault, invariant), Cell("not_run"))
            worse = status if _STATUS_RANK.get(status, 0) >= _STATUS_RANK.get(before.status, 0) else before.status
            facts.cells[(fault, invariant)] = Cell(
                worse, before.cases + int(numbers.get("cases", 0)),
                before.proven + int(numbers.get("proven", numbers.get("faults_proven", 0))),
                before.violations + int(numbers.get("violations", 0)))


def _matrix_from_tests(facts: ChaosFacts, rows: list[str]) -> None:
    """No matrix written: rows are the fault kinds the tests injected, columns the checkers that judged them;
    a cell is counted only where a test's checker judged that fault."""
    for view in facts.chaos_tests:
        kinds = list(dict.fromkeys(str(f["kind"]) for f in view.test.get("faults") or []))
        if any(isinstance(e, Mapping) and e.get("expected_unsafe") for e in view.test.get("expectations") or []):
            kinds = [KNOWN_BAD_PREFIX + kind for kind in kinds]
        faults = view.test.get("faults") or []
        for kind in kinds:
            if kind not in rows:
                rows.append(kind)
        for verdict in view.test.get("verdicts") or []:
            invariant = str(verdict["checker"])
            if invariant not in facts.invariants:
                facts.invariants.append(invariant)
            found = _violation_count(verdict)
            for kind in kinds:
                bare = kind.removeprefix(KNOWN_BAD_PREFIX)
                cases = sum(1 for f in faults if str(f["kind"]) == bare)
                proven = sum(1 for f in faults if str(f["kind"]) == bare and f.get("proven"))
                before = facts.cells.get((kind, invariant), Cell("not_run"))
                violations = before.violations + found
                facts.cells[(kind, invariant)] = Cell("fail" if violations else "pass", before.cases + cases,
                                                      before.proven + proven, violations)


def _violation_count(verdict: Mapping[str, Any]) -> int:
    if verdict.get("ok", True):
        return 0
    return max(1, len(verdict.get("violations") or []))


def _losses(facts: ChaosFacts, data: ReportInput, by_sut: Mapping[str, Mapping[str, int]]) -> None:
    """Per system under test: violations per fault (matrix rows expected to hold) and acknowledged writes lost
    (from the tests' own verdicts: ``lost_acknowledged``)."""
    for fault in facts.faults:
        row_total = sum(facts.cell(fault, i).violations for i in facts.invariants)
        attributed = {sut: n for sut, n in (by_sut.get(fault) or {}).items() if n}
        if row_total and not attributed:
            attributed = {"(system not recorded)": row_total}
        for sut, found in attributed.items():
            facts.losses.setdefault(sut, SutLoss(sut)).violations[fault] = found
    for view in facts.real_violations:
        sut = str(view.test.get("sut") or "(system not recorded)")
        lost = max((int((v.get("counts") or {}).get("lost_acknowledged", 0)) for v in view.test["verdicts"]),
                   default=0)
        if lost:
            for kind in dict.fromkeys(str(f["kind"]) for f in view.test.get("faults") or []):
                entry = facts.losses.setdefault(sut, SutLoss(sut))
                entry.lost_writes[kind] = entry.lost_writes.get(kind, 0) + lost


def _documented_limitations(facts: ChaosFacts, data: ReportInput) -> None:
    """A loss row is a declared limitation when a test of that system under that fault xfailed (the adapter
    declares it cannot meet the check there, e.g. SQLite cannot open in WAL mode on a read-only filesystem) and no
    failed test of that system was under that fault. Rows are matched to tests by the fault kind they start with
    (``disk_full[at open]`` holds ``disk_full`` faults)."""
    kinds: dict[str, dict[str, set[str]]] = {"xfailed": {}, "failed": {}}
    for view in data.tests():
        outcome = "xfailed" if view.test["outcome"] == "xfailed" else (
            "failed" if view.test["outcome"] not in _PASSING_OUTCOMES else None)
        if outcome is None:
            continue
        sut = str(view.test.get("sut") or "(system not recorded)")
        kinds[outcome].setdefault(sut, set()).update(str(f["kind"]) for f in view.test.get("faults") or [])
    for sut, loss in facts.losses.items():
        for row in set(loss.violations) | set(loss.lost_writes):
            def under(outcome: str) -> bool:
                return any(row.startswith(kind) for kind in kinds[outcome].get(sut, ()))
            if under("xfailed") and not under("failed"):
                facts.documented.add((sut, row))


def _known_unsafe(facts: ChaosFacts, data: ReportInput) -> None:
    """From the tests' ``expectations`` (one per fault a configuration was judged under); known-bad matrix rows
    are read from the matrix only when no test recorded an expectation (an older writer)."""
    for view in data.tests():
        for expectation in view.test.get("expectations") or []:
            if not isinstance(expectation, Mapping) or not expectation.get("expected_unsafe"):
                continue
            faults = [str(f["kind"]) for f in view.test.get("faults") or []]
            facts.known_unsafe.append(KnownUnsafe(
                view.nodeid.split("::", 1)[-1], str(view.test.get("sut") or "—"),
                str(expectation.get("fault") or ", ".join(dict.fromkeys(faults)) or "—"),
                bool(expectation.get("caught")), _int_or_none(expectation.get("attempts")),
                _int_or_none(expectation.get("catches")), _float_or_none(expectation.get("catch_rate")), "expectation",
                _int_or_none(expectation.get("lost_acknowledged"))))
    if facts.known_unsafe:
        return
    for row in facts.known_bad_rows:
        cells = [facts.cell(row, i) for i in facts.invariants]
        cases = max((c.cases for c in cells), default=0)
        caught = sum(c.violations for c in cells)
        facts.known_unsafe.append(KnownUnsafe(row.removeprefix(KNOWN_BAD_PREFIX), "—", row, caught > 0,
                                              cases or None, None, None, "matrix"))


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _failing_verdicts(view: TestView) -> Sequence[Mapping[str, Any]]:
    return [v for v in view.test.get("verdicts") or [] if not v.get("ok", True)]
