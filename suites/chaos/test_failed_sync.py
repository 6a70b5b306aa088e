"""Failed syncs, fsyncgate-aware: a group whose fdatasync failed must be refused, and stays lost.

strace fails the Nth fdatasync of every worker's I/O thread with EIO (``inject``, in the same strace
run the POSIX crash model reads), so the failure hits a group's sync and never a new segment's fsync;
the trace's ``(INJECTED)`` lines prove it. The crash model treats the failed sync as Linux does: the
dirty pages were marked clean, so what that sync should have written is gone after the crash even if a
later sync succeeded. A store that retries the sync and acknowledges (PostgreSQL's bug until 2018)
then loses acknowledged events; a correct store refused the group, so nothing refused reappears.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.adapters.lighthouse import NOT_WRITTEN
from testkit.checkers.history import OpStatus
from testkit.faults.probe import probe_strace
from testkit.faults.workload import load_history
from testkit.chaos import run_posix_crashes

from . import seeded_bugs, stores

FAILED_SYNC_AT = 4  # the Nth fdatasync of each worker's I/O thread fails (a few groups after open)


def _inject(at: int) -> tuple[str, ...]:
    return (f"fdatasync:error=EIO:when={at}",)


def _refused_by_failed_write(journal_dir: Path) -> int:
    return sum(1 for op in load_history(journal_dir)
               if op.status != OpStatus.OK and (op.error or "").startswith(("write_failed", NOT_WRITTEN)))


@pytest.mark.smoke
def test_a_group_whose_fdatasync_failed_is_refused_and_never_reappears(
    tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    require("strace", probe_strace())
    adapter = stores.lighthouse(segment_bytes=64 * 1024, probe_interval=0.02).spec
    testkit_record.sut = adapter.name
    result = run_posix_crashes(adapter, scaled(8), tmp_path, testkit_rng, case_seed, fault_kind="failed_sync",
                               inject=_inject(FAILED_SYNC_AT))
    result.tally.record(testkit_record)
    testkit_record.fault("failed_sync", result.injected > 0, f"{result.injected} fdatasync calls failed with EIO")
    assert result.injected > 0, f"seed {testkit_seed}: strace never failed an fdatasync"
    refused = _refused_by_failed_write(tmp_path / "journal")
    # Each failed sync belongs to one group with at least one caller, and each of them must hear "no".
    assert refused >= 1, f"seed {testkit_seed}: {result.injected} syncs failed, yet no append was refused"
    assert not result.failures, f"seed {testkit_seed}:\n" + "\n".join(result.failures[:5])


def test_acknowledging_after_a_retried_sync_is_caught(
    tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    require("strace", probe_strace())
    adapter = stores.variant(seeded_bugs.RetrySyncAndAck, segment_bytes=64 * 1024).spec
    testkit_record.sut = adapter.name
    result = run_posix_crashes(adapter, scaled(10), tmp_path, testkit_rng, case_seed, fault_kind="failed_sync",
                               inject=_inject(FAILED_SYNC_AT), until_caught=True)
    result.tally.fault_kind = "known-bad:retry-sync-ack"
    result.tally.record(testkit_record)
    assert result.injected > 0, f"seed {testkit_seed}: strace never failed an fdatasync"
    assert result.failures, (f"seed {testkit_seed}: a store that acknowledges after a failed sync passed "
                             f"{len(result.new_loss)} crashes")
