"""Failed syncs, fsyncgate-aware: a group whose fdatasync failed must be refused, and stays lost.

strace fails the Nth fdatasync of every worker's I/O thread with EIO (``inject``, in the same strace
run the POSIX crash model reads), so the failure hits a group's sync; the trace's ``(INJECTED)`` lines
prove it. The crash model treats the failed sync as Linux does: the dirty pages were marked clean, so
what that sync should have written is gone after the crash even if a later sync succeeded. A store
that retries the sync and acknowledges (PostgreSQL's bug until 2018) then loses acknowledged events;
a correct store refused the group, so nothing refused reappears.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from testkit.adapters import AdapterSpec
from testkit.chaos.crashes import run_posix_crashes
from testkit.chaos.result import CampaignResult
from testkit.checkers.history import OpStatus
from testkit.faults.workload import load_history

__all__ = ["FAILED_SYNC_AT", "refused_appends", "run_failed_syncs"]

FAILED_SYNC_AT = 4  # the Nth fdatasync of each worker's I/O thread fails (a few groups after open)


def refused_appends(journal_dir: Path, codes: Sequence[str]) -> int:
    """Journalled appends that were refused with an error whose code starts with one of ``codes``."""
    prefixes = tuple(codes)
    return sum(1 for op in load_history(journal_dir)
               if op.status != OpStatus.OK and (op.error or "").startswith(prefixes))


def run_failed_syncs(
    adapter: AdapterSpec, crashes: int, root: Path, rng: random.Random, seed: int, *,
    fail_at: int = FAILED_SYNC_AT, refusal_codes: Sequence[str] = ("write_failed",), until_caught: bool = False,
) -> CampaignResult:
    """POSIX crashes of workers whose ``fail_at``-th fdatasync fails with EIO, judged like any crash.

    Needs the failure to have been injected and, unless ``until_caught`` (a seeded bug), at least one
    append refused with one of ``refusal_codes``: each failed sync belongs to a group with a caller,
    and that caller must hear "no".
    """
    result = run_posix_crashes(adapter, crashes, root, rng, seed, fault_kind="failed_sync",
                               inject=(f"fdatasync:error=EIO:when={fail_at}",), until_caught=until_caught)
    result.fault("failed_sync", result.injected > 0, f"{result.injected} fdatasync calls failed with EIO")
    result.need(result.injected > 0, "strace never failed an fdatasync")
    refused = refused_appends(root / "journal", refusal_codes)
    result.parameters["refused_appends"] = refused
    if not until_caught:
        result.need(refused >= 1, f"{result.injected} syncs failed, yet no append was refused")
    return result
