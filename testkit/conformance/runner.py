"""Run the conformance state machine against one adapter factory and say, per rule, what broke."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, seed as hypothesis_seed, settings
from hypothesis.reporting import with_reporter
from hypothesis.stateful import run_state_machine_as_test

from testkit.adapters.base import EventStoreAdapter
from testkit.conformance.machine import MachineStats, conformance_machine
from testkit.conformance.rules import RULES, RuleViolation

__all__ = ["ConformanceReport", "RuleFailure", "run_conformance"]


@dataclass(frozen=True)
class RuleFailure:
    """One broken rule: its name, what the adapter did, and the (shrunk) steps that show it."""

    rule: str
    message: str
    steps: str = ""

    def describe(self) -> str:
        text = f"rule {self.rule!r} broken: {self.message}\n  the rule: {RULES.get(self.rule, '?')}"
        return text + (f"\n  minimal steps:\n    " + self.steps.replace("\n", "\n    ") if self.steps else "")


@dataclass(frozen=True)
class ConformanceReport:
    """The verdict for one adapter: ``passed`` only if no rule broke in any example."""

    adapter: str
    seed: int
    examples: int
    checks: int
    seconds: float
    failures: tuple[RuleFailure, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def broken_rules(self) -> frozenset[str]:
        return frozenset(f.rule for f in self.failures)

    def describe(self) -> str:
        head = (f"conformance of {self.adapter}: {'PASS' if self.passed else 'FAIL'} "
                f"({self.examples} examples, {self.checks} read-back checks, seed {self.seed}, {self.seconds:.1f} s)")
        if self.passed:
            return head + f"\n  rules kept: {', '.join(RULES)}"
        return "\n".join([head, *(f.describe() for f in self.failures)])

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "passed": self.passed, "seed": self.seed, "examples": self.examples,
                "checks": self.checks, "seconds": round(self.seconds, 3),
                "failures": [{"rule": f.rule, "message": f.message, "steps": f.steps} for f in self.failures]}


def _violations(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _violations(inner)]
    return [error]


def run_conformance(
    adapter_factory: Callable[[Path], EventStoreAdapter],
    *,
    seed: int = 0,
    max_examples: int = 25,
    steps: int = 12,
    name: str | None = None,
    workdir: str | Path | None = None,
    shrink: bool = True,
) -> ConformanceReport:
    """Drive ``adapter_factory(data_dir)`` through ``max_examples`` random programs of up to ``steps`` calls.

    Every example starts on an empty data directory under ``workdir`` (a temporary directory by default).
    The same ``seed`` replays the same programs. Never raises for a broken adapter: the report says which
    rule broke, with hypothesis's shrunk example (``shrink=False`` reports the first failing program
    as found: faster, longer).
    """
    root = Path(tempfile.mkdtemp(prefix="testkit-conformance-", dir=workdir))
    stats = MachineStats()
    machine = hypothesis_seed(seed)(conformance_machine(adapter_factory, root, stats))
    lines: list[str] = []
    failures: list[RuleFailure] = []
    started = time.monotonic()
    try:
        with with_reporter(lambda message: lines.append(str(message))):
            run_state_machine_as_test(machine, settings=settings(
                max_examples=max_examples, stateful_step_count=steps, deadline=None, database=None,
                derandomize=False, print_blob=False, report_multiple_bugs=True,
                phases=(Phase.explicit, Phase.generate, *((Phase.shrink,) if shrink else ())),
                suppress_health_check=list(HealthCheck)))
    except Exception as error:  # every failure becomes a named rule; anything else is the harness's bug
        for violation in _violations(error):
            # hypothesis attaches the (shrunk) program to the exception as notes; older versions report it
            notes = [str(n) for n in getattr(violation, "__notes__", ()) if str(n).strip()]
            steps_text = "\n".join(notes or [line for line in lines if line.strip()])
            if isinstance(violation, RuleViolation):
                failures.append(RuleFailure(violation.rule, violation.message, steps_text))
            else:
                failures.append(RuleFailure("open", f"the run stopped on {type(violation).__name__}: {violation}",
                                            steps_text))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    label = name or stats.adapter_name or getattr(adapter_factory, "__name__", None) or repr(adapter_factory)
    return ConformanceReport(label, seed, stats.examples, stats.checks, time.monotonic() - started,
                             tuple(dict.fromkeys(failures)))
