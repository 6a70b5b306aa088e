"""Writer fencing: a second writer on the same directory can never overwrite the first one's data.

The ``LOCK`` file's ``flock`` keeps honest processes apart, but it protects nothing once the file is
deleted (a new ``LOCK`` is a new inode, and its lock is free) or on a filesystem that does not honour
locks. So every writer also *claims* the directory: it atomically replaces ``OWNER`` (written to a
temporary file, fsynced, renamed, directory fsynced) with a record of its epoch (the previous epoch
plus one), pid and a random token, before it scans or writes anything. Before every segment write,
rotation and probe, the writer checks that ``OWNER`` is still the inode it created (one ``stat``); a
writer that has been superseded stops with ``WriterFenced`` and never writes again, so it cannot
overwrite the frames the new writer appends at the offsets it still believes are free. A check after
the sync catches a claim that landed during the write: that append is not acknowledged.

Integration (a few marked lines in the store): ``claim()`` right after the lock is taken, ``check()``
at the top of the write, rotation and probe paths and again after the sync; ``check_known()`` (no
``stat``) at the door of an append.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Final

from lighthouse.errors import LighthouseError, StoreReadOnly

__all__ = ["OWNER_FILE", "WriterFence", "WriterFenced"]

OWNER_FILE: Final[str] = "OWNER"


class WriterFenced(LighthouseError):
    """Another writer has claimed this directory since this store opened it; this store writes no more."""

    code = "writer_fenced"
    retryable = False


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriterFence:
    """This writer's claim on a directory, and the cheap check that it still holds it."""

    def __init__(self, directory: str | os.PathLike[str], *, on_fenced: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / OWNER_FILE
        self.epoch = 0
        self._identity: tuple[int, int] | None = None
        self._on_fenced = on_fenced
        self._fenced: str | None = None
        self._deferred: str | None = None  # why the claim could not be written yet (a full disk at open)

    def _previous_epoch(self) -> int:
        try:
            record = json.loads(self.path.read_text())
            return int(record.get("epoch", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            return 0

    def claim(self) -> int:
        """Become the directory's writer (superseding any other); the new epoch."""
        self.epoch = self._previous_epoch() + 1
        record = {"epoch": self.epoch, "pid": os.getpid(), "token": secrets.token_hex(8)}
        tmp = self.directory / f"{OWNER_FILE}.{os.getpid()}.{record['token']}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                if os.write(fd, payload := json.dumps(record).encode()) != len(payload):
                    raise OSError(28, "short write of the OWNER record")  # ENOSPC, as the kernel would say
                os.fsync(fd)
                stat = os.fstat(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_directory(self.directory)
        self._identity = (stat.st_dev, stat.st_ino)
        self._fenced = None
        self._deferred = None
        return self.epoch

    def defer(self, reason: str) -> None:
        """The claim could not be written (ENOSPC at a restart on a full disk): refuse every write until a
        later :meth:`claim` succeeds, so a store never writes into a directory it has not claimed."""
        self._deferred = reason

    @property
    def deferred(self) -> bool:
        return self._deferred is not None

    def check_known(self) -> None:
        """``check`` without looking at the disk: raises only for a fencing or deferral already noticed. The cheap
        gate at the door of an append; the write path's ``check`` (one ``stat`` before and after each write) is
        what notices a new claim before any byte lands."""
        if self._deferred is not None or self._fenced is not None:
            self.check()

    def check(self) -> None:
        """``WriterFenced`` unless ``OWNER`` is still the file this writer created (``StoreReadOnly`` while the
        claim is deferred)."""
        if self._deferred is not None:
            raise StoreReadOnly(f"{self.directory} is not claimed for writing yet: {self._deferred}",
                                reason=self._deferred)
        if self._identity is None:
            return  # never claimed (a read-only filesystem): this store does not write
        if self._fenced is None:
            try:
                stat = os.stat(self.path)
                current: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
            except FileNotFoundError:
                current = None
            if current == self._identity:
                return
            self._fenced = (f"another writer has claimed {self.directory} since this store opened it "
                            f"(this store's epoch {self.epoch}); it writes nothing more")
            if self._on_fenced is not None:
                self._on_fenced(self._fenced)
        raise WriterFenced(self._fenced, path=str(self.directory), epoch=self.epoch)
