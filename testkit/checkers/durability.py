"""The durability checker: does the recovered log keep every promise the store made to its clients?

Linear in the size of the history plus the log, so a history of 10^6 operations is checked in
seconds, where linearizability searches run out of memory. Invariants, after RocksDB's prefix oracle
and Jepsen's set-full checker:

* every acknowledged write is present exactly once and intact (its content digest matches);
* failed writes are absent; writes with an unknown outcome may be present or absent;
* a batch is all-or-nothing;
* no phantoms (events nobody wrote), no duplicates;
* order: sequence numbers strictly increase; an event acknowledged before another was invoked has the
  lower sequence; a batch keeps its internal order; each aggregate's versions increase;
* the log is a prefix without holes: nothing acknowledged (and, for a gapless store, no sequence
  number) is missing while later events survived. Ranges the store itself declared lost (quarantined
  corruption) are reported as declared losses, not hidden.

How it stays fast: one Python pass over the recovered log (unavoidable: it is a stream of objects),
then whole-array work in numpy over the history's events, with per-event Python only for the
violations it reports.
"""

from __future__ import annotations

import bisect
import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice, repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from testkit.checkers.history import FAIL, OK, History, OpKind
from testkit.checkers.verdict import Verdict, VerdictBuilder, ViolationKind

__all__ = ["check_durability"]

_BATCH = list(OpKind).index(OpKind.APPEND_BATCH)
# How sure we are that a write happened: the strongest claim over every operation that carried its event.
_RANK_OF_STATUS = np.array([2, 3, 1, 2], dtype=np.int8)  # pending -> unknown, ok -> acked, fail -> failed
_FAILED, _UNKNOWN, _ACKED = 1, 2, 3
_STATUS_NAMES = ("pending", "ok", "fail", "unknown")
_Ints = npt.NDArray[np.int64]


class _Ranges:
    """Sorted, merged inclusive ranges with O(log n) membership."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted((int(a), int(b)) for a, b in ranges):
            if start > end:
                raise ValueError(f"range {start}..{end} is empty")
            if merged and start <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self._starts = [r[0] for r in merged]
        self._ends = [r[1] for r in merged]

    def __contains__(self, value: int) -> bool:
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and value <= self._ends[i]

    def uncovered(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``start..end`` outside every range."""
        parts: list[tuple[int, int]] = []
        cursor = start
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while cursor <= end and i < len(self._starts):
            lo, hi = self._starts[i], self._ends[i]
            i += 1
            if hi < cursor:
                continue
            if lo > end:
                break
            if lo > cursor:
                parts.append((cursor, lo - 1))
            cursor = hi + 1
        if cursor <= end:
            parts.append((cursor, end))
        return parts


def check_durability(
    history: History,
    recovered: Iterable[Any],
    *,
    voided: Iterable[tuple[int, int]] = (),
    store_generated: Callable[[Any], bool] | None = None,
    gapless: bool = True,
    first_sequence: int = 1,
    verify_digests: bool = True,
    declared_are_violations: bool = False,
    max_examples: int = 50,
) -> Verdict:
    """Judge ``recovered`` (StoredEvent-like objects in log order: ``event_id``, ``sequence``,
    ``aggregate_id``, optional ``aggregate_version``, ``digest()``) against ``history``.

    ``voided``: inclusive sequence ranges the store reported lost (quarantined). ``store_generated``:
    predicate for events the store writes itself (e.g. ``corruption_detected``), which are not phantoms.
    ``gapless``: the store promises consecutive sequence numbers from ``first_sequence``, so a gap is a hole.
    ``declared_are_violations``: count declared losses as violations too (a store that must lose nothing).
    """
    with _gc_paused():
        return _check(history, recovered, voided=voided, store_generated=store_generated, gapless=gapless,
                      first_sequence=first_sequence, verify_digests=verify_digests,
                      declared_are_violations=declared_are_violations, max_examples=max_examples)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The check allocates millions of acyclic objects; the cyclic GC would rescan them all, for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check(
    history: History,
    recovered: Iterable[Any],
    *,
    voided: Iterable[tuple[int, int]],
    store_generated: Callable[[Any], bool] | None,
    gapless: bool,
    first_sequence: int,
    verify_digests: bool,
    declared_are_violations: bool,
    max_examples: int,
) -> Verdict:
    out = VerdictBuilder(max_examples=max_examples)
    declared = _Ranges(voided)
    h = _HistoryArrays(history, verify_digests)
    log = _scan_log(recovered, h, out, store_generated)

    # Each history row's sequence in the log (-1: absent), from the log -> row mapping of the scan.
    seq = np.full(h.n_events, -1, dtype=np.int64)
    found = log.rows >= 0
    seq[log.rows[found][::-1]] = log.seqs[found][::-1]  # reversed: a duplicated event keeps its first sequence
    for row, first_seq in log.first_seq_of_duplicated.items():
        seq[row] = first_seq
    for row in h.repeated_rows:  # a retried event id: every row carrying it is present or absent together
        seq[row] = seq[h.known_ids[h.ids[row]]]
    present = seq >= 0

    max_seq = int(log.running_max[-1]) if log.n else first_sequence - 1
    _check_log_order(log, out)
    latest_present_invoke = int(h.invoked_at[h.op_of[present & h.first]].max(initial=-1))
    missing_acked = _check_presence(h, log, out, present, seq, max_seq, latest_present_invoke, declared)
    _check_batches(h, out, present, seq)
    _check_real_time(h, log, out, present, seq)
    _check_gaps(log, out, declared, missing_acked, gapless=gapless, first_sequence=first_sequence)

    status = h.event_status
    acked, failed = status == OK, status == FAIL
    unknown = ~(acked | failed)
    without_outcome = np.zeros(h.n_ops, dtype=bool)
    without_outcome[history.without_outcome()] = True
    no_outcome = np.repeat(without_outcome, h.lengths)  # the unknown whose client never heard back (cut off)
    out.counts.update({
        "operations": h.n_ops,
        "acknowledged": int(acked.sum()),
        "acknowledged_present": int((acked & present).sum()),
        "unknown_present": int((unknown & present).sum()),
        "unknown_absent": int((unknown & ~present).sum()),
        "no_outcome_present": int((no_outcome & present).sum()),
        "no_outcome_absent": int((no_outcome & ~present).sum()),
        "failed_absent": int((failed & ~present).sum()),
        "recovered": log.n,
        "store_generated": log.store_generated,
        "digests_verified": log.digests_verified,
        "max_sequence": max_seq,
    })
    return out.build(declared_are_violations=declared_are_violations)


def _sequences_or_blank(sequences: tuple[int, ...] | None, length: int) -> Iterable[int]:
    return repeat(-1, length) if sequences is None else sequences


class _HistoryArrays:
    """The history flattened to one row per (operation, event): ids, op, status, rank, acked sequence."""

    def __init__(self, history: History, verify_digests: bool) -> None:
        cols = history.columns()
        self.n_ops = n_ops = len(cols.invoked_at)
        lengths = np.fromiter(map(len, cols.event_ids), dtype=np.int64, count=n_ops)
        self.starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64) if n_ops else lengths
        self.lengths = lengths
        self.ids: list[str] = list(chain.from_iterable(cols.event_ids))
        self.n_events = len(self.ids)
        self.op_of = np.repeat(np.arange(n_ops, dtype=np.int64), lengths)
        op_status = np.frombuffer(bytes(cols.status), dtype=np.uint8)
        self.kinds = np.frombuffer(bytes(cols.kinds), dtype=np.uint8)
        self.event_status = np.repeat(op_status, lengths)
        self.invoked_at = np.array(cols.invoked_at, dtype=np.int64)
        self.completed_at = np.array(cols.completed_at, dtype=np.int64)
        self.op_status = op_status
        self.acked_seq = np.fromiter(  # only acknowledged operations carry sequences
            chain.from_iterable(map(_sequences_or_blank, cols.sequences, lengths.tolist())),
            dtype=np.int64, count=self.n_events,
        )
        # One event id in several operations (a retried write): rank is the strongest claim over all of
        # them, and only the earliest operation is held to real-time order (it may be the one that wrote it).
        self.rank = _RANK_OF_STATUS[self.event_status]
        self.first = np.ones(self.n_events, dtype=bool)
        self.known_ids: dict[str, int] = dict(zip(self.ids, range(self.n_events)))  # fixed below if ids repeat
        self.repeated_rows: list[int] = []
        if len(self.known_ids) != self.n_events:
            self._merge_repeated_ids()
        self.digest_of: dict[str, str] = {}
        if verify_digests:
            for ids, digests in zip(cols.event_ids, cols.digests):
                if digests is not None:
                    self.digest_of.update((i, d) for i, d in zip(ids, digests) if d is not None)

    def _merge_repeated_ids(self) -> None:
        repeated = {event_id for event_id, n in Counter(self.ids).items() if n > 1}
        self.repeated_rows = rows = [row for row, event_id in enumerate(self.ids) if event_id in repeated]
        first_row: dict[str, int] = {}
        best: dict[str, int] = {}
        for row in rows:
            event_id = self.ids[row]
            if event_id in first_row:
                self.first[row] = False
            else:
                first_row[event_id] = row
            best[event_id] = max(best.get(event_id, 0), int(self.rank[row]))
        self.known_ids.update(first_row)
        for row in rows:
            self.rank[row] = best[self.ids[row]]


class _Log:
    """The recovered log as arrays, plus what the single pass over it found."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.seqs: _Ints = np.zeros(0, dtype=np.int64)
        self.running_max: _Ints = np.zeros(0, dtype=np.int64)
        self.rows: _Ints = np.zeros(0, dtype=np.int64)  # the history row of each log entry (-1: nobody wrote it)
        self.first_seq_of_duplicated: dict[int, int] = {}  # history row -> sequence of its first copy
        self.n = 0
        self.store_generated = 0
        self.digests_verified = 0


#: events judged at a time: the scan keeps only ids, sequences and history rows, never the whole log's events
_SCAN_CHUNK = 1 << 16


def _scan_log(
    recovered: Iterable[Any], h: _HistoryArrays, out: VerdictBuilder, store_generated: Callable[[Any], bool] | None
) -> _Log:
    """Read the recovered stream once, a chunk at a time, and judge each chunk column by column: phantoms,
    failed writes present, digests, aggregate versions; then duplicates over the whole log. Per-event Python
    runs only where there is something to check. Of each event only its id, sequence and history row are
    kept (an hour's soak, 36 million events, would not fit in memory as objects)."""
    log = _Log()
    ids = log.ids
    seq_parts: list[_Ints] = []
    row_parts: list[_Ints] = []
    version_of: dict[str, int] = {}
    stream = iter(recovered)
    while events := list(islice(stream, _SCAN_CHUNK)):
        n = len(events)
        chunk_ids = [e.event_id for e in events]
        ids.extend(chunk_ids)
        seqs = np.fromiter((e.sequence for e in events), dtype=np.int64, count=n)
        rows = np.fromiter(map(h.known_ids.get, chunk_ids, repeat(-1)), dtype=np.int64, count=n)
        seq_parts.append(seqs)
        row_parts.append(rows)
        for i in np.nonzero(rows < 0)[0].tolist():
            if store_generated is not None and store_generated(events[i]):
                log.store_generated += 1
            else:
                out.add(ViolationKind.PHANTOM, (chunk_ids[i],), (int(seqs[i]),), "no client ever wrote this event")
        for i in np.nonzero((rows >= 0) & (h.rank[np.maximum(rows, 0)] == _FAILED))[0].tolist():
            out.add(ViolationKind.FAILED_WRITE_PRESENT, (chunk_ids[i],), (int(seqs[i]),),
                    "the store reported this write failed, yet it is in the log")
        if h.digest_of:
            digest_of = h.digest_of
            for i, event in enumerate(events):
                want = digest_of.get(chunk_ids[i])
                if want is not None:
                    log.digests_verified += 1
                    got = event.digest()
                    if got != want:
                        out.add(ViolationKind.CORRUPTED, (chunk_ids[i],), (int(seqs[i]),),
                                f"digest {got} != written {want}")
        versions = [getattr(e, "aggregate_version", None) for e in events]
        if versions.count(None) != n:
            for i, version in enumerate(versions):
                if version is None:
                    continue
                aggregate = events[i].aggregate_id
                previous = version_of.get(aggregate)
                if previous is not None and version <= previous:
                    out.add(ViolationKind.AGGREGATE_ORDER, (chunk_ids[i],), (int(seqs[i]),),
                            f"{aggregate} version {version} after version {previous}")
                version_of[aggregate] = version
    log.n = len(ids)
    log.seqs = np.concatenate(seq_parts) if seq_parts else np.zeros(0, dtype=np.int64)
    log.rows = rows = np.concatenate(row_parts) if row_parts else np.zeros(0, dtype=np.int64)
    log.running_max = np.maximum.accumulate(log.seqs) if log.n else log.seqs
    known_rows = rows[rows >= 0]
    unknown_ids = [ids[i] for i in np.nonzero(rows < 0)[0].tolist()]  # phantoms and the store's own
    repeated = bool(len(known_rows)) and int(np.bincount(known_rows).max()) > 1
    if repeated or len(set(unknown_ids)) != len(unknown_ids):
        first_at: dict[str, int] = {}
        for i, event_id in enumerate(ids):
            if event_id in first_at:
                earlier = int(log.seqs[first_at[event_id]])
                out.add(ViolationKind.DUPLICATE, (event_id,), (earlier, int(log.seqs[i])),
                        f"recovered at sequences {earlier} and {int(log.seqs[i])}")
                if rows[i] >= 0:
                    log.first_seq_of_duplicated[int(rows[i])] = earlier
            else:
                first_at[event_id] = i
    return log


def _check_log_order(log: _Log, out: VerdictBuilder) -> None:
    """Sequence numbers strictly increase along the log."""
    if log.n < 2:
        return
    before = log.running_max[:-1]
    bad = np.nonzero(log.seqs[1:] <= before)[0]
    for i in bad[: out.max_examples].tolist():
        out.add(ViolationKind.SEQUENCE_ORDER, (log.ids[i + 1],), (int(before[i]), int(log.seqs[i + 1])),
                f"sequence {int(log.seqs[i + 1])} follows {int(before[i])}")
    out.count(ViolationKind.SEQUENCE_ORDER, max(0, len(bad) - out.max_examples))


def _check_presence(
    h: _HistoryArrays, log: _Log, out: VerdictBuilder, present: npt.NDArray[np.bool_], seq: _Ints,
    max_seq: int, latest_present_invoke: int, declared: _Ranges,
) -> list[int]:
    """Acknowledged writes present (else lost, hole or declared) and recovered under their acked sequence."""
    acked_rows = h.event_status == OK
    missing_acked_seqs: list[int] = []
    reported: set[str] = set()
    for row in np.nonzero(acked_rows & ~present)[0].tolist():
        event_id = h.ids[row]
        if event_id in reported or h.rank[row] != _ACKED:
            continue
        reported.add(event_id)
        acked = int(h.acked_seq[row])
        sequences = (acked,) if acked >= 0 else ()
        if acked >= 0:
            missing_acked_seqs.append(acked)
            if acked in declared:
                out.declare(ViolationKind.LOST, (event_id,), sequences, "inside a range the store declared lost")
                continue
        acked_at = int(h.completed_at[h.op_of[row]])
        if (0 <= acked < max_seq) or acked_at < latest_present_invoke:
            out.add(ViolationKind.HOLE, (event_id,), sequences,
                    "acknowledged write missing while later writes survived")
        else:
            out.add(ViolationKind.LOST, (event_id,), sequences, "acknowledged write missing (lost tail)")
    mismatched = acked_rows & present & (h.acked_seq >= 0) & (h.acked_seq != seq)
    for row in np.nonzero(mismatched)[0].tolist():
        out.add(ViolationKind.SEQUENCE_MISMATCH, (h.ids[row],), (int(h.acked_seq[row]), int(seq[row])),
                f"acknowledged as sequence {int(h.acked_seq[row])}, recovered as {int(seq[row])}")
    missing_acked_seqs.sort()
    return missing_acked_seqs


def _check_batches(h: _HistoryArrays, out: VerdictBuilder, present: npt.NDArray[np.bool_], seq: _Ints) -> None:
    """All or nothing per batch, and the batch's own order kept."""
    if not h.n_ops:
        return
    found = np.add.reduceat(present.astype(np.int64), h.starts)
    torn = (h.kinds == _BATCH) & (found > 0) & (found < h.lengths)
    for op in np.nonzero(torn)[0].tolist():
        members = range(int(h.starts[op]), int(h.starts[op] + h.lengths[op]))
        out.add(ViolationKind.TORN_BATCH, tuple(h.ids[r] for r in members if not present[r]),
                tuple(int(seq[r]) for r in members if present[r]),
                f"batch of {int(h.lengths[op])} ({_STATUS_NAMES[h.op_status[op]]}): "
                f"{int(found[op])} present, {int(h.lengths[op] - found[op])} missing")
    kept = np.nonzero(present)[0]
    same_op = h.op_of[kept[1:]] == h.op_of[kept[:-1]]
    for i in np.nonzero(same_op & (seq[kept[1:]] < seq[kept[:-1]]))[0].tolist():
        later, earlier = int(kept[i + 1]), int(kept[i])
        out.add(ViolationKind.REORDERED, (h.ids[later], h.ids[earlier]), (int(seq[later]), int(seq[earlier])),
                "a batch's events are out of their written order")


def _check_real_time(h: _HistoryArrays, log: _Log, out: VerdictBuilder, present: npt.NDArray[np.bool_],
                     seq: _Ints) -> None:
    """If write A was acknowledged before write B was invoked, A's sequence is lower than B's."""
    if not h.n_ops or not log.n:
        return
    op_max = np.maximum.reduceat(np.where(present, seq, -1), h.starts)
    ok_ops = np.nonzero(h.op_status == OK)[0]
    if not len(ok_ops):
        return
    by_ack = ok_ops[np.argsort(h.completed_at[ok_ops], kind="stable")]
    ack_times = h.completed_at[by_ack]
    floor_so_far = np.maximum.accumulate(op_max[by_ack])
    acks_before = np.searchsorted(ack_times, h.invoked_at, side="left")  # acks strictly before each invoke
    floor = np.where(acks_before > 0, floor_so_far[np.maximum(acks_before - 1, 0)], -1)
    held = present & h.first  # only the earliest op carrying an event is held to its invoke time
    too_low = held & (seq < floor[h.op_of])
    if not too_low.any():
        return
    seq_to_id = dict(zip(log.seqs.tolist(), log.ids))
    for row in np.nonzero(too_low)[0].tolist():
        above = int(floor[h.op_of[row]])
        earlier = seq_to_id.get(above, "?")
        out.add(ViolationKind.REORDERED, (h.ids[row], earlier), (int(seq[row]), above),
                f"{earlier} (sequence {above}) was acknowledged before this write was invoked, "
                f"yet this one got the lower sequence {int(seq[row])}")


def _check_gaps(log: _Log, out: VerdictBuilder, declared: _Ranges, missing_acked_seqs: list[int], *,
                gapless: bool, first_sequence: int) -> None:
    """Each sequence gap of a gapless store once: a hole, unless the store declared it lost (then it is
    reported as declared) or an acknowledged write inside it was already reported as a hole."""
    if not gapless or not log.n:
        return
    gaps = [(first_sequence, int(log.seqs[0]) - 1)] if log.seqs[0] > first_sequence else []
    before = log.running_max[:-1]
    jumps = np.nonzero(log.seqs[1:] > before + 1)[0].tolist()
    gaps.extend((int(before[i]) + 1, int(log.seqs[i + 1]) - 1) for i in jumps)
    for start, end in gaps:
        uncovered = declared.uncovered(start, end)
        for lo, hi in uncovered:
            i = bisect.bisect_left(missing_acked_seqs, lo)
            if i < len(missing_acked_seqs) and missing_acked_seqs[i] <= hi:
                continue
            out.add(ViolationKind.HOLE, (), (lo, hi), f"sequences {lo}..{hi} missing while later ones survive")
        if sum(hi - lo + 1 for lo, hi in uncovered) < end - start + 1:
            out.declare(ViolationKind.HOLE, (), (start, end),
                        f"gap {start}..{end} lies in a range the store declared lost")
