"""Disk full, inodes exhausted, filesystem read-only: refuse writes with typed errors, keep serving reads,
lose nothing acknowledged, resume by itself once the condition clears.

Scenarios: :mod:`testkit.chaos.disk` (a size-limited tmpfs, or a loop-mounted ext4 where ENOSPC can
also surface at fsync through delayed allocation); each proves its fault before judging the store.
"""

from __future__ import annotations

import pytest

from testkit.chaos import SystemUnderTest, settle
from testkit.chaos.disk import run_disk_full, run_inodes_exhausted, run_open_on_full_disk, run_read_only_remount
from testkit.faults.probe import probe_loop_mount, probe_tmpfs

from . import stores

ADAPTERS = [
    # probe_interval: how soon lighthouse retries a durable write while read-only (default 0.2 s).
    pytest.param(stores.lighthouse(probe_interval=0.05), id="lighthouse"),
    pytest.param(stores.sqlite(), id="sqlite"),
]
FS_CASES = [
    pytest.param(adapter.values[0], fs_kind, id=f"{adapter.id}-{fs_kind}",
                 marks=[pytest.mark.smoke] if (adapter.id, fs_kind) == ("lighthouse", "tmpfs") else [])
    for fs_kind in ("tmpfs", "ext4") for adapter in ADAPTERS
]
#: SQLite in WAL mode needs to create its -shm (and -wal) files to open at all.
SQLITE_CANNOT_OPEN = "peer limitation: SQLite in WAL mode must create its -shm file to open"


def _require_fs(kind: str, require) -> None:
    require("tmpfs mounts" if kind == "tmpfs" else "loop ext4", probe_tmpfs() if kind == "tmpfs" else probe_loop_mount())


@pytest.mark.parametrize(("system", "fs_kind"), FS_CASES)
def test_disk_full(system: SystemUnderTest, fs_kind: str, testkit_record, testkit_seed: int, case_seed: int,
                   require) -> None:
    _require_fs(fs_kind, require)
    testkit_record.sut = system.name
    settle(run_disk_full(system.spec, fs_kind, case_seed), testkit_record, fault="disk_full",
           expected_unsafe=False, seed=testkit_seed)


@pytest.mark.parametrize(("system", "fs_kind"), FS_CASES)
def test_inodes_exhausted(system: SystemUnderTest, fs_kind: str, testkit_record, testkit_seed: int, case_seed: int,
                          require) -> None:
    """No inode left: a store that needs a new file (lighthouse rotates every 4 KiB here) must refuse cleanly."""
    _require_fs(fs_kind, require)
    if system.capabilities.creates_files:
        system = system.with_options(segment_bytes=4096)
    testkit_record.sut = system.name
    result = run_inodes_exhausted(system.spec, fs_kind, case_seed, creates_files=system.capabilities.creates_files)
    settle(result, testkit_record, fault="inodes_exhausted", expected_unsafe=False, seed=testkit_seed)


@pytest.mark.parametrize("system", [
    pytest.param(stores.lighthouse(), id="lighthouse"),
    pytest.param(stores.sqlite(), id="sqlite", marks=pytest.mark.xfail(strict=True, reason=(
        f"{SQLITE_CANNOT_OPEN}, which a read-only filesystem refuses; it refuses with a typed error, "
        "so reads are not served"))),
])
def test_read_only_remount_serves_reads_and_refuses_writes(
    system: SystemUnderTest, testkit_record, testkit_seed: int, case_seed: int, require,
) -> None:
    """The filesystem goes read-only under a closed store (the kernel refuses while files are open for writing)."""
    require("tmpfs mounts", probe_tmpfs())
    testkit_record.sut = system.name
    settle(run_read_only_remount(system.spec, case_seed), testkit_record, fault="read_only",
           expected_unsafe=False, seed=testkit_seed)


@pytest.mark.parametrize("system", [
    ADAPTERS[0],
    pytest.param(stores.sqlite(), id="sqlite", marks=pytest.mark.xfail(strict=True, reason=(
        f"{SQLITE_CANNOT_OPEN}, which fails on a full tmpfs with a typed 'disk I/O error', so nothing can be "
        "read until space is freed"))),
])
def test_open_on_a_full_disk(system: SystemUnderTest, testkit_record, testkit_seed: int, case_seed: int,
                             require) -> None:
    """A restart while the disk is full: recovery must not need space to serve what is there."""
    require("tmpfs mounts", probe_tmpfs())
    testkit_record.sut = system.name
    settle(run_open_on_full_disk(system.spec, case_seed), testkit_record, fault="disk_full",
           expected_unsafe=False, seed=testkit_seed)
