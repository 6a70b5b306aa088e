"""A Jepsen-style operation history: every write is recorded as invoked, then ok, fail or unknown.

The history is the client's own account of what it asked for and what it was told, and a checker
compares it with what the store recovers. It must therefore survive the client: with a journal, each
record is handed to the OS at once (one ``os.write`` of one msgpack record, so a SIGKILLed client
loses nothing it recorded) and fsynced per record or per group (so a power cut of the journal's disk
loses at most the last group). Loading tolerates a torn tail (a partial last record, or the zeros a
power cut can leave) and turns calls that never completed into ``unknown``: the write may or may not
have happened, exactly as Jepsen's ``info``.

Journal format (version 1): concatenated msgpack arrays, one per record:
``["h", version, client_id, pid, wall_ns]`` once at the start, ``["i", op, client_id, kind, event_ids,
digests | nil, at_ns]`` for an invoke (kind 0 append, 1 append_batch), and ``["o" | "f" | "u", op,
at_ns, sequences | nil, error | nil]`` for ok / fail / unknown. ``at_ns`` is ``time.monotonic_ns()``,
which is system-wide on Linux, so journals of several client processes merge into one timeline.

Memory is columnar (parallel lists, no object per operation) so a history of 10^6 operations stays small;
``HistoryWriter`` records to the journal alone (for load generators that run for hours).
"""

from __future__ import annotations

import fcntl
import heapq
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, Self

import msgpack

from testkit.adapters.base import AdapterError, EventStoreAdapter, StoredEvent, content_digest

__all__ = [
    "DEFINITE_FAILURE_CODES",
    "Call",
    "History",
    "HistoryColumns",
    "HistoryWriter",
    "JournalError",
    "OpKind",
    "OpStatus",
    "Operation",
    "is_definite_failure",
]

JOURNAL_VERSION: Final[int] = 1

#: Error codes meaning the store refused the write before anything was made durable: the write must be absent.
DEFINITE_FAILURE_CODES: Final[frozenset[str]] = frozenset({
    "invalid_event", "event_too_large", "batch_too_large", "concurrency_conflict",
    "store_read_only", "store_locked", "store_closed",
    "write_not_written",  # a failed write the store says it removed again (not a bare "write_failed")
})

SyncPolicy = Literal["record", "group", "none"]


class OpKind(StrEnum):
    APPEND = "append"
    APPEND_BATCH = "append_batch"


class OpStatus(StrEnum):
    PENDING = "pending"  # invoked, no outcome yet (in flight)
    OK = "ok"  # acknowledged: must be present
    FAIL = "fail"  # definitely not written: must be absent
    UNKNOWN = "unknown"  # timeout, crash mid-call: may be present or absent


_KIND_CODES: Final[tuple[OpKind, ...]] = (OpKind.APPEND, OpKind.APPEND_BATCH)
_STATUS_CODES: Final[tuple[OpStatus, ...]] = (OpStatus.PENDING, OpStatus.OK, OpStatus.FAIL, OpStatus.UNKNOWN)
_KIND_CODE_OF: Final[dict[str, int]] = {kind.value: code for code, kind in enumerate(_KIND_CODES)}
PENDING, OK, FAIL, UNKNOWN = range(4)
#: the reason given to a call that was still pending when its history was loaded or resumed
_NO_OUTCOME: Final[str] = "no outcome recorded: the client stopped mid-call"
_OUTCOME_TAGS: Final[dict[int, str]] = {OK: "o", FAIL: "f", UNKNOWN: "u"}
_STATUS_OF_TAG: Final[dict[str, int]] = {tag: code for code, tag in _OUTCOME_TAGS.items()}


class JournalError(Exception):
    """A journal cannot be read: damage before its last line, or records that contradict each other."""


def is_definite_failure(error: BaseException) -> bool:
    """The default rule: a store error with a code from :data:`DEFINITE_FAILURE_CODES` is a failure, anything
    else (timeouts, connection loss, crashes, unexpected errors) leaves the outcome unknown."""
    return isinstance(error, AdapterError) and error.code in DEFINITE_FAILURE_CODES


@dataclass(frozen=True, slots=True)
class Operation:
    """One recorded operation, as a read-only view. Times are ``time.monotonic_ns()`` (system-wide on Linux)."""

    index: int
    client_id: str
    kind: OpKind
    event_ids: tuple[str, ...]
    digests: tuple[str | None, ...] | None
    status: OpStatus
    invoked_at: int
    completed_at: int | None
    sequences: tuple[int, ...] | None
    error: str | None


class HistoryColumns(NamedTuple):
    """The history's parallel columns, indexed by operation: the fast read path for checkers.

    ``status`` holds codes (0 pending, 1 ok, 2 fail, 3 unknown); ``completed_at`` is -1 while pending;
    ``completion_order`` lists operation indices in the order their outcomes were recorded.
    """

    client_ids: list[str]
    kinds: bytearray
    event_ids: list[tuple[str, ...]]
    digests: list[tuple[str | None, ...] | None]
    invoked_at: list[int]
    status: bytearray
    completed_at: list[int]
    sequences: list[tuple[int, ...] | None]
    completion_order: list[int]


class _Journal:
    """Append-only msgpack records: one ``os.write`` per record, fsync per policy."""

    def __init__(self, path: Path, sync: SyncPolicy, group_size: int, *, new: bool = False) -> None:
        self.path = path
        self._sync = sync
        self._group_size = group_size
        self._unsynced = 0
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if new:
            self._claim_new()

    def _claim_new(self) -> None:
        """Hold the file's lock while it is written and refuse one that already holds records: checked once the
        lock is held, so two writers started at once on one path cannot both start it (the second is refused)."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(self._fd).st_size:
                raise ValueError(f"{self.path} already holds a journal; HistoryWriter starts new ones (History resumes)")
        except BlockingIOError:
            os.close(self._fd)
            raise ValueError(f"{self.path} is being written by another writer") from None
        except BaseException:
            os.close(self._fd)
            raise

    def write(self, record: list[Any]) -> None:
        data = self._pack(record)
        written = os.write(self._fd, data)
        if written != len(data):  # only a full disk short-writes a regular O_APPEND file
            raise OSError(f"short write to history journal {self.path}: {written} of {len(data)} bytes")
        self._unsynced += 1
        if self._sync == "record" or (self._sync == "group" and self._unsynced >= self._group_size):
            self.sync()

    def sync(self) -> None:
        if self._unsynced:
            os.fsync(self._fd)
            self._unsynced = 0

    def close(self) -> None:
        if self._fd >= 0:
            try:
                if self._sync != "none":
                    self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1


class Call:
    """The handle :meth:`History.track` yields: report the outcome once with :meth:`ok`, :meth:`fail` or
    :meth:`unknown`; an exception out of the block records fail or unknown by itself."""

    __slots__ = ("_history", "done", "op")

    def __init__(self, history: History, op: int) -> None:
        self._history = history
        self.op = op
        self.done = False

    def ok(self, result: StoredEvent | Sequence[StoredEvent] | Sequence[int] | None = None) -> None:
        self._history.ok(self.op, _sequences_of(result))
        self.done = True

    def fail(self, error: str) -> None:
        self._history.fail(self.op, error)
        self.done = True

    def unknown(self, reason: str) -> None:
        self._history.unknown(self.op, reason)
        self.done = True


def _sequences_of(result: Any) -> tuple[int, ...] | None:
    if result is None:
        return None
    if hasattr(result, "sequence"):
        return (int(result.sequence),)
    items = list(result)
    if not items:
        return None
    return tuple(int(item.sequence) if hasattr(item, "sequence") else int(item) for item in items)


def _digest_or_none(event: Mapping[str, Any]) -> str | None:
    """The content digest; None for an event that cannot even be encoded (bad input the store must refuse)."""
    try:
        return content_digest(event)
    except (TypeError, ValueError, KeyError, OverflowError):
        return None


def _describe(error: BaseException) -> str:
    code = getattr(error, "code", None)
    text = f"{type(error).__name__}: {error}"
    return f"{code}: {text}" if code else text


class _Recording:
    """What ``History`` and ``HistoryWriter`` share: the outcome calls, over each one's ``_complete``, and a
    journal behind a lock, flushed and closed on request."""

    _lock: threading.Lock
    _journal: _Journal | None

    def ok(self, op: int, sequences: Sequence[int] | None = None) -> None:
        """The store acknowledged the write (durable); ``sequences`` are the ones it assigned, if known."""
        self._complete(op, OK, tuple([int(s) for s in sequences]) if sequences is not None else None, None)

    def fail(self, op: int, error: str) -> None:
        """The store definitely did not write it (it refused before anything became durable)."""
        self._complete(op, FAIL, None, error)

    def unknown(self, op: int, reason: str) -> None:
        """The outcome is unknown (timeout, connection lost, crash): present or absent are both legal."""
        self._complete(op, UNKNOWN, None, reason)

    def _complete(self, op: int, status: int, seqs: tuple[int, ...] | None, error: str | None) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """fsync the journal now (whatever the sync policy)."""
        with self._lock:
            if self._journal is not None:
                self._journal.sync()

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class History(_Recording):
    """Record of every write a client made and what the store answered.

    ``History()`` keeps it in memory; ``History(journal=path)`` also journals it (and, if the journal
    already exists, resumes it: a restarted client keeps one history). ``sync`` is ``"record"``
    (fsync each record), ``"group"`` (every ``group_size`` records and on close) or ``"none"`` (rely on
    the OS: still survives the client's own crash, not a power cut of the journal's disk).
    """

    def __init__(
        self,
        journal: str | os.PathLike[str] | None = None,
        *,
        client_id: str = "client-0",
        sync: SyncPolicy = "group",
        group_size: int = 256,
        definite_failure: Callable[[BaseException], bool] = is_definite_failure,
    ) -> None:
        if sync not in ("record", "group", "none"):
            raise ValueError(f"sync must be 'record', 'group' or 'none', got {sync!r}")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.client_id = client_id
        self._definite_failure = definite_failure
        self._lock = threading.Lock()
        self._cols = HistoryColumns([], bytearray(), [], [], [], bytearray(), [], [], [])
        self._errors: dict[int, str] = {}
        self._clients: dict[str, str] = {}  # interned client ids
        self.torn_tail = False  # a journal this history was loaded from ended in a torn line
        self._journal: _Journal | None = None
        if journal is not None:
            path = Path(journal)
            if path.exists() and path.stat().st_size > 0:
                self._resume(path)
            self._journal = _Journal(path, sync, group_size)
            if not self._cols.invoked_at:
                self._journal.write(["h", JOURNAL_VERSION, client_id, os.getpid(), time.time_ns()])
            self._close_abandoned()

    # recording -----------------------------------------------------------------------------------------------

    def invoke(
        self,
        kind: OpKind | str,
        events: Sequence[Mapping[str, Any]],
        *,
        client_id: str | None = None,
        digests: Sequence[str | None] | None = None,
    ) -> int:
        """Record that a write is about to be sent; returns the operation's index. Call before sending."""
        code, ids, digest_tuple = _invocation(kind, events, digests)
        client = self._clients.get(client_id or self.client_id) or self._intern(client_id or self.client_id)
        cols = self._cols
        with self._lock:
            now = time.monotonic_ns()
            index = len(cols.invoked_at)  # also the op number in the journal
            cols.client_ids.append(client)
            cols.kinds.append(code)
            cols.event_ids.append(ids)
            cols.digests.append(digest_tuple)
            cols.invoked_at.append(now)
            cols.status.append(PENDING)
            cols.completed_at.append(-1)
            cols.sequences.append(None)
            if self._journal is not None:
                self._journal.write(["i", index, client, code, ids, digest_tuple, now])
        return index

    def _complete(self, op: int, status: int, seqs: tuple[int, ...] | None, error: str | None) -> None:
        cols = self._cols
        with self._lock:
            if not 0 <= op < len(cols.status):
                raise IndexError(f"no operation {op}")
            if seqs is not None and len(seqs) != len(cols.event_ids[op]):
                raise ValueError(f"operation {op} wrote {len(cols.event_ids[op])} events, got {len(seqs)} sequences")
            if cols.status[op] != PENDING:
                raise ValueError(f"operation {op} already completed as {_STATUS_CODES[cols.status[op]].value}")
            now = time.monotonic_ns()
            cols.status[op] = status
            cols.completed_at[op] = now
            cols.sequences[op] = seqs
            cols.completion_order.append(op)
            if error is not None:
                self._errors[op] = error
            if self._journal is not None:
                self._journal.write([_OUTCOME_TAGS[status], op, now, seqs, error])

    @contextmanager
    def track(
        self, kind: OpKind | str, events: Sequence[Mapping[str, Any]], *, client_id: str | None = None
    ) -> Iterator[Call]:
        """``with history.track("append", [event]) as call: call.ok(await store.append(event))``.

        An exception out of the block records ``fail`` if the store definitely refused the write and
        ``unknown`` otherwise, then propagates. Leaving the block without an outcome records ``unknown``.
        """
        call = Call(self, self.invoke(kind, events, client_id=client_id))
        try:
            yield call
        except BaseException as error:
            if not call.done:
                if isinstance(error, Exception) and self._definite_failure(error):
                    call.fail(_describe(error))
                else:
                    call.unknown(_describe(error))
            raise
        if not call.done:
            call.unknown("the caller recorded no outcome")

    async def append(self, adapter: EventStoreAdapter, event: Mapping[str, Any]) -> StoredEvent:
        """Append through ``adapter`` and record the operation."""
        with self.track(OpKind.APPEND, [event]) as call:
            stored = await adapter.append(event)
            call.ok(stored)
        return stored

    async def append_batch(self, adapter: EventStoreAdapter, events: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
        """Append a batch through ``adapter`` and record it as one all-or-nothing operation."""
        with self.track(OpKind.APPEND_BATCH, events) as call:
            stored = await adapter.append_batch(events)
            call.ok(stored)
        return stored

    # reading -------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._cols.invoked_at)

    def __getitem__(self, index: int) -> Operation:
        cols = self._cols
        if not 0 <= index < len(cols.invoked_at):
            raise IndexError(f"no operation {index}")
        completed = cols.completed_at[index]
        return Operation(
            index=index,
            client_id=cols.client_ids[index],
            kind=_KIND_CODES[cols.kinds[index]],
            event_ids=cols.event_ids[index],
            digests=cols.digests[index],
            status=_STATUS_CODES[cols.status[index]],
            invoked_at=cols.invoked_at[index],
            completed_at=None if completed < 0 else completed,
            sequences=cols.sequences[index],
            error=self._errors.get(index),
        )

    def __iter__(self) -> Iterator[Operation]:
        return (self[i] for i in range(len(self)))

    def columns(self) -> HistoryColumns:
        """The raw columns (read them, never modify them): what a linear-time checker iterates."""
        return self._cols

    def status_counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in OpStatus}
        for code in self._cols.status:
            counts[_STATUS_CODES[code].value] += 1
        return counts

    # loading -------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, *journals: str | os.PathLike[str]) -> History:
        """Read one or more journals (one per client process) into one history, merged by time.

        Operations without an outcome become ``unknown``: their client stopped mid-call.
        """
        if not journals:
            raise ValueError("name at least one journal")
        history = cls()
        index_of: dict[tuple[int, int], int] = {}  # (journal, op number in it) -> index here
        if len(journals) == 1:  # records were written under the lock in clock order: no merge needed
            records, _, history.torn_tail = _read_journal(Path(journals[0]))
            for record in records:
                history._replay(record, 0, index_of)
        else:
            streams = []
            for number, path in enumerate(journals):
                records, _, torn = _read_journal(Path(path))
                history.torn_tail |= torn
                streams.append([(_time_of(r), number, r) for r in records])
            for _, number, record in heapq.merge(*streams, key=_first):
                history._replay(record, number, index_of)
        history._close_abandoned()
        return history

    def _resume(self, path: Path) -> None:
        records, valid_bytes, torn = _read_journal(path)
        if torn:  # cut the torn tail so the next record does not glue onto it
            os.truncate(path, valid_bytes)
        self.torn_tail = torn
        index_of: dict[tuple[int, int], int] = {}
        for record in records:
            self._replay(record, 0, index_of)
        if any(index_of[(0, index)] != index for index in range(len(index_of))):
            raise JournalError(f"{path}: operation numbers are not consecutive; cannot resume it")

    def _replay(self, record: list[Any], journal: int, index_of: dict[tuple[int, int], int]) -> None:
        tag, op = record[0], record[1]
        cols = self._cols
        key = (journal, op)
        if tag == "i":
            if key in index_of:
                raise JournalError(f"operation {op} invoked twice")
            index_of[key] = len(cols.invoked_at)
            cols.client_ids.append(self._intern(record[2]))
            cols.kinds.append(record[3])
            cols.event_ids.append(tuple(record[4]))
            cols.digests.append(tuple(record[5]) if record[5] else None)
            cols.invoked_at.append(record[6])
            cols.status.append(PENDING)
            cols.completed_at.append(-1)
            cols.sequences.append(None)
            return
        index = index_of.get(key)
        if index is None:
            raise JournalError(f"outcome {tag!r} for operation {op} that was never invoked")
        if cols.status[index] != PENDING:
            raise JournalError(f"operation {op} completed twice")
        cols.status[index] = _STATUS_OF_TAG[tag]
        cols.completed_at[index] = record[2]
        cols.sequences[index] = tuple(record[3]) if record[3] is not None else None
        cols.completion_order.append(index)
        if record[4] is not None:
            self._errors[index] = str(record[4])

    def _close_abandoned(self) -> None:
        """Calls a previous incarnation left pending can never complete now: their outcome is unknown."""
        for index, code in enumerate(self._cols.status):
            if code == PENDING:
                self._complete(index, UNKNOWN, None, _NO_OUTCOME)

    def without_outcome(self) -> list[int]:
        """Operations whose client never recorded an outcome: still pending, or closed as unknown on loading
        because their client stopped mid-call (in flight when a run ended). Distinct from calls that ended
        without a definite answer (a timeout, a lost connection): a report can then say which is which."""
        cols, errors = self._cols, self._errors
        return [index for index, code in enumerate(cols.status)
                if code == PENDING or (code == UNKNOWN and errors.get(index) == _NO_OUTCOME)]

    def _intern(self, client_id: str) -> str:
        return self._clients.setdefault(client_id, client_id)


def _invocation(kind: OpKind | str, events: Sequence[Mapping[str, Any]],
                digests: Sequence[str | None] | None) -> tuple[int, tuple[str, ...], tuple[str | None, ...] | None]:
    """An invoke's kind code, event ids and digests (``None`` when none is known), checked."""
    code = _KIND_CODE_OF.get(kind)
    if code is None:
        raise ValueError(f"unknown operation kind {kind!r}; expected one of {[k.value for k in OpKind]}")
    if not events:
        raise ValueError("an operation writes at least one event")
    if code == 0 and len(events) != 1:
        raise ValueError(f"an append writes exactly one event, got {len(events)}")
    ids = tuple([str(e["event_id"]) for e in events])
    if digests is None:
        digest_tuple: tuple[str | None, ...] | None = tuple([_digest_or_none(e) for e in events])
    elif digests.count(None) == len(digests):
        digest_tuple = None
    else:
        digest_tuple = tuple(digests)
        if len(digest_tuple) != len(ids):
            raise ValueError("digests must align with events")
    return code, ids, digest_tuple


class HistoryWriter(_Recording):
    """A history's recording half, without its memory: every call goes to the journal, and only the calls
    still in flight stay in memory, so a load generator can record for days (a ``History`` holds ~135 B per
    event it was told about). Same calls and journal as ``History(journal=...)``; read it back with
    ``History.load``. It starts a journal: an existing non-empty one is refused rather than resumed.
    Completing an operation it never invoked is a ValueError (``History``: IndexError)."""

    def __init__(self, journal: str | os.PathLike[str], *, client_id: str = "client-0", sync: SyncPolicy = "group",
                 group_size: int = 256) -> None:
        if sync not in ("record", "group", "none"):
            raise ValueError(f"sync must be 'record', 'group' or 'none', got {sync!r}")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.client_id = client_id
        self._lock = threading.Lock()
        self._next_op = 0
        self._in_flight: dict[int, int] = {}  # op -> how many events it writes
        self._journal: _Journal | None = _Journal(Path(journal), sync, group_size, new=True)
        self._journal.write(["h", JOURNAL_VERSION, client_id, os.getpid(), time.time_ns()])

    def invoke(self, kind: OpKind | str, events: Sequence[Mapping[str, Any]], *, client_id: str | None = None,
               digests: Sequence[str | None] | None = None) -> int:
        """As ``History.invoke``: record that a write is about to be sent; returns the operation's number."""
        code, ids, digest_tuple = _invocation(kind, events, digests)
        with self._lock:
            journal = self._open_journal()
            op = self._next_op
            journal.write(["i", op, client_id or self.client_id, code, ids, digest_tuple, time.monotonic_ns()])
            self._next_op += 1
            self._in_flight[op] = len(ids)
        return op

    def _complete(self, op: int, status: int, seqs: tuple[int, ...] | None, error: str | None) -> None:
        with self._lock:
            journal = self._open_journal()
            count = self._in_flight.get(op)
            if count is None:
                raise ValueError(f"operation {op} is not in flight (never invoked, or completed already)")
            if seqs is not None and len(seqs) != count:
                raise ValueError(f"operation {op} wrote {count} events, got {len(seqs)} sequences")
            journal.write([_OUTCOME_TAGS[status], op, time.monotonic_ns(), seqs, error])
            del self._in_flight[op]

    @property
    def in_flight(self) -> int:
        """Calls invoked and not yet completed (what a journal read now would call pending)."""
        return len(self._in_flight)

    def _open_journal(self) -> _Journal:
        if self._journal is None:
            raise ValueError("the history writer is closed")
        return self._journal


def _first(item: tuple[int, int, list[Any]]) -> int:
    return item[0]


def _time_of(record: list[Any]) -> int:
    return int(record[6] if record[0] == "i" else record[2])


_RECORD_LENGTHS: Final[dict[str, int]] = {"i": 7, "o": 5, "f": 5, "u": 5}


def _read_journal(path: Path) -> tuple[list[list[Any]], int, bool]:
    """Parse a journal into (records, bytes of intact records, torn tail?).

    A partial last record, or only zero bytes after the last good one (what a power cut can leave
    after a file was extended), is a torn tail; anything else unreadable is damage: JournalError.
    """
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    records: list[list[Any]] = []
    valid = 0
    try:
        for record in unpacker:
            if not (isinstance(record, list) and record and
                    (record[0] == "h" or _RECORD_LENGTHS.get(record[0]) == len(record))):
                raise ValueError(f"not a journal record: {str(record)[:80]}")
            if record[0] == "h":
                if record[1] != JOURNAL_VERSION:
                    raise JournalError(f"{path}: journal version {record[1]}, expected {JOURNAL_VERSION}")
            else:
                records.append(record)
            valid = unpacker.tell()
    except (ValueError, msgpack.UnpackException) as error:
        if data[valid:].strip(b"\0"):
            raise JournalError(f"{path}: damaged at byte {valid}, before its end: {error}") from None
    return records, valid, valid < len(data)
