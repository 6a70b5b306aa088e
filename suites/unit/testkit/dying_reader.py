"""A store whose reads kill their own process, and helpers a reader child runs (importable by name in a child).

LMDB does this for real after a crash truncates its map (SIGBUS); this one does it on every ``read_all``, so a
test shows the judge surviving it without needing a truncated LMDB file.
"""

from __future__ import annotations

import os
import signal
import struct
from collections.abc import AsyncIterator

from testkit.adapters import AdapterError, StoredEvent
from testkit.adapters.sqlite import SqliteAdapter

__all__ = ["ExitsOnRead", "ReadKillsItself", "ReadRaises", "kill_self", "refuse_typed"]


class ReadKillsItself(SqliteAdapter):
    """SQLite that appends normally and dies of ``signal_name`` (default SIGBUS) as soon as anyone reads."""

    def __init__(self, data_dir: str | os.PathLike[str], *, signal_name: str = "SIGBUS") -> None:
        super().__init__(data_dir)
        self.signal_name = signal_name

    async def read_all(self) -> AsyncIterator[StoredEvent]:
        os.kill(os.getpid(), signal.Signals[self.signal_name])
        async for event in super().read_all():  # not reached: the signal's default action ends the process
            yield event


class ReadRaises(SqliteAdapter):
    """SQLite whose reads fail after a crash: typed (``store_corrupted``, as LMDB's adapter says of a damaged key)
    or, with ``typed=False``, untyped as a careless adapter would (``struct.error``)."""

    def __init__(self, data_dir: str | os.PathLike[str], *, typed: bool = True) -> None:
        super().__init__(data_dir)
        self.typed = typed

    async def read_all(self) -> AsyncIterator[StoredEvent]:
        if self.typed:
            raise AdapterError("damaged database: a 3-byte key where sequences are 8 bytes", code="store_corrupted")
        raise struct.error("unpack requires a buffer of 8 bytes")
        yield  # an async generator, like the real one


class ExitsOnRead(SqliteAdapter):
    """A reader that ends its process with a plain exit (a harness failure, not a store's signal death)."""

    async def read_all(self) -> AsyncIterator[StoredEvent]:
        os._exit(3)
        yield  # an async generator, like the real one


def kill_self(signal_name: str) -> int:
    os.kill(os.getpid(), signal.Signals[signal_name])
    return os.getpid()


def refuse_typed(code: str) -> None:
    raise AdapterError("refused on purpose", code=code)
