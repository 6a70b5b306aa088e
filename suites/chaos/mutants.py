"""The mutation loop: run the chaos suite against seeded store bugs and print which ones it catches.

``python -m suites.chaos.mutants`` (``make mutants``) takes each bug of the catalogue (the broken
variants of :mod:`variants` and the seeded bugs of :mod:`seeded_bugs`), puts it in place of the real
store for one child pytest run of the chaos tests relevant to it (``seeded_site/sitecustomize.py``
swaps the class in every process of that run; the source is never modified), and reports *caught*
when a test fails, *missed* when all pass. The correct store runs the same subsets first: a failure
there is a false alarm and makes every "caught" meaningless, so the loop stops.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CATALOGUE", "Bug", "main"]

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


@dataclass(frozen=True, slots=True)
class Bug:
    """A seeded bug: the store class that has it, and the chaos tests that should catch it."""

    name: str
    store: str  # module:Class
    tests: tuple[str, ...]
    select: str = ""  # a -k expression narrowing the tests, if any


def _variant(name: str) -> str:
    return f"suites.chaos.variants:{name}"


def _seeded(name: str) -> str:
    return f"suites.chaos.seeded_bugs:{name}"


CATALOGUE: tuple[Bug, ...] = (
    Bug("ack-before-fsync", _variant("AckBeforeFsync"), (POWER_CUT, POSIX)),
    Bug("skipped-directory-fsync", _variant("SkipDirectoryFsync"), (POSIX,)),
    Bug("truncate-at-first-bad-checksum", _variant("TruncateAtFirstBadChecksum"), (CORRUPTION,)),
    Bug("unverified-checksums", _variant("TrustUnverifiedFrames"), (CORRUPTION,)),
    Bug("ack-after-failed-sync", _seeded("RetrySyncAndAck"), (FAILED_SYNC,)),
    Bug("refused-numbers-reused", _seeded("ReuseRefusedSequences"), (IO_ERRORS,), "lighthouse"),
    Bug("non-atomic-batch", _seeded("NonAtomicBatch"), (KILL9, RESTARTS)),
    Bug("short-writes-unchecked", _seeded("IgnoreShortWrites"), (IO_ERRORS,), "lighthouse"),
    Bug("stale-offset-after-recovery", _seeded("StaleOffsetAfterRecovery"), (RESTARTS, POSIX)),
    Bug("snapshot-in-place", _seeded("SnapshotInPlace"), (SNAPSHOTS,)),
    Bug("snapshot-skipped-directory-fsync", _seeded("SnapshotSkipDirectoryFsync"), (SNAPSHOTS,)),
    Bug("retry-stored-twice", _seeded("AcceptRetryAsNewEvent"), (RESTARTS,)),
    Bug("store-events-duplicated", _seeded("DuplicateIntegrityEvents"), (OWN_EVENTS, CORRUPTION)),
)
_FAILED = re.compile(r"^FAILED (\S+)", re.MULTILINE)


def _run(repo: Path, tests: tuple[str, ...], select: str, store: str | None, seed: int) -> tuple[str, list[str], float]:
    env = dict(os.environ)
    site = str(Path(__file__).with_name("seeded_site"))
    env["PYTHONPATH"] = os.pathsep.join([site, str(repo), *filter(None, [env.get("PYTHONPATH")])])
    if store:
        env["TESTKIT_SEEDED_STORE"] = store
    argv = [sys.executable, "-m", "pytest", *tests, "-q", "-x", "-rf", "-p", "no:cacheprovider",
            "--testkit-seed", str(seed), *(["-k", select] if select else [])]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    outcome = {0: "missed", 1: "caught"}.get(done.returncode, f"error ({done.returncode})")
    if done.returncode not in (0, 1):
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    return outcome, _FAILED.findall(done.stdout), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--only", nargs="*", default=None, help="names of bugs to run (default: all)")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the correct store first")
    options = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    bugs = [b for b in CATALOGUE if options.only is None or b.name in options.only]
    started = time.monotonic()
    if not options.skip_baseline:
        subsets = sorted({t for b in bugs for t in b.tests})
        outcome, failed, elapsed = _run(repo, tuple(subsets), "", None, options.seed)
        print(f"{'correct store (baseline)':36} {'clean' if outcome == 'missed' else 'FALSE ALARM'}  "
              f"{elapsed:6.1f}s {failed[:3]}", flush=True)
        if outcome != "missed":
            return 2
    caught = 0
    for bug in bugs:
        outcome, failed, elapsed = _run(repo, bug.tests, bug.select, bug.store, options.seed)
        caught += outcome == "caught"
        print(f"{bug.name:36} {outcome:8} {elapsed:6.1f}s  {failed[0] if failed else ''}", flush=True)
    print(f"caught {caught}/{len(bugs)} seeded bugs in {time.monotonic() - started:.0f}s (seed {options.seed})")
    return 0 if caught == len(bugs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
