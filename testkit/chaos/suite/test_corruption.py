"""Corruption of the store's files: never serve a wrong event (format-blind), plus a format-aware oracle if offered."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.chaos import SystemUnderTest, run_generic_corruption, settle
from testkit.chaos.sut import load_factory


def test_generic_corruption(system_under_test: SystemUnderTest, tmp_path: Path, testkit_rng: random.Random,
                            testkit_record, testkit_seed: int, case_seed: int, scaled) -> None:
    """Seeded flips, zeroes, truncations and appended bytes in any file of the data directory."""
    system = system_under_test
    if not system.capabilities.file_based:
        pytest.skip(f"{system.name} keeps no state in its data directory (capability file_based=False)")
    unsafe = system.expects_loss("corruption")
    result = run_generic_corruption(system.spec, tmp_path, testkit_rng, case_seed, scaled(60), min_catches=int(unsafe))
    settle(result, testkit_record, fault="corruption", expected_unsafe=unsafe,
           seed=testkit_seed, min_proven=0.9)


def test_format_aware_corruption(system_under_test: SystemUnderTest, tmp_path: Path, testkit_rng: random.Random,
                                 testkit_record, testkit_seed: int, case_seed: int, scaled) -> None:
    """The adapter's own oracle (it knows the format: which damage must be reported, which may be a torn tail)."""
    system = system_under_test
    oracle = system.capabilities.corruption_oracle
    if not oracle:
        pytest.skip(f"{system.name} offers no format-aware corruption oracle (capability corruption_oracle)")
    result = load_factory(oracle)(system.spec, tmp_path, testkit_rng, case_seed, scaled(100))
    settle(result, testkit_record, fault="corruption", expected_unsafe=system.expects_loss("corruption"),
           seed=testkit_seed, min_proven=0.95)
