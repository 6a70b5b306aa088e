"""This repository's mutation catalogue: lighthouse's seeded bugs and the chaos tests that must catch each.

``python -m suites.chaos.mutants`` (``make mutants``) runs :func:`testkit.chaos.mutation.main` over it:
each bug (the broken variants of :mod:`variants` and the seeded bugs of :mod:`seeded_bugs`) is put in
place of the real store for one child pytest run by ``seeded_site/sitecustomize.py``.
"""

from __future__ import annotations

from pathlib import Path

from testkit.chaos.mutation import Mutant, main as mutation_main

__all__ = ["CATALOGUE", "main"]

_CHAOS = "suites/chaos/"
POWER_CUT = _CHAOS + "test_powerloss.py::test_power_cut_loses_no_acknowledged_event[lighthouse]"
POSIX = _CHAOS + "test_powerloss.py::test_posix_crash_state_loses_no_acknowledged_event[lighthouse-rotating]"
KILL9 = _CHAOS + "test_kill9.py::test_sigkill_cycles_lose_no_acknowledged_event[lighthouse]"
CORRUPTION = _CHAOS + "test_corruption.py::test_corruption_is_detected_reported_and_never_served[smoke]"
IO_ERRORS = _CHAOS + "test_io_errors.py::test_io_errors_on_the_stores_files"
FAILED_SYNC = _CHAOS + "test_failed_sync.py::test_a_group_whose_fdatasync_failed_is_refused_and_never_reappears"
SNAPSHOTS = _CHAOS + "test_snapshots.py::test_snapshots_survive_crashes"
RESTARTS = _CHAOS + "test_restarts.py::test_retries_across_restarts_and_appends_after_recovery"
OWN_EVENTS = _CHAOS + "test_restarts.py::test_the_stores_own_events_are_held_to_no_duplicates[lighthouse]"


def _variant(name: str) -> str:
    return f"suites.chaos.variants:{name}"


def _seeded(name: str) -> str:
    return f"suites.chaos.seeded_bugs:{name}"


CATALOGUE: tuple[Mutant, ...] = (
    Mutant("ack-before-fsync", _variant("AckBeforeFsync"), (POWER_CUT, POSIX)),
    Mutant("skipped-directory-fsync", _variant("SkipDirectoryFsync"), (POSIX,)),
    Mutant("truncate-at-first-bad-checksum", _variant("TruncateAtFirstBadChecksum"), (CORRUPTION,)),
    Mutant("unverified-checksums", _variant("TrustUnverifiedFrames"), (CORRUPTION,)),
    Mutant("ack-after-failed-sync", _seeded("RetrySyncAndAck"), (FAILED_SYNC,)),
    Mutant("refused-numbers-reused", _seeded("ReuseRefusedSequences"), (IO_ERRORS,), "lighthouse"),
    Mutant("non-atomic-batch", _seeded("NonAtomicBatch"), (KILL9, RESTARTS)),
    Mutant("short-writes-unchecked", _seeded("IgnoreShortWrites"), (IO_ERRORS,), "lighthouse"),
    Mutant("stale-offset-after-recovery", _seeded("StaleOffsetAfterRecovery"), (RESTARTS, POSIX)),
    Mutant("snapshot-in-place", _seeded("SnapshotInPlace"), (SNAPSHOTS,)),
    Mutant("snapshot-skipped-directory-fsync", _seeded("SnapshotSkipDirectoryFsync"), (SNAPSHOTS,)),
    Mutant("retry-stored-twice", _seeded("AcceptRetryAsNewEvent"), (RESTARTS,)),
    Mutant("store-events-duplicated", _seeded("DuplicateIntegrityEvents"), (OWN_EVENTS, CORRUPTION)),
)


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve()
    return mutation_main(CATALOGUE, cwd=here.parents[2], site_dir=here.with_name("seeded_site"), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
