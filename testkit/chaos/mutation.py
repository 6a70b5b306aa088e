"""The mutation loop: run a chaos suite against a catalogue of seeded store bugs and expect each one caught.

Each :class:`Mutant` names a broken store (``module:Class``) and the tests that should catch it. For
each, one child ``pytest`` run of those tests gets ``TESTKIT_SEEDED_STORE=module:Class`` and a
``sitecustomize`` directory first on ``PYTHONPATH`` (the suite provides it: it knows how to put the
broken class in place of the real one in every process of that run; the source is never modified).
A failing run is *caught*, a passing one *missed*. The correct store runs the same tests first: a
failure there is a false alarm that makes every "caught" meaningless, so the loop stops.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SWAP_VARIABLE", "Mutant", "MutantOutcome", "MutationReport", "main", "run_mutants"]

SWAP_VARIABLE = "TESTKIT_SEEDED_STORE"
_FAILED = re.compile(r"^FAILED (\S+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Mutant:
    """A seeded bug: the store class that has it (``module:Class``), and the tests that should catch it."""

    name: str
    store: str
    tests: tuple[str, ...]
    select: str = ""  # a -k expression narrowing the tests, if any


@dataclass(frozen=True, slots=True)
class MutantOutcome:
    """``caught`` (a test failed), ``missed`` (all passed) or ``error (code)``; the failing tests; the time."""

    name: str
    outcome: str
    failed: tuple[str, ...]
    seconds: float


@dataclass
class MutationReport:
    baseline: MutantOutcome | None = None
    outcomes: list[MutantOutcome] = field(default_factory=list)

    @property
    def false_alarm(self) -> bool:
        return self.baseline is not None and self.baseline.outcome != "missed"

    @property
    def caught(self) -> int:
        return sum(o.outcome == "caught" for o in self.outcomes)

    @property
    def all_caught(self) -> bool:
        return not self.false_alarm and self.caught == len(self.outcomes)


def _run(name: str, tests: Sequence[str], *, cwd: Path, site_dir: Path, seed: int, store: str | None,
         select: str) -> MutantOutcome:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site_dir), str(cwd), *filter(None, [env.get("PYTHONPATH")])])
    env.pop(SWAP_VARIABLE, None)
    if store:
        env[SWAP_VARIABLE] = store
    argv = [sys.executable, "-m", "pytest", *tests, "-q", "-x", "-rf", "-p", "no:cacheprovider",
            "--testkit-seed", str(seed), *(["-k", select] if select else [])]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    outcome = {0: "missed", 1: "caught"}.get(done.returncode, f"error ({done.returncode})")
    if done.returncode not in (0, 1):
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    return MutantOutcome(name, outcome, tuple(_FAILED.findall(done.stdout)), time.monotonic() - started)


def run_mutants(catalogue: Sequence[Mutant], *, cwd: Path, site_dir: Path, seed: int, baseline: bool = True,
                progress: Callable[[MutantOutcome], None] | None = None) -> MutationReport:
    """Run the correct store over every mutant's tests (unless ``baseline`` is off), then each mutant."""
    report = MutationReport()
    if baseline:
        tests = sorted({t for m in catalogue for t in m.tests})
        report.baseline = _run("correct store (baseline)", tests, cwd=cwd, site_dir=site_dir, seed=seed, store=None,
                               select="")
        if progress:
            progress(report.baseline)
        if report.false_alarm:
            return report
    for mutant in catalogue:
        outcome = _run(mutant.name, mutant.tests, cwd=cwd, site_dir=site_dir, seed=seed, store=mutant.store,
                       select=mutant.select)
        report.outcomes.append(outcome)
        if progress:
            progress(outcome)
    return report


def _print(outcome: MutantOutcome) -> None:
    shown = "clean" if outcome.name.endswith("(baseline)") and outcome.outcome == "missed" else outcome.outcome
    if outcome.name.endswith("(baseline)") and outcome.outcome == "caught":
        shown = "FALSE ALARM"
    print(f"{outcome.name:36} {shown:8} {outcome.seconds:6.1f}s  {outcome.failed[0] if outcome.failed else ''}",
          flush=True)


def main(catalogue: Sequence[Mutant], *, cwd: Path, site_dir: Path, argv: list[str] | None = None) -> int:
    """Command line of a suite's mutation loop: ``--seed``, ``--only NAME...``, ``--skip-baseline``.

    Exit 0 when every mutant was caught, 1 when one was missed, 2 on a false alarm of the correct store."""
    parser = argparse.ArgumentParser(description="Run the chaos suite against seeded store bugs.")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--only", nargs="*", default=None, help="names of bugs to run (default: all)")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the correct store first")
    options = parser.parse_args(argv)
    chosen = [m for m in catalogue if options.only is None or m.name in options.only]
    started = time.monotonic()
    report = run_mutants(chosen, cwd=cwd, site_dir=site_dir, seed=options.seed,
                         baseline=not options.skip_baseline, progress=_print)
    if report.false_alarm:
        return 2
    print(f"caught {report.caught}/{len(chosen)} seeded bugs in {time.monotonic() - started:.0f}s "
          f"(seed {options.seed})")
    return 0 if report.all_caught else 1
