"""An event log in LMDB (the ``lmdb`` package): a third-party embedded store under the kit's chaos.

Events live in one B+tree keyed by big-endian sequence, with an ``event_id -> sequence`` tree for
retries; a batch is one write transaction, so it commits whole or not at all. LMDB's documented
contract: with ``sync=True`` (default) a committed transaction survives a system crash; with
``sync=False, metasync=False`` (MDB_NOSYNC) "a system crash can corrupt the database or lose the last
transactions" (lmdb.h), not an application crash, so that configuration expects losses under power cuts
and the POSIX crash model (where a map left pointing past a truncated file kills the reader: SIGBUS).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import lmdb

from testkit.adapters.base import AdapterError
from testkit.adapters.serial_log import Row, SerialLogAdapter
from testkit.adapters.validation import decode_event
from testkit.chaos.capabilities import Capabilities, declaring

__all__ = ["LmdbAdapter", "lmdb_default", "lmdb_nosync"]

_SEQ = struct.Struct(">Q")
_MAP_SIZE = 1 << 30


class LmdbAdapter(SerialLogAdapter):
    """``sync`` / ``metasync`` are LMDB's own flags; ``map_size`` caps the database file."""

    #: Opening takes a write lock in ``lock.mdb``, so it cannot open on a read-only filesystem. LMDB keeps no
    #: page checksums and maps its file: damaged bytes can be served as an event nobody wrote, or crash the
    #: reader (SIGBUS on a truncated map), so it is known unsafe under corruption. It never finishes a short
    #: write: ``mdb_page_flush`` turns one into EIO ("short write, filesystem full?", mdb.c of LMDB 0.9) and the
    #: commit fails, and a short meta page write in ``mdb_env_write_meta`` makes the environment fatal (MDB_PANIC).
    #: Its B+tree reuses freed pages and rewrites both meta pages in place, so without sync what it loses is
    #: mostly unsynced overwrites inside the file, which the POSIX crash model keeps (15 crashes of lmdb-nosync
    #: caught nothing here, seed 20261202): that expected loss is judged by the power cut (caught 7 of 8 cuts).
    testkit_capabilities = Capabilities(io_target="data.mdb", opens_read_only=False, finishes_short_writes=False,
                                        expected_loss=frozenset({"corruption"}), unsynced_overwrites=True)

    _duplicate_errors = (lmdb.KeyExistsError,)

    def __init__(self, data_dir: str | os.PathLike[str], *, sync: bool = True, metasync: bool = True,
                 map_size: int = _MAP_SIZE) -> None:
        super().__init__(data_dir)
        self.sync, self.metasync, self.map_size = bool(sync), bool(metasync), int(map_size)
        durable = self.sync and self.metasync
        self.name = "lmdb" if durable else f"lmdb[sync={self.sync},metasync={self.metasync}]"
        self.expected_loss = frozenset() if durable else frozenset({"power_cut", "posix_crash"})
        self._env: lmdb.Environment | None = None
        self._events: Any = None
        self._ids: Any = None
        self.reopened_after_panic = 0
        self._reopen_pending = False  # a panic closed the environment and its reopen failed: try again

    def _open_store(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = lmdb.open(str(self.data_dir), map_size=self.map_size, max_dbs=2, sync=self.sync,
                        metasync=self.metasync)
        self._events = env.open_db(b"events")
        self._ids = env.open_db(b"ids")
        self._env = env

    def _close_store(self) -> None:
        if self._env is not None:
            env, self._env = self._env, None
            env.close()

    def _begin(self, *, write: bool = False) -> lmdb.Transaction:
        """A transaction, reopening the environment first if LMDB declared it dead.

        Once a meta page write fails (a failed or short ``pwrite`` in ``mdb_env_write_meta``) LMDB marks the
        environment fatal and every later ``mdb_txn_begin`` returns MDB_PANIC: "a fatal error occurred earlier
        and the environment must be shut down" (lmdb.h). The failed commit already reached its caller as a
        typed error; a correct client then closes the environment and opens it again, as here. Only called
        on the adapter's thread, after :meth:`open`, so a missing environment means a reopen that failed.
        """
        if self._env is None:
            if not self._reopen_pending:  # closed by close(): a call queued behind it must not reopen the file
                raise AdapterError("adapter is not open", code="store_closed")
            self._open_store()
            self._reopen_pending = False
        assert self._env is not None
        try:
            return self._env.begin(write=write)
        except lmdb.PanicError:
            self._close_store()
            self._reopen_pending = True
            self._open_store()
            self._reopen_pending = False
            self.reopened_after_panic += 1
            assert self._env is not None
            return self._env.begin(write=write)

    def _lookup(self, event_ids: Sequence[str]) -> dict[str, Row]:
        found = {}
        with self._begin() as txn:
            for event_id in event_ids:
                key = txn.get(event_id.encode(), db=self._ids)
                if key is not None:
                    found[event_id] = (_sequence(key), bytes(txn.get(key, db=self._events)))
        return found

    def _insert(self, events: Sequence[Mapping[str, Any]], payloads: Sequence[bytes]) -> list[int]:
        sequences = []
        with self._begin(write=True) as txn:
            cursor = txn.cursor(db=self._events)
            last = _sequence(cursor.key()) if cursor.last() else 0
            for offset, (event, payload) in enumerate(zip(events, payloads, strict=True), start=1):
                key = _SEQ.pack(last + offset)
                if not txn.put(event["event_id"].encode(), key, db=self._ids, overwrite=False):
                    raise lmdb.KeyExistsError(event["event_id"])  # aborts the whole transaction
                txn.put(key, payload, db=self._events, append=True)
                sequences.append(last + offset)
        return sequences

    def _page(self, after: int, limit: int, event_types: Sequence[str] | None,
              aggregate_ids: Sequence[str] | None) -> list[Row]:
        rows: list[Row] = []
        with self._begin() as txn:
            cursor = txn.cursor(db=self._events)
            if not cursor.set_range(_SEQ.pack(after + 1)):
                return rows
            for key, value in cursor:
                payload = bytes(value)
                if event_types or aggregate_ids:
                    event = decode_event(payload)
                    if event_types and event["event_type"] not in event_types:
                        continue
                    if aggregate_ids and event["aggregate_id"] not in aggregate_ids:
                        continue
                rows.append((_sequence(key), payload))
                if len(rows) >= limit:
                    break
        return rows

    def _translate(self, exc: Exception) -> AdapterError | None:
        if isinstance(exc, lmdb.MapFullError):
            return AdapterError(str(exc), code="resource_exhausted")
        if isinstance(exc, lmdb.CorruptedError | lmdb.InvalidError | lmdb.PageNotFoundError | lmdb.BadRslotError):
            return AdapterError(str(exc), code="store_corrupted")
        if isinstance(exc, lmdb.Error | OSError):
            return AdapterError(str(exc), code="write_failed", retryable=True)
        return None


def _sequence(key: bytes) -> int:
    """A sequence key; any other length is a damaged database (a crash without sync can leave one): typed."""
    if len(key) != _SEQ.size:
        raise AdapterError(f"damaged database: a {len(key)}-byte key where sequences are {_SEQ.size} bytes",
                           code="store_corrupted")
    return int(_SEQ.unpack(key)[0])


@declaring(LmdbAdapter.testkit_capabilities)
def lmdb_default(data_dir: str | os.PathLike[str], **options: Any) -> LmdbAdapter:
    """LMDB as shipped: every commit synced."""
    return LmdbAdapter(data_dir, **options)


@declaring(LmdbAdapter.testkit_capabilities)
def lmdb_nosync(data_dir: str | os.PathLike[str], **options: Any) -> LmdbAdapter:
    """``sync=False, metasync=False``: fast, and documented to lose the last commits on a system crash."""
    return LmdbAdapter(data_dir, **{"sync": False, "metasync": False, **options})
