"""The LD_PRELOAD shim fails or shortens I/O on one file only, in a real child, and logs each injection."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.faults import ChildProcess, InvalidFaultSpec, IoFault, Unavailable, build_shim, no_leaks
from testkit.faults.probe import probe_gcc

DEADLINE_S = 30.0


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_leaks():
        yield


@pytest.fixture(autouse=True)
def _needs_gcc() -> None:
    available = probe_gcc()
    if isinstance(available, Unavailable):
        pytest.skip(available.reason)


def errno_of(call: Any, *args: Any) -> int | None:
    try:
        call(*args)
    except OSError as exc:
        return exc.errno
    return None


def fsync_both(target: str, bystander: str, rounds: int) -> list[tuple[int | None, int | None]]:
    results = []
    fds = [os.open(p, os.O_CREAT | os.O_WRONLY, 0o644) for p in (target, bystander)]
    for _ in range(rounds):
        results.append((errno_of(os.fsync, fds[0]), errno_of(os.fsync, fds[1])))
    return results


def write_chunks(path: str, chunk: int, count: int) -> list[int | str]:
    """Raw os.write calls: the count each returned, or the errno name it raised."""
    out: list[int | str] = []
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for _ in range(count):
        try:
            out.append(os.write(fd, b"x" * chunk))
        except OSError as exc:
            out.append(errno.errorcode[exc.errno or 0])
    os.close(fd)
    return out


def buffered_write(path: str, size: int) -> int:
    with open(path, "wb") as fh:
        fh.write(b"y" * size)
    return os.path.getsize(path)


def pwrite_and_writev(path: str) -> tuple[int | None, int | None]:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    return errno_of(os.pwrite, fd, b"abc", 0), errno_of(os.writev, fd, [b"de", b"f"])


def sqlite_commit(path: str) -> str:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        db.commit()
        return "committed"
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        db.close()


def run_child(fault: IoFault, func: Any, *args: Any) -> Any:
    with ChildProcess.python(func, args, env=fault.child_env()) as child:
        outcome = child.outcome(DEADLINE_S)
    assert outcome.error is None, outcome.error
    return outcome.value


def test_the_shim_is_built_once_per_source_version(tmp_path: Path) -> None:
    first = build_shim(tmp_path)
    built_at = first.stat().st_mtime_ns
    assert build_shim(tmp_path) == first
    assert first.stat().st_mtime_ns == built_at
    assert first.name.startswith("iofault_shim-") and first.suffix == ".so"
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no half-built leftovers


def test_fsync_fails_on_the_target_file_only(tmp_path: Path) -> None:
    with IoFault("segment-", op="fsync", errno="EIO") as fault:
        results = run_child(fault, fsync_both, str(tmp_path / "segment-1.log"), str(tmp_path / "index.db"), 2)
        record = fault.prove()
    assert results == [(errno.EIO, None), (errno.EIO, None)]
    assert record.proven and record.evidence["injections"] == 2
    assert record.evidence["paths"] == [str(tmp_path / "segment-1.log")]
    assert fault.record is not None and fault.record.proven


def test_after_calls_lets_the_first_calls_through(tmp_path: Path) -> None:
    with IoFault("target", op="fsync", errno="ENOSPC", after_calls=2) as fault:
        results = run_child(fault, fsync_both, str(tmp_path / "target"), str(tmp_path / "other"), 4)
        injections = fault.injections()
    assert [r[0] for r in results] == [None, None, errno.ENOSPC, errno.ENOSPC]
    assert [i.call_index for i in injections] == [3, 4]


def test_times_makes_the_error_transient(tmp_path: Path) -> None:
    with IoFault("target", op="fsync", times=1) as fault:
        results = run_child(fault, fsync_both, str(tmp_path / "target"), str(tmp_path / "other"), 3)
    assert [r[0] for r in results] == [errno.EIO, None, None]
    assert fault.record is not None and fault.record.evidence["injections"] == 1


def test_after_bytes_cuts_the_crossing_write_short_then_fails(tmp_path: Path) -> None:
    target = tmp_path / "target.log"
    with IoFault("target.log", op="write", errno="ENOSPC", after_bytes=250) as fault:
        results = run_child(fault, write_chunks, str(target), 100, 4)
        actions = [(i.action, i.requested, i.returned) for i in fault.injections()]
    assert results == [100, 100, 50, "ENOSPC"]
    assert actions == [("short", 100, 50), ("error", 100, -1)]
    assert target.stat().st_size == 250


def test_short_mode_is_absorbed_by_pythons_buffered_writer(tmp_path: Path) -> None:
    target = tmp_path / "target.log"
    with IoFault("target.log", op="write", mode="short") as fault:
        size = run_child(fault, buffered_write, str(target), 10_000)
        injections = fault.injections()
    assert size == 10_000  # the retries completed the write
    assert len(injections) > 1 and all(i.action == "short" and i.returned < i.requested for i in injections)


def test_pwrite_and_writev_are_interposed(tmp_path: Path) -> None:
    with IoFault("target", op=("pwrite", "writev"), errno="EIO") as fault:
        results = run_child(fault, pwrite_and_writev, str(tmp_path / "target"))
        ops = sorted(i.op for i in fault.injections())
    assert results == (errno.EIO, errno.EIO)
    assert ops == ["pwrite", "writev"]


def test_sqlite_meets_the_injected_sync_error(tmp_path: Path) -> None:
    with IoFault("peer.db", op=("fsync", "fdatasync"), errno="EIO") as fault:
        outcome = run_child(fault, sqlite_commit, str(tmp_path / "peer.db"))
        record = fault.prove()
    assert record.proven, record.detail
    assert "disk I/O error" in outcome


def test_nothing_is_injected_when_nothing_matches(tmp_path: Path) -> None:
    with IoFault("no-such-file", op="fsync") as fault:
        results = run_child(fault, fsync_both, str(tmp_path / "a"), str(tmp_path / "b"), 1)
    assert results == [(None, None)]
    assert fault.record is not None and not fault.record.proven
    assert fault.record.evidence["calls_seen"]["fsync"] == 0  # the child reported: it made no aimed call
    assert fault.record.evidence["injection_point_reached"] is False


@pytest.mark.parametrize(("after_calls", "reached"), [(3, True), (4, False)])
def test_the_shim_reports_the_aimed_calls_it_saw(tmp_path: Path, after_calls: int, reached: bool) -> None:
    """A store that never makes the call a fault waits for is told apart from a fault that was missed."""
    with IoFault("target", op=("fsync", "fdatasync"), after_calls=after_calls, times=1) as fault:
        run_child(fault, fsync_both, str(tmp_path / "target"), str(tmp_path / "other"), 4)
    record = fault.record
    assert record is not None and record.proven is reached
    assert {op: record.evidence["calls_seen"][op] for op in ("fsync", "fdatasync", "write")} == {
        "fsync": 4, "fdatasync": 0, "write": 0}
    assert record.evidence["injection_point_reached"] is reached


def test_write_bytes_are_reported_against_after_bytes(tmp_path: Path) -> None:
    with IoFault("target.log", op="write", errno="ENOSPC", after_bytes=500) as fault:
        assert run_child(fault, write_chunks, str(tmp_path / "target.log"), 100, 5) == [100] * 5
    assert fault.record is not None and not fault.record.proven
    assert fault.record.evidence["calls_seen"]["bytes"] == 500
    assert fault.record.evidence["injection_point_reached"] is False
    assert fault.injection_point_reached({"bytes": 501}) is True
    assert fault.injection_point_reached(None) is None  # no process reported: nothing is known


def test_existing_ld_preload_is_kept(tmp_path: Path) -> None:
    with IoFault("x", op="fsync") as fault:
        env = fault.child_env({"LD_PRELOAD": "/other.so", "PATH": "/bin"})
    assert env["LD_PRELOAD"].endswith(":/other.so") and env["PATH"] == "/bin"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path_substring": ""},
        {"path_substring": "x", "op": "read"},
        {"path_substring": "x", "errno": "ENOTANERRNO"},
        {"path_substring": "x", "op": "fsync", "mode": "short"},
        {"path_substring": "x", "after_calls": -1},
        {"path_substring": "x", "times": 0},
    ],
    ids=["empty-path", "unknown-op", "unknown-errno", "short-fsync", "negative-after", "zero-times"],
)
def test_bad_specs_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidFaultSpec):
        IoFault(**kwargs)


def test_env_before_entering_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not entered"):
        _ = IoFault("x").env
