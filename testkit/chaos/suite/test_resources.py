"""Full disks, exhausted inodes, read-only filesystems, resource limits and injected I/O errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.chaos import (
    ChaosFailure,
    CampaignResult,
    SystemUnderTest,
    run_disk_full,
    run_inodes_exhausted,
    run_io_errors,
    run_open_on_full_disk,
    run_read_only_remount,
    run_resource_pressure,
    settle,
)
from testkit.chaos.io_errors import IO_SCENARIOS, LIGHTHOUSE_ONLY, only_writes_never_resumed
from testkit.chaos.resources import PRESSURE
from testkit.faults.probe import probe_gcc, probe_loop_mount, probe_tmpfs


@pytest.fixture
def file_based(system_under_test: SystemUnderTest) -> SystemUnderTest:
    if not system_under_test.capabilities.file_based:
        pytest.skip(f"{system_under_test.name} keeps no state in its data directory (capability file_based=False)")
    return system_under_test


def _settle(result: CampaignResult, system: SystemUnderTest, fault: str, recorder, seed: int) -> None:
    settle(result, recorder, fault=fault, expected_unsafe=system.expects_loss(fault), seed=seed)


@pytest.mark.parametrize("fs_kind", ["tmpfs", "ext4"])
def test_disk_full(file_based: SystemUnderTest, fs_kind: str, testkit_record, testkit_seed: int, case_seed: int,
                   require) -> None:
    """Fill the disk under the open store: typed refusals, reads served, writes resume once space is freed."""
    require("tmpfs mounts" if fs_kind == "tmpfs" else "loop ext4",
            probe_tmpfs() if fs_kind == "tmpfs" else probe_loop_mount())
    _settle(run_disk_full(file_based.spec, fs_kind, case_seed, footprint=file_based.capabilities.footprint), file_based,
            "disk_full", testkit_record, testkit_seed)


def test_inodes_exhausted(file_based: SystemUnderTest, testkit_record, testkit_seed: int, case_seed: int,
                          require) -> None:
    require("tmpfs mounts", probe_tmpfs())
    result = run_inodes_exhausted(file_based.spec, "tmpfs", case_seed,
                                  creates_files=file_based.capabilities.creates_files,
                                  footprint=file_based.capabilities.footprint)
    _settle(result, file_based, "inodes_exhausted", testkit_record, testkit_seed)


@pytest.mark.parametrize("scenario", ["read_only_remount", "open_on_full_disk"])
def test_read_only_and_restart_on_full_disk(file_based: SystemUnderTest, scenario: str, testkit_record,
                                            testkit_seed: int, case_seed: int, require) -> None:
    """Reads must survive a read-only filesystem and a restart on a full disk (unless the store declares it cannot)."""
    require("tmpfs mounts", probe_tmpfs())
    run = run_read_only_remount if scenario == "read_only_remount" else run_open_on_full_disk
    result = run(file_based.spec, case_seed, footprint=file_based.capabilities.footprint)
    try:
        _settle(result, file_based, "read_only" if scenario == "read_only_remount" else "disk_full", testkit_record,
                testkit_seed)
    except ChaosFailure:
        refused = result.parameters.get("refused_open")
        if refused and len(result.failures) == 1 and not file_based.capabilities.opens_read_only:
            pytest.xfail(f"{file_based.name} declares it cannot open on a read-only or full filesystem, "
                         f"and refused to with a typed error ({refused})")
        raise


@pytest.mark.parametrize("limit", list(PRESSURE))
def test_resource_limits(system_under_test: SystemUnderTest, limit: str, tmp_path: Path, testkit_record,
                         testkit_seed: int, case_seed: int) -> None:
    """RLIMIT_NOFILE / RLIMIT_AS / RLIMIT_FSIZE lowered in the worker: typed errors, nothing lost, resume after."""
    _settle(run_resource_pressure(system_under_test.spec, limit, tmp_path, case_seed), system_under_test,
            "rlimit", testkit_record, testkit_seed)


@pytest.mark.parametrize("scenario", [name for name in IO_SCENARIOS if name not in LIGHTHOUSE_ONLY])
def test_io_errors(file_based: SystemUnderTest, scenario: str, tmp_path: Path, testkit_record, testkit_seed: int,
                   case_seed: int, require) -> None:
    """LD_PRELOAD shim: EIO/ENOSPC from write and fsync, short writes, on the store's own files."""
    require("LD_PRELOAD shim (gcc)", probe_gcc())
    if not file_based.capabilities.io_preload:
        pytest.skip(f"{file_based.name} writes its files from a server process the LD_PRELOAD shim does not reach "
                    "(capability io_preload)")
    result = run_io_errors(file_based.spec, scenario, tmp_path, case_seed, target=file_based.capabilities.io_target)
    try:
        _settle(result, file_based, "io_error", testkit_record, testkit_seed)
    except ChaosFailure:
        if (scenario == "short_writes" and not file_based.capabilities.finishes_short_writes
                and only_writes_never_resumed(result)):
            pytest.xfail(f"{file_based.name} declares it refuses a write the OS cuts short instead of finishing it "
                         "(capability finishes_short_writes): under writes that are always short it takes none; "
                         "every refusal was typed and nothing acknowledged was lost")
        raise
