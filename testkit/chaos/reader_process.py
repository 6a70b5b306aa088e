"""A store read in a child process: a store that kills its reader is a failing check, not the end of the run.

LMDB maps its data file: once a crash model or a corruption case has truncated it, touching a page past
the new end of file is SIGBUS, which no Python code can catch, and a damaged page can as well be SIGSEGV.
The corruption read-back and the crash campaigns' judge (:func:`~testkit.chaos.judging.recover_and_judge`)
both read through a :class:`ReaderProcess`: one forkserver child (never a fork of a threaded test runner),
reused call after call (a fresh child costs about 0.7 s of imports, a call to a warm one about 10 ms), and
replaced when a store kills it.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["READ_TIMEOUT_S", "ReaderDied", "ReaderProcess"]

#: How long one read (an open, a recovery and a full read-back) may take before the child is killed.
READ_TIMEOUT_S = 300.0
_T = TypeVar("_T")


class ReaderDied(Exception):
    """The reading child ended without an answer (killed by a signal, exited, or hung past the timeout)."""


class ReaderProcess:
    """``with ReaderProcess() as reader: reader.call(fn, *args)`` runs ``fn`` in the child and returns its result.

    An exception ``fn`` raises comes back as itself (so a store's typed refusal stays typed); a child that
    dies or hangs raises :class:`ReaderDied` saying how, and the next call gets a new child. ``modules``: ones
    the child must import under the names this process knows them by (a test's store variants, which test
    runners import from roots of their own); their roots go first on the child's ``sys.path``.
    """

    def __init__(self, modules: Sequence[str] = (), *, timeout_s: float = READ_TIMEOUT_S) -> None:
        from testkit.faults.workload import import_roots  # the crash-cycle zygote finds its modules the same way

        self.timeout_s = timeout_s
        self._roots = import_roots(modules)
        self._pool: ProcessPoolExecutor | None = None

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(
                "forkserver" if "forkserver" in methods else "spawn"), initializer=_put_first_on_path,
                initargs=(self._roots,))
        pool = self._pool
        try:
            return pool.submit(fn, *args).result(timeout=self.timeout_s)
        except BrokenProcessPool as exc:
            raise ReaderDied(self._discard(kill=False)) from exc
        except TimeoutError as exc:
            self._discard(kill=True)
            raise ReaderDied(f"no answer within {self.timeout_s:.0f} s (killed)") from exc

    def _discard(self, *, kill: bool) -> str:
        """Drop the child (killing it first if asked); how it ended, from its exit code."""
        pool, self._pool = self._pool, None
        if pool is None:
            return "the reader was already gone"
        # The pool keeps its worker processes by pid (not public API, stable since 3.8): the only place that
        # knows the exit code, hence the signal, of a forkserver child.
        workers = list((getattr(pool, "_processes", None) or {}).values())
        if kill:
            for worker in workers:
                worker.kill()
        # Only the pool's own thread joins them: a forkserver child's status is read once from its sentinel,
        # and a second thread polling at the same time reads end-of-file and records 255 over it (CPython's
        # popen_forkserver.poll), which turned "killed by SIGBUS" into "exited with status 255" in a CI run.
        pool.shutdown(wait=True, cancel_futures=True)
        codes = [worker.exitcode for worker in workers if worker.exitcode is not None]
        return ", ".join(_describe(code) for code in codes) or "died (exit status unknown)"

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ReaderProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _put_first_on_path(roots: Sequence[str]) -> None:
    sys.path[:0] = [root for root in roots if root not in sys.path]


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"
