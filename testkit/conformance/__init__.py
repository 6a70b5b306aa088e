"""Adapter conformance: the rules an adapter must keep before a chaos verdict about it means anything.

``run_conformance(factory)`` drives the adapter through random programs (a hypothesis state machine)
against a model and returns a :class:`ConformanceReport` that names each broken rule;
``testkit conformance --adapter PKG.MODULE:FACTORY [--option key=value]...`` does the same from a shell.
"""

from testkit.conformance.rules import RULES, RuleViolation
from testkit.conformance.runner import ConformanceReport, RuleFailure, run_conformance

__all__ = ["RULES", "ConformanceReport", "RuleFailure", "RuleViolation", "run_conformance"]
