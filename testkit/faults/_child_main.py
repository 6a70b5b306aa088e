"""Bootstrap run as a script inside every child started by :class:`testkit.faults.ChildProcess`.

It imports nothing from testkit (only the module of the pickled callable), so it starts fast and
behaves the same under low limits. Order matters: the result file is opened *before* limits are
lowered, so that a child that exhausted its descriptors or memory can still report what it saw.
Limits are lowered here, in the child only: the runner can never raise a lowered hard limit again.
"""

from __future__ import annotations

import errno
import os
import pickle
import resource
import sys
import traceback
from typing import Any

_PROBE_FILE_NAME = ".testkit-fsize-probe"


def _prove_nofile(limit: int, scratch: str) -> dict[str, Any]:
    opened: list[int] = []
    try:
        while len(opened) <= limit:
            opened.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        return {"proven": exc.errno == errno.EMFILE, "errno": exc.errno, "headroom": len(opened)}
    finally:
        for fd in opened:
            os.close(fd)
    return {"proven": False, "errno": None, "headroom": len(opened)}


def _prove_address_space(limit: int, scratch: str) -> dict[str, Any]:
    try:
        block = bytearray(limit)
    except MemoryError:
        return {"proven": True, "errno": errno.ENOMEM, "attempted_bytes": limit}
    del block
    return {"proven": False, "errno": None, "attempted_bytes": limit}


def _prove_file_size(limit: int, scratch: str) -> dict[str, Any]:
    # pwrite at the limit fails without filling any disk: the file stays sparse.
    path = os.path.join(scratch, _PROBE_FILE_NAME)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        below_ok = limit == 0 or os.pwrite(fd, b"x", limit - 1) == 1
        try:
            os.pwrite(fd, b"x", limit)
        except OSError as exc:
            return {"proven": below_ok and exc.errno == errno.EFBIG, "errno": exc.errno, "below_ok": below_ok}
        return {"proven": False, "errno": None, "below_ok": below_ok}
    finally:
        os.close(fd)
        os.unlink(path)


PROOFS = {
    "RLIMIT_NOFILE": _prove_nofile,
    "RLIMIT_AS": _prove_address_space,
    "RLIMIT_FSIZE": _prove_file_size,
}


def _apply_limits(limits: dict[str, int], scratch: str, prove: bool) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
        report[name] = {"applied": resource.getrlimit(getattr(resource, name))}
    if prove:
        for name, value in limits.items():
            if name in PROOFS:
                report[name].update(PROOFS[name](value, scratch))
    return report


def _error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "type_name": type(exc).__qualname__,
        "module": type(exc).__module__,
        "errno": getattr(exc, "errno", None),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _write_result(fd: int, result: dict[str, Any]) -> None:
    try:
        data = pickle.dumps(result)
    except Exception:  # the value is not picklable: keep its repr
        result["value"] = repr(result.get("value"))
        data = pickle.dumps(result)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def main(spec_path: str) -> None:
    with open(spec_path, "rb") as fh:
        spec = pickle.load(fh)
    os.environ["TESTKIT_FAULT_CHILD_PID"] = str(os.getpid())
    result_fd = os.open(spec["result_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    result: dict[str, Any] = {"limits": {}}
    try:
        # Import the target's module before the limits bite, so they hit the target, not the import.
        target = pickle.loads(spec["payload"]) if spec["mode"] == "python" else None
        result["limits"] = _apply_limits(spec["limits"], spec["scratch_dir"], spec["prove_limits"])
    except BaseException as exc:  # report; never run the target under unknown limits
        result["error"] = _error_info(exc)
        result["stage"] = "bootstrap"
        _write_result(result_fd, result)
        sys.exit(70)
    if target is None:
        _write_result(result_fd, result)
        os.close(result_fd)
        argv = spec["argv"]
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            print(f"testkit child: cannot exec {argv[0]}: {exc}", file=sys.stderr)
            sys.exit(127)
    func, args, kwargs = target
    try:
        result["value"] = func(*args, **kwargs)
        status = 0
    except BaseException as exc:
        result["error"] = _error_info(exc)
        status = 1
    _write_result(result_fd, result)
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv[1])
