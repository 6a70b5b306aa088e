"""The POSIX crash model: what it keeps and drops, checked on real files and a real strace trace."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.faults.errors import InvalidFaultSpec
from testkit.faults.persistence import PosixCrashModel, SyscallTrace
from testkit.faults.probe import probe_strace

pytestmark = pytest.mark.skipif(not probe_strace(), reason="strace -e inject/trace unavailable")

_PROGRAM = """
import os, sys
root = sys.argv[1]
def make(name, data, *, sync_file, sync_dir):
    fd = os.open(os.path.join(root, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    if sync_file:
        os.fsync(fd)
    os.close(fd)
    if sync_dir:
        dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
make("durable", b"a" * 100, sync_file=True, sync_dir=True)
make("nameless", b"b" * 100, sync_file=True, sync_dir=False)
fd = os.open(os.path.join(root, "old"), os.O_WRONLY)
os.pwrite(fd, b"c" * 50, 10)
os.fdatasync(fd)
os.pwrite(fd, b"d" * 40, 60)
"""


def _trace(root: Path) -> tuple[PosixCrashModel, list[str]]:
    (root / "old").write_bytes(b"x" * 10)
    model = PosixCrashModel(root)
    with SyscallTrace() as trace:
        trace.mark()
        subprocess.run([*trace.wrapper, sys.executable, "-c", _PROGRAM, str(root)], check=True, timeout=60)
        return model, trace.lines()


def test_only_fsynced_bytes_and_names_made_durable_by_a_directory_fsync_survive(tmp_path: Path) -> None:
    model, lines = _trace(tmp_path)
    assert any("fdatasync" in line for line in lines)
    model.feed(lines)
    record = model.crash(random.Random(0))
    assert record.proven
    assert (tmp_path / "durable").read_bytes() == b"a" * 100
    assert not (tmp_path / "nameless").exists(), "created, fsynced, but its directory never was"
    old = (tmp_path / "old").read_bytes()
    assert old[:60] == b"x" * 10 + b"c" * 50, "fdatasynced bytes must survive"
    assert 60 <= len(old) <= 100 and set(old[60:]) <= {ord("d")}, "unsynced tail: a prefix of it at most"
    assert record.evidence["removed"] == ["nameless"]


def test_a_crash_after_everything_was_synced_changes_nothing_and_is_not_proven(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"z" * 10)
    model = PosixCrashModel(tmp_path)
    model.feed([f"1 fsync(3<{tmp_path / 'f'}>) = 0"])
    record = model.crash(random.Random(0))
    assert not record.proven
    assert (tmp_path / "f").read_bytes() == b"z" * 10


def _crash_after(tmp_path: Path, lines: list[str], seed: int) -> bytes:
    path = tmp_path / "g"
    path.write_bytes(b"")
    model = PosixCrashModel(tmp_path)
    path.write_bytes(b"12345678")  # what the traced pwrite put in the page cache
    model.feed([line.format(path=path) for line in lines])
    model.crash(random.Random(seed))
    return path.read_bytes()


def test_an_fsync_in_flight_at_the_crash_counts_only_once_resumed(tmp_path: Path) -> None:
    write = '7 pwrite64(3<{path}>, ""..., 8, 0) = 8'
    started = "7 fdatasync(3<{path}> <unfinished ...>"
    resumed = "7 <... fdatasync resumed>) = 0"
    survivors = set()
    for seed in range(20):
        (tmp_path / f"a{seed}").mkdir()
        (tmp_path / f"b{seed}").mkdir()
        kept = _crash_after(tmp_path / f"a{seed}", [write, started], seed)
        assert b"12345678".startswith(kept)
        survivors.add(len(kept))
        assert _crash_after(tmp_path / f"b{seed}", [write, started, resumed], seed) == b"12345678"
    assert min(survivors) < 8, "an unfinished fsync made nothing durable, so some crashes must drop bytes"


def test_a_death_is_found_whatever_the_pid_padding() -> None:
    """strace pads pids to five columns: a four-digit pid is followed by two spaces."""
    with SyscallTrace() as trace:
        trace.mark()
        trace.log_path.write_text("5122  +++ killed by SIGKILL +++\n15122 +++ exited with 0 +++\n")
        assert trace.wait_for_death(5122, timeout=0.1)
        assert trace.wait_for_death(15122, timeout=0.1)
        assert not trace.wait_for_death(512, timeout=0.05)


_SYNC_TIMER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"x")
started = time.monotonic()
os.fsync(fd)
print(time.monotonic() - started)
try:
    os.fdatasync(fd)
    print("fdatasync ok")
except OSError as exc:
    print(f"fdatasync errno {exc.errno}")
"""


def test_a_sync_delay_holds_every_sync_as_a_disk_would_and_leaves_an_aimed_call_its_own_rule(tmp_path: Path) -> None:
    """On tmpfs a sync is instant and a random kill never finds unsynced bytes; the delay gives it a disk's
    duration. A call an inject rule already aims at (the failed-sync campaign's fdatasync) keeps that rule."""
    with SyscallTrace(inject=("fdatasync:error=EIO",), sync_delay_us=50_000) as trace:
        trace.mark()
        done = subprocess.run([*trace.wrapper, sys.executable, "-c", _SYNC_TIMER, str(tmp_path / "f")],
                              check=True, timeout=60, capture_output=True, text=True)
        lines = trace.lines()
    fsync_seconds, fdatasync = done.stdout.split("\n")[:2]
    assert float(fsync_seconds) >= 0.05
    assert fdatasync == "fdatasync errno 5"
    assert any(line.split()[1].startswith("fsync(") and line.endswith("(DELAYED)") for line in lines), lines
    with pytest.raises(InvalidFaultSpec):
        SyscallTrace(sync_delay_us=-1)
