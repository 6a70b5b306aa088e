"""The regression gate of a pytest run: which baseline to use, and what a comparison means for the exit status.

``--testkit-baseline`` takes a baseline or results file, or a *directory* of baselines (``reports/baselines``),
in which case the file for this machine's fingerprint is used (``<key>.json``). A directory without one is said
plainly, with how to make one, and does not fail the run: there is nothing to compare with. A gate that finds a
baseline but matches none of its metrics is an error (exit 2): it would otherwise pass while comparing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.environment import MachineFingerprint

__all__ = ["EXIT_GATE_ERROR", "EXIT_UNRESOLVED", "GateOutcome", "judge_comparison", "resolve_baseline"]

#: The exit status of a gate that could not compare anything (pytest's own usage-error family).
EXIT_GATE_ERROR = 2
EXIT_UNRESOLVED = 3  # a change past the fail line that the runs' noise cannot tell from no change
MAKE_BASELINE_HINT = "make one with `make baseline` (or `testkit baseline DIR RESULTS.json...` from 3+ runs)"


def resolve_baseline(option: str, fingerprint: MachineFingerprint) -> tuple[Path | None, str]:
    """The baseline file ``option`` names for this machine, or ``None`` with the reason."""
    path = Path(option)
    if path.is_dir():
        candidate = path / f"{fingerprint.key}.json"
        if candidate.is_file():
            return candidate, f"testkit: comparing with {candidate} (this machine's fingerprint {fingerprint.key})"
        others = sorted(p.stem for p in path.glob("*.json"))
        return None, (f"testkit: no baseline for this machine (fingerprint {fingerprint.key}) in {path}"
                      f"{' (it has ' + ', '.join(others) + ')' if others else ''}; nothing compared; "
                      f"{MAKE_BASELINE_HINT}")
    if not path.is_file():
        return None, f"testkit: baseline {path} does not exist; nothing compared; {MAKE_BASELINE_HINT}"
    return path, f"testkit: comparing with {path}"


@dataclass
class GateOutcome:
    """What the gate adds to the run: lines to print and, when it must, an exit status."""

    lines: list[str] = field(default_factory=list)
    exit_status: int | None = None


def judge_comparison(comparison: Any) -> GateOutcome:
    """A blocking regression fails the run (1); a comparison of no metric is an error (2), never a pass; a
    change past the fail line that the noise cannot resolve is neither (3)."""
    outcome = GateOutcome(comparison.format_table().splitlines())
    if not comparison.rows:
        baseline_keys, current_keys = comparison.only_in_baseline, comparison.only_in_current
        outcome.lines.append(
            "testkit: ERROR: the regression gate matched no metric: the baseline has "
            f"{len(baseline_keys)} (e.g. {baseline_keys[0] if baseline_keys else '-'}), this run has "
            f"{len(current_keys)} (e.g. {current_keys[0] if current_keys else '-'}); a gate that compares "
            "nothing must not pass (did the selected tests or the metric names change?)")
        outcome.exit_status = EXIT_GATE_ERROR
    elif comparison.blocking:
        outcome.lines.append("testkit: BLOCKING regression against the baseline")
        outcome.exit_status = 1
    elif comparison.unresolved:
        names = ", ".join(f"{row.metric} [{row.statistic}]" for row in comparison.unresolved)
        outcome.lines.append(
            f"testkit: UNRESOLVED: {len(comparison.unresolved)} change(s) worse than the fail threshold but inside "
            f"the runs' noise ({names}): neither a regression nor a pass; rerun with more or steadier runs")
        outcome.exit_status = EXIT_UNRESOLVED
    return outcome
