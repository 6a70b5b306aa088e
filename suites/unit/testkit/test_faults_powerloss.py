"""Power loss on a loop-mounted ext4: the shutdown ioctl really stops the disk, unsynced data really vanishes."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.faults import InvalidFaultSpec, LoopExt4, MountBusy, Unavailable, UnsafeTarget, cut_power, no_leaks
from testkit.faults._system import loop_backing_files, mount_entries
from testkit.faults.probe import probe_shutdown_ioctl

pytestmark = pytest.mark.needs_root


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_leaks():
        yield


@pytest.fixture
def shutdown_available() -> None:
    available = probe_shutdown_ioctl()
    if isinstance(available, Unavailable):
        pytest.skip(available.reason)


def write_file(path: Path, data: bytes, *, fsync: bool) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.usefixtures("shutdown_available")
def test_loop_ext4_is_a_real_ext4_mount_and_leaves_nothing_behind() -> None:
    with LoopExt4(8) as disk:
        (disk / "hello").write_bytes(b"world")
        entry = next(e for e in mount_entries() if e.mount_point == str(disk.path))
        assert entry.fstype == "ext4"
        assert entry.source.startswith("/dev/loop")
        image, workdir = str(disk.image), disk.workdir
    assert not any(e.mount_point == str(workdir / "mnt") for e in mount_entries())
    assert image not in loop_backing_files().values()
    assert not workdir.exists()


@pytest.mark.usefixtures("shutdown_available")
def test_cleanup_happens_when_the_body_fails_with_a_file_still_open() -> None:
    with pytest.raises(RuntimeError, match="boom"), LoopExt4(8) as disk:
        held = open(disk / "held", "wb")  # noqa: SIM115 - kept open on purpose: umount must go lazy
        image = os.path.realpath(disk.image)
        raise RuntimeError("boom")
    assert not any("/" + os.path.basename(os.path.dirname(image)) + "/" in e.mount_point + "/" for e in mount_entries())
    held.close()
    end = time.monotonic() + 10
    while image in (b.removesuffix(" (deleted)") for b in loop_backing_files().values()):
        assert time.monotonic() < end, "loop device not released after the last file closed"
        time.sleep(0.005)


@pytest.mark.usefixtures("shutdown_available")
def test_cut_power_is_proven_by_eio_on_every_later_write() -> None:
    with LoopExt4(8) as disk:
        open_before = os.open(disk / "open-before", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            record = disk.cut_power()
            assert record.proven, record.detail
            assert record.kind == "power_cut"
            assert record.evidence["errno"] == errno.EIO
            with pytest.raises(OSError) as write_error:
                os.write(open_before, b"late")
                os.fsync(open_before)
            assert write_error.value.errno == errno.EIO
        finally:
            os.close(open_before)


@pytest.mark.usefixtures("shutdown_available")
def test_unsynced_writes_vanish_and_synced_ones_survive() -> None:
    with LoopExt4(8) as disk:
        durable, never_synced = disk / "durable.log", disk / "never-synced.log"
        write_file(durable, b"A" * 4096, fsync=True)
        fsync_dir(disk.path)
        write_file(durable, b"B" * 4096, fsync=False)  # appended after the last fsync
        write_file(never_synced, b"C" * 4096, fsync=False)  # a file whose creation was never made durable
        assert durable.stat().st_size == 8192 and never_synced.exists()

        assert disk.cut_power().proven
        disk.remount()

        assert durable.read_bytes() == b"A" * 4096
        assert not never_synced.exists()


@pytest.mark.usefixtures("shutdown_available")
def test_remount_refuses_while_a_file_is_open() -> None:
    with LoopExt4(8) as disk:
        fd = os.open(disk / "f", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            disk.cut_power()
            with pytest.raises(MountBusy):
                disk.remount()
        finally:
            os.close(fd)
        disk.remount()
        assert disk.is_mounted


def test_cut_power_refuses_a_filesystem_testkit_did_not_mount(tmp_path: Path) -> None:
    with pytest.raises(UnsafeTarget):
        cut_power(tmp_path)


def test_a_too_small_image_is_rejected() -> None:
    with pytest.raises(InvalidFaultSpec):
        LoopExt4(1)
