"""The log itself: ``<crc32 hex> <json list of records>\\n`` per line, records numbered from 1."""

from __future__ import annotations

import errno
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["JsonlLog", "LogCorrupted", "LogError", "LogReadOnly"]

FILE_NAME = "events.jsonl"


class LogError(Exception):
    """A write the log could not make durable; nothing of it is kept."""


class LogReadOnly(LogError):
    """The log was opened on a read-only filesystem: reads work, appends are refused."""


class LogCorrupted(LogError):
    """A line in the log does not match its checksum: the log refuses to serve it."""


def _encode(records: list[dict[str, Any]]) -> bytes:
    body = json.dumps(records, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode(line: bytes, number: int) -> list[dict[str, Any]]:
    crc, _, body = line.partition(b" ")
    try:
        if int(crc, 16) != zlib.crc32(body):
            raise ValueError("checksum mismatch")
        records = json.loads(body)
    except ValueError as exc:
        raise LogCorrupted(f"line {number} is damaged ({exc})") from None
    if not isinstance(records, list):
        raise LogCorrupted(f"line {number} is not a list of records")
    return records


class JsonlLog:
    """``log = JsonlLog(directory); log.append([{...}])`` -> the sequences given to the records."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(directory) / FILE_NAME
        self.fsync = fsync
        self.read_only = False
        Path(directory).mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES):
                raise LogError(f"cannot open {self.path}: {exc}") from exc
            self._fd = os.open(self.path, os.O_RDONLY)
            self.read_only = True
        if created and not self.read_only:
            self._sync_directory()
        self._size, self._count = self._recover()

    def _sync_directory(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _recover(self) -> tuple[int, int]:
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        good = data.rfind(b"\n") + 1  # anything after the last newline is a torn write
        count = sum(len(records) for records in self._lines(data[:good]))
        if good < len(data) and not self.read_only:
            os.ftruncate(self._fd, good)
            os.fsync(self._fd)
        return good, count

    @staticmethod
    def _lines(data: bytes) -> Iterator[list[dict[str, Any]]]:
        for number, line in enumerate(data.splitlines(), start=1):
            yield _decode(line, number)

    def append(self, records: list[dict[str, Any]]) -> list[int]:
        """Write ``records`` as one line (all or nothing) and return their sequences once durable."""
        if self.read_only:
            raise LogReadOnly("the log is on a read-only filesystem")
        try:
            line = _encode(records)
        except MemoryError:
            raise LogError("out of memory encoding the records") from None
        try:
            if os.fstat(self._fd).st_size != self._size:  # an earlier failed write left bytes behind
                os.ftruncate(self._fd, self._size)
            written = 0
            while written < len(line):
                written += os.pwrite(self._fd, line[written:], self._size + written)
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass  # cut on the next append or the next open
            raise LogError(f"write failed: {exc}") from exc
        self._size += len(line)
        first = self._count + 1
        self._count += len(records)
        return list(range(first, first + len(records)))

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every record with its sequence, in order; raises :class:`LogCorrupted` on a damaged line."""
        sequence = 0
        for records in self._lines(os.pread(self._fd, self._size, 0)):
            for record in records:
                sequence += 1
                yield sequence, record

    def close(self) -> None:
        os.close(self._fd)
