"""Adapter conformance: the rules an adapter must keep before a chaos verdict about it means anything.

``run_conformance(factory)`` drives the adapter through random programs (a hypothesis state machine)
against a model and returns a :class:`ConformanceReport` that names each broken rule;
``testkit conformance --adapter PKG.MODULE:FACTORY [--option key=value]...`` does the same from a shell.
Names are resolved on first use, so the ``testkit`` command does not import hypothesis until it runs this.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["RULES", "ConformanceReport", "RuleFailure", "RuleViolation", "run_conformance"]

_HOME = {"RULES": "rules", "RuleViolation": "rules", "ConformanceReport": "runner", "RuleFailure": "runner",
         "run_conformance": "runner"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
