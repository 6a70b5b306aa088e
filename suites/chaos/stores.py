"""The systems under test of this repository's chaos suite: lighthouse, the SQLite peer, the broken variants.

Store classes travel by import path inside ``AdapterSpec.options``, so the broken variants of
:mod:`variants` reach the workload's children exactly as the real store does. Configurations that
are documented (or built) to lose acknowledged writes declare it as an expectation: the suite must
catch them.
"""

from __future__ import annotations

from typing import Any

from testkit.chaos.sut import SystemUnderTest

__all__ = ["LIGHTHOUSE", "SQLITE", "lighthouse", "sqlite", "variant", "with_store_events"]

LIGHTHOUSE = "testkit.adapters.lighthouse:LighthouseAdapter"
SQLITE = "testkit.adapters.sqlite:SqliteAdapter"
#: Losing the unsynced tail is what these configurations promise, under every fault that drops the page cache.
UNSYNCED = frozenset({"power_cut", "posix_crash"})


def lighthouse(**options: Any) -> SystemUnderTest:
    """The reference store; options go to ``EventStore`` (``durability``, ``segment_bytes``...)."""
    durability = options.get("durability", "fsync")
    name = "lighthouse" if durability == "fsync" else f"lighthouse[durability={durability}]"
    return SystemUnderTest.from_reference(LIGHTHOUSE, options, name=name,
                                          expected_loss=UNSYNCED if durability == "none" else frozenset())


def variant(store_class: type, expected_loss: frozenset[str] = frozenset(), **options: Any) -> SystemUnderTest:
    """A deliberately broken subclass of the store, expected to be caught under ``expected_loss``."""
    return SystemUnderTest.from_reference(LIGHTHOUSE, {"store_factory": store_class, **options},
                                          name=f"lighthouse[{store_class.__name__}]", expected_loss=expected_loss)


def sqlite(synchronous: str = "FULL") -> SystemUnderTest:
    name = "sqlite" if synchronous == "FULL" else f"sqlite[synchronous={synchronous}]"
    return SystemUnderTest.from_reference(SQLITE, {"synchronous": synchronous}, name=name,
                                          expected_loss=UNSYNCED if synchronous == "OFF" else frozenset())



def with_store_events(system: SystemUnderTest) -> SystemUnderTest:
    """The same store, also yielding the events it writes by itself (``corruption_detected``) when read."""
    return system.with_options(include_store_events=True)
