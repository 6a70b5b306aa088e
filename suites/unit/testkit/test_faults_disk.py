"""Disk faults: ENOSPC, inode exhaustion and EROFS are observed from the kernel, then undone."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.faults import (
    FakeDiskFull,
    InvalidFaultSpec,
    LoopExt4,
    MountBusy,
    SmallTmpfs,
    Unavailable,
    UnsafeTarget,
    disk_full,
    exhaust_inodes,
    fill,
    free_bytes,
    free_space,
    no_leaks,
    remount_readonly,
)
from testkit.faults.probe import probe_loop_mount, probe_pyfakefs, probe_tmpfs

BLOCK = 4096


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_leaks():
        yield


@pytest.fixture
def tmpfs_available() -> None:
    available = probe_tmpfs()
    if isinstance(available, Unavailable):
        pytest.skip(available.reason)


@pytest.fixture
def loop_available() -> None:
    available = probe_loop_mount()
    if isinstance(available, Unavailable):
        pytest.skip(available.reason)


def write_errno(path: Path, size: int) -> tuple[int | None, int]:
    """Write ``size`` bytes with os.write, as a store would; return (errno, bytes accepted)."""
    written = 0
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    try:
        while written < size:
            written += os.write(fd, bytes(min(size - written, 1 << 16)))
        return None, written
    except OSError as exc:
        return exc.errno, written
    finally:
        os.close(fd)


@pytest.mark.needs_root
@pytest.mark.usefixtures("tmpfs_available")
class TestSmallTmpfs:
    def test_writes_past_the_size_get_enospc(self) -> None:
        with SmallTmpfs(64 * BLOCK) as fs:
            observed, accepted = write_errno(fs / "big", 128 * BLOCK)
        assert observed == errno.ENOSPC
        assert 0 < accepted <= 64 * BLOCK

    def test_fill_leaves_exactly_the_requested_room(self) -> None:
        leave = 10 * BLOCK + 123
        with SmallTmpfs(64 * BLOCK) as fs:
            ballast = fill(fs, leave_bytes=leave)
            assert ballast.record.proven, ballast.record.detail
            assert leave <= free_bytes(fs) < leave + BLOCK
            assert write_errno(fs / "fits", leave)[0] is None
            assert write_errno(fs / "does-not-fit", 2 * BLOCK)[0] == errno.ENOSPC
            freed = free_space(ballast)
            assert freed.proven, freed.detail
            assert write_errno(fs / "after", 16 * BLOCK)[0] is None

    def test_disk_full_context_frees_on_exit(self) -> None:
        with SmallTmpfs(64 * BLOCK) as fs:
            with disk_full(fs) as ballast:
                assert ballast.record.evidence["errno"] == errno.ENOSPC
                assert write_errno(fs / "x", 1)[0] == errno.ENOSPC
            assert not any(p.exists() for p in ballast.paths)
            assert write_errno(fs / "x", BLOCK)[0] is None

    def test_inode_exhaustion_gives_enospc_on_create_only(self) -> None:
        with SmallTmpfs(64 * BLOCK, nr_inodes=32) as fs:
            (fs / "existing").write_bytes(b"data")
            ballast = exhaust_inodes(fs)
            assert ballast.record.proven, ballast.record.detail
            with pytest.raises(OSError) as create_error:
                (fs / "new").write_bytes(b"")
            assert create_error.value.errno == errno.ENOSPC
            assert write_errno(fs / "existing", BLOCK)[0] is None  # space is there, inodes are not
            assert free_space(ballast).proven
            (fs / "new").write_bytes(b"")

    def test_remount_readonly_gives_erofs_and_keeps_reads(self) -> None:
        with SmallTmpfs(64 * BLOCK) as fs:
            (fs / "kept").write_bytes(b"readable")
            with remount_readonly(fs) as record:
                assert record.proven, record.detail
                assert (fs / "kept").read_bytes() == b"readable"
                with pytest.raises(OSError) as write_error:
                    (fs / "kept").write_bytes(b"nope")
                assert write_error.value.errno == errno.EROFS
            (fs / "kept").write_bytes(b"writable again")

    def test_remount_readonly_refuses_while_a_file_is_open_for_writing(self) -> None:
        with SmallTmpfs(64 * BLOCK) as fs, open(fs / "writer", "wb") as writer:
            with pytest.raises(MountBusy), remount_readonly(fs):
                pass  # pragma: no cover - never entered
            writer.write(b"still writable")

    def test_an_instance_cannot_be_mounted_twice(self) -> None:
        with SmallTmpfs(16 * BLOCK) as fs, pytest.raises(RuntimeError, match="already mounted"):
            fs.__enter__()

    def test_size_below_one_page_is_rejected(self) -> None:
        with pytest.raises(InvalidFaultSpec):
            SmallTmpfs(100)


@pytest.mark.needs_root
@pytest.mark.usefixtures("loop_available")
class TestLoopExt4DiskFull:
    def test_fill_gives_enospc_and_free_space_recovers(self) -> None:
        with LoopExt4(8) as disk:
            (disk / "data").mkdir()
            ballast = fill(disk)
            assert ballast.record.proven, ballast.record.detail
            assert write_errno(disk / "data" / "log", BLOCK)[0] == errno.ENOSPC
            assert free_space(ballast).proven
            assert write_errno(disk / "data" / "log", 64 * BLOCK)[0] is None

    def test_inode_exhaustion_on_ext4(self) -> None:
        with LoopExt4(8, inodes=64) as disk:
            ballast = exhaust_inodes(disk)
            assert ballast.record.proven, ballast.record.detail
            assert ballast.record.evidence["free_inodes"] == 0
            assert free_space(ballast).proven

    def test_remount_readonly_on_ext4(self) -> None:
        with LoopExt4(8) as disk:
            with remount_readonly(disk / "anything-inside") as record:
                assert record.evidence["errno"] == errno.EROFS
            assert write_errno(disk / "after", BLOCK)[0] is None


def test_whole_filesystem_faults_refuse_the_shared_disk(tmp_path: Path) -> None:
    with pytest.raises(UnsafeTarget):
        fill(tmp_path)
    with pytest.raises(UnsafeTarget):
        exhaust_inodes(tmp_path)
    with pytest.raises(UnsafeTarget), remount_readonly(tmp_path):
        pass  # pragma: no cover - never entered
    assert not list(tmp_path.iterdir())


def test_fill_rejects_negative_room() -> None:
    with pytest.raises(InvalidFaultSpec):
        fill("/", leave_bytes=-1)


def test_fake_disk_full_fallback_raises_enospc_in_process() -> None:
    available = probe_pyfakefs()
    if isinstance(available, Unavailable):
        pytest.skip(available.reason)
    with FakeDiskFull("/data", capacity_bytes=1000) as fake:
        assert fake.record is not None and fake.record.proven, fake.record
        with open("/data/log", "wb") as fh:
            fh.write(b"x" * 600)
        with pytest.raises(OSError) as full, open("/data/log", "ab") as fh:
            fh.write(b"y" * 600)
        assert full.value.errno == errno.ENOSPC
    assert not os.path.exists("/data/log")
