"""Failed syncs, fsyncgate-aware: a group whose fdatasync failed must be refused, and stays lost.

Campaign: :func:`testkit.chaos.run_failed_syncs` (its docstring says how the failure is injected,
proven and judged). A store that retries the sync and acknowledges must be caught.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.adapters.lighthouse import NOT_WRITTEN
from testkit.chaos import expect_caught, run_failed_syncs, settle

from . import seeded_bugs, stores

REFUSED = ("write_failed", NOT_WRITTEN)  # how lighthouse refuses a group whose sync failed


@pytest.mark.smoke
def test_a_group_whose_fdatasync_failed_is_refused_and_never_reappears(
    tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int, case_seed: int, scaled,
    require_fault,
) -> None:
    require_fault("failed_sync")
    system = stores.lighthouse(segment_bytes=64 * 1024, probe_interval=0.02)
    testkit_record.sut = system.name
    result = run_failed_syncs(system.spec, scaled(8), tmp_path, testkit_rng, case_seed, refusal_codes=REFUSED)
    settle(result, testkit_record, fault="failed_sync", expected_unsafe=False, seed=testkit_seed,
           min_proven=0.0, at_least=0)


def test_acknowledging_after_a_retried_sync_is_caught(
    tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int, case_seed: int, scaled,
    require_fault,
) -> None:
    require_fault("failed_sync")
    system = stores.variant(seeded_bugs.RetrySyncAndAck, segment_bytes=64 * 1024)
    testkit_record.sut = system.name
    result = run_failed_syncs(system.spec, scaled(10), tmp_path, testkit_rng, case_seed, refusal_codes=REFUSED,
                              until_caught=True)
    expect_caught(result, testkit_record, fault="failed_sync", label="retry-sync-ack", seed=testkit_seed)
