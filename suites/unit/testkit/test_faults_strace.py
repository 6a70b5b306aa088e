"""strace -e inject: the syscall fails in the child, on the chosen file only, and strace logs it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.faults import ChildProcess, InvalidFaultSpec, StraceFault, Unavailable, no_leaks
from testkit.faults.probe import probe_strace

DEADLINE_S = 30.0


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_leaks():
        yield


@pytest.fixture(autouse=True)
def _needs_strace() -> None:
    available = probe_strace()
    if isinstance(available, Unavailable):
        pytest.skip(available.reason)


def fsync_each(paths: list[str]) -> list[int | None]:
    results: list[int | None] = []
    for path in paths:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.fsync(fd)
            results.append(None)
        except OSError as exc:
            results.append(exc.errno)
        finally:
            os.close(fd)
    return results


def test_injection_hits_only_the_chosen_path(tmp_path: Path) -> None:
    target, other = str(tmp_path / "wal"), str(tmp_path / "other")
    with StraceFault("fsync", "EIO", path=target) as fault:
        with ChildProcess.python(fsync_each, ([target, other, target],), wrapper=fault.wrapper) as child:
            outcome = child.outcome(DEADLINE_S)
            stderr = child.stderr_text()
        record = fault.prove()
    assert outcome.error is None, stderr
    assert outcome.value == [errno.EIO, None, errno.EIO]
    assert record.proven and record.evidence["injections"] == 2


def test_when_selects_which_call_fails(tmp_path: Path) -> None:
    target = str(tmp_path / "wal")
    with (
        StraceFault("fsync", "ENOSPC", when="2", path=target) as fault,
        ChildProcess.python(fsync_each, ([target] * 3,), wrapper=fault.wrapper) as child,
    ):
        outcome = child.outcome(DEADLINE_S)
    assert outcome.value == [None, errno.ENOSPC, None]
    assert fault.record is not None and fault.record.evidence["injections"] == 1


@pytest.mark.parametrize(
    "args", [("fsync; rm",), ("fsync", "ENOTANERRNO"), ("fsync", "EIO", "x+")], ids=["syscall", "errno", "when"]
)
def test_bad_specs_are_rejected(args: tuple[str, ...]) -> None:
    syscall, *rest = args
    error = rest[0] if rest else "EIO"
    when = rest[1] if len(rest) > 1 else None
    with pytest.raises(InvalidFaultSpec):
        StraceFault(syscall, error, when=when)
