"""The systems under test, as picklable adapter specs a child process can rebuild.

Store classes travel by import path inside ``AdapterSpec.options``, so the broken variants of
:mod:`variants` reach the workload's children exactly as the real store does.
"""

from __future__ import annotations

from typing import Any

from testkit.adapters import AdapterSpec

__all__ = ["LIGHTHOUSE", "SQLITE", "is_lighthouse", "lighthouse", "sqlite", "variant"]

LIGHTHOUSE = "testkit.adapters.lighthouse:LighthouseAdapter"
SQLITE = "testkit.adapters.sqlite:SqliteAdapter"


def lighthouse(**options: Any) -> AdapterSpec:
    """The reference store; options go to ``EventStore`` (``durability``, ``segment_bytes``...)."""
    durability = options.get("durability", "fsync")
    name = "lighthouse" if durability == "fsync" else f"lighthouse[durability={durability}]"
    return AdapterSpec(name, LIGHTHOUSE, dict(options))


def variant(store_class: type, **options: Any) -> AdapterSpec:
    """A test-only subclass of the store (a broken variant, or the crash-point store)."""
    return AdapterSpec(f"lighthouse[{store_class.__name__}]", LIGHTHOUSE, {"store_factory": store_class, **options})


def sqlite(synchronous: str = "FULL") -> AdapterSpec:
    name = "sqlite" if synchronous == "FULL" else f"sqlite[synchronous={synchronous}]"
    return AdapterSpec(name, SQLITE, {"synchronous": synchronous})


def is_lighthouse(spec: AdapterSpec) -> bool:
    return spec.factory == LIGHTHOUSE
