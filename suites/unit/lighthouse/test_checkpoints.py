"""Index checkpoints: recovery from a checkpoint plus the frames after it equals a full scan.

The property test drives a store through random appends, batches, failed writes (voids), torn
tails, rotations and reopenings with frequent periodic checkpoints, keeps copies of checkpoints
taken along the way, and then opens the final log once per checkpoint and once without any: every
open must rebuild exactly the same index, id table, versions, voids and damage record. The other
tests show that a damaged, foreign or stale checkpoint is detected, ignored (full scan) and reported.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lighthouse import ConcurrencyConflict, Event, EventStore, EventType, WriteFailed
from lighthouse.checkpoint import _SYNC_EVERY, CHECKPOINT_NAME
from lighthouse.id_table import IdTable
from lighthouse.index import id_key
from lighthouse.store_checkpoints import _with_recent
from lighthouse.versions import AggregateVersions
from testkit.chaos.lighthouse_checkpoints import CountingStore

pytestmark = pytest.mark.ci


class _Store(CountingStore):
    """The real store; ``failures`` makes the next group writes fail with ENOSPC (a void)."""

    failures = 0

    def _write_durably(self, offset: int, data: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        super()._write_durably(offset, data)


async def _settled(store: EventStore) -> None:
    """Wait for a background checkpoint in flight (so a copy of the file is a whole one)."""
    if store._checkpoint_task is not None:
        await asyncio.wait([store._checkpoint_task])


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.integers(1, 25)),
        st.tuples(st.just("single"), st.integers(1, 4)),
        st.tuples(st.just("fail"), st.integers(1, 4)),
        st.tuples(st.just("reopen"), st.just(0)),
        st.tuples(st.just("save"), st.just(0)),
        st.tuples(st.just("tear"), st.integers(1, 60)),
    ),
    min_size=3,
    max_size=15,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS, every=st.integers(1, 40), segment_bytes=st.sampled_from([4096, 8192, 1 << 20]))
def test_recovery_from_any_checkpoint_plus_tail_equals_a_full_scan(
    ops, every, segment_bytes, run, make_event, disk, recovered, healed
) -> None:
    async def drive(path: Path) -> list[bytes]:
        saved: list[bytes] = []
        options = {"checkpoint_every": every, "segment_bytes": segment_bytes, "probe_interval": 0.005}
        store = await _Store.open(path, **options)
        n = 0
        try:
            for op, size in ops:
                if op == "batch":
                    await store.append_batch([make_event(n + i) for i in range(size)])
                    n += size
                elif op == "single":
                    for _ in range(size):
                        await store.append(make_event(n))
                        n += 1
                elif op == "fail":
                    store.failures = 1
                    with pytest.raises(WriteFailed):
                        await store.append_batch([make_event(n + i) for i in range(size)])
                    n += size
                    await healed(store)  # and its void recorded: the next op may plant a failure
                elif op == "save":
                    await _settled(store)
                    if (path / CHECKPOINT_NAME).exists():
                        saved.append((path / CHECKPOINT_NAME).read_bytes())
                elif op in ("reopen", "tear"):
                    await store.close()
                    if op == "tear":
                        with open(disk.last_segment(path), "ab") as handle:
                            handle.write(b"LHF1" + bytes(size))  # a frame that never finished
                    store = await _Store.open(path, **options)
            await store.append(make_event(n))  # records a pending void, if any
            await _settled(store)
            saved.append((path / CHECKPOINT_NAME).read_bytes()) if (path / CHECKPOINT_NAME).exists() else None
        finally:
            await store.close()
        saved.append((path / CHECKPOINT_NAME).read_bytes())  # the one written on close
        return saved

    async def open_state(path: Path) -> tuple[dict, dict, int]:
        async with _Store(path, checkpoint_every=0) as store:
            return await recovered(store), dict(store.health().details["checkpoint"]), store.indexed_frames

    async def scenario(root: Path) -> None:
        log = root / "log"
        saved = await drive(log)
        full = disk.copy_store(log, root / "full")
        (full / CHECKPOINT_NAME).unlink()
        expected, report, _ = await open_state(full)
        assert report["ignored"] == "no checkpoint"
        for i, checkpoint in enumerate(saved):
            copy = disk.copy_store(log, root / f"from-{i}")
            (copy / CHECKPOINT_NAME).write_bytes(checkpoint)
            state, report, indexed_frames = await open_state(copy)
            assert state == expected, f"checkpoint {i} of {len(saved)} recovered a different state"
            used = "loaded_rows" in report
            event("checkpoint + tail" if used and indexed_frames else "checkpoint only" if used else "stale: full scan")
            if i == len(saved) - 1:  # the close checkpoint covers everything: nothing is rescanned
                assert report.get("loaded_rows") == len(expected["columns"]["seq"]), report
                assert indexed_frames == 0

    with tempfile.TemporaryDirectory() as tmp:
        run(scenario(Path(tmp)), timeout=120)


def _fill(run, path: Path, make_event, *, batches: int = 5, **options) -> None:
    async def fill() -> None:
        async with EventStore(path, **options) as store:
            for b in range(batches):
                await store.append_batch([make_event(b * 10 + i) for i in range(10)])

    run(fill())


def _open_report(run, path: Path, recovered) -> tuple[dict, dict]:
    async def open_() -> tuple[dict, dict]:
        async with _Store(path) as store:
            return await recovered(store), store.health().details["checkpoint"]

    return run(open_())


def test_a_checkpoint_lets_open_skip_every_frame_it_covers(store_dir: Path, run, make_event, recovered) -> None:
    _fill(run, store_dir, make_event)

    async def reopen() -> int:
        async with _Store(store_dir) as store:
            assert store.health().details["checkpoint"]["loaded_rows"] == 50
            assert store.stats().events == 50 and (await store.get(50)).sequence == 50
            return store.indexed_frames

    assert run(reopen()) == 0


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(lambda raw: raw[:100] + bytes([raw[100] ^ 1]) + raw[101:], "checksum mismatch", id="flipped-bit"),
        pytest.param(lambda raw: raw[: len(raw) - 7], "header says", id="truncated"),
        pytest.param(lambda raw: raw[:8] + b"\x09\x00\x00\x00" + raw[12:], "format 9", id="future-format"),
        pytest.param(lambda raw: b"garbage" + raw[7:], "bad magic", id="not-a-checkpoint"),
    ],
)
def test_a_damaged_or_foreign_checkpoint_is_ignored_and_reported(
    store_dir: Path, tmp_path: Path, run, make_event, disk, recovered, damage, reason
) -> None:
    _fill(run, store_dir, make_event)
    reference = disk.copy_store(store_dir, tmp_path / "reference")
    (reference / CHECKPOINT_NAME).unlink()
    expected, _ = _open_report(run, reference, recovered)
    checkpoint = store_dir / CHECKPOINT_NAME
    checkpoint.write_bytes(damage(checkpoint.read_bytes()))
    state, report = _open_report(run, store_dir, recovered)
    assert reason in report["ignored"] and "loaded_rows" not in report
    assert state == expected
    _, again = _open_report(run, store_dir, recovered)
    assert again.get("loaded_rows") == 50  # the close after the full scan wrote a good checkpoint again


def test_a_checkpoint_of_a_segment_changed_since_is_stale_and_the_change_is_found(
    store_dir: Path, run, make_event, disk, recovered
) -> None:
    _fill(run, store_dir, make_event, batches=12, segment_bytes=4096)
    segments = disk.segments(store_dir)
    assert len(segments) >= 3
    middle = disk.frames(segments[0])[1]
    disk.flip_bit(segments[0], middle.offset + middle.size // 2)  # corruption of a covered, closed segment
    state, report = _open_report(run, store_dir, recovered)
    assert report["ignored"].startswith("stale: segment " + segments[0].name)
    assert any(d["kind"] == "corrupt" for d in state["damage"]) and state["lost"]


def test_corruption_of_the_newest_segment_right_after_close_is_not_hidden_by_the_checkpoint(
    store_dir: Path, run, make_event, disk, recovered
) -> None:
    _fill(run, store_dir, make_event)
    segment = disk.last_segment(store_dir)
    frame = disk.frames(segment)[2]
    disk.flip_bit(segment, frame.offset + frame.size - 3)  # same size, possibly the same mtime tick
    state, report = _open_report(run, store_dir, recovered)
    assert "loaded_rows" not in report and report["ignored"].startswith("stale")
    assert [d["kind"] for d in state["damage"]] == ["corrupt"]


def test_a_periodic_checkpoint_is_written_while_appends_continue(store_dir: Path, run, make_event) -> None:
    async def scenario() -> dict:
        async with EventStore(store_dir, checkpoint_every=100) as store:
            for b in range(5):
                await store.append_batch([make_event(b * 100 + i) for i in range(100)])
            await _settled(store)
            report = dict(store.health().details["checkpoint"])
            shutil.copy(store_dir / CHECKPOINT_NAME, store_dir.parent / "periodic.ckpt")
            return report

    report = run(scenario())
    assert report["written"] >= 1 and report["last_rows"] >= 100


def test_a_live_store_keeps_only_one_checkpoint_intervals_aggregates_as_strings(
    store_dir: Path, run, make_event
) -> None:
    """Each checkpoint folds the versions of recently written aggregates into the compact table, and the
    live store takes that table: a long-running writer's memory per aggregate does not grow forever."""

    async def scenario() -> None:
        async with EventStore(store_dir, checkpoint_every=100) as store:
            for b in range(8):  # 50 new aggregates per batch of 100
                await store.append_batch([make_event(b * 100 + i, aggregate_id=f"agg:{(b * 100 + i) // 2}")
                                          for i in range(100)])
                await _settled(store)
                assert len(store._versions.recent) <= 100, "the aggregates of more than one interval are held"
            assert store.health().details["checkpoint"]["written"] >= 7
            # versions now answered from the table (read back and confirmed) stay exact
            assert (await store.append(make_event(aggregate_id="agg:0"), expected_version=2)).aggregate_version == 3
            with pytest.raises(ConcurrencyConflict) as stale:
                await store.append(make_event(aggregate_id="agg:1"), expected_version=1)
            assert stale.value.details["actual"] == 2
            assert (await store.append(make_event(aggregate_id="agg:399"), expected_version=2)).aggregate_version == 3

    run(scenario())


def test_versions_written_while_a_checkpoint_was_taken_stay_in_the_exact_table() -> None:
    events = {1: _stored("a", 1, version=1), 5: _stored("b", 5, version=2), 9: _stored("b", 9, version=3)}
    versions = AggregateVersions(events.get, lambda aggregate: None)
    versions.update({"a": (1, 1), "b": (2, 5)})
    folded = versions.take_recent()  # what the checkpoint snapshot takes
    assert versions.recent == {} and versions.get("b") == 2  # answered from the hand-over meanwhile
    table = IdTable()
    for aggregate, (_version, sequence) in folded.exact.items():
        table.put(id_key(aggregate), sequence)
    versions.set("b", 3, 9)  # written after the snapshot, before the checkpoint finished
    versions.adopt(table, folded)
    assert versions.recent == {"b": (3, 9)} and versions.folding is None
    assert versions.get("a") == 1 and versions.get("b") == 3 and versions.get("c") == 0  # "a" read back via the table


def test_a_hand_over_never_adopted_is_folded_by_the_next_checkpoint() -> None:
    versions = AggregateVersions({}.get, lambda aggregate: None)
    versions.update({"a": (1, 1)})
    lost = versions.take_recent()  # its checkpoint failed before folding: never adopted
    versions.update({"b": (1, 2)})
    handed = versions.take_recent()
    assert handed.exact == {"a": (1, 1), "b": (1, 2)}
    assert list(handed.keys) == [id_key("a"), id_key("b")] and list(handed.sequences) == [1, 2]
    assert not versions.adopt(IdTable(), lost)  # a stale hand-over changes nothing (its dict is not freed)
    assert versions.folding == {"a": (1, 1), "b": (1, 2)} and versions.get("a") == 1


@pytest.mark.parametrize("track_writes", [True, False], ids=["writes hashed as written", "checkpoints off"])
def test_a_hand_over_folds_into_the_table_like_each_write_put_in_order(track_writes: bool) -> None:
    """The checkpoint thread folds the writes' keys, hashed as they were written, with numpy (or, with
    checkpoints off, hashes the exact versions): the table it makes must hold each aggregate's newest
    sequence, as putting the exact versions one by one does."""
    base = IdTable().updated([id_key("old"), id_key("b")], [1, 2])
    events = {1: _stored("old", 1, version=4)}
    versions = AggregateVersions(events.get, lambda aggregate: None, base=base, track_writes=track_writes)
    assert versions.get("old") == 4  # cached from the base: not a write, the base holds it already
    versions.update({"a": (1, 3), "b": (2, 4)})
    versions.set("a", 2, 5)
    versions.update({"c": (1, 6), "b": (3, 7)})
    handed = versions.take_recent()
    assert (handed.keys is not None) == track_writes
    folded = _with_recent(base, handed)
    assert handed.exact == {"old": (4, 1), "a": (2, 5), "b": (3, 7), "c": (1, 6)}
    for aggregate, newest in {"old": 1, "a": 5, "b": 7, "c": 6}.items():
        assert folded.candidates(id_key(aggregate)) == [newest], aggregate
    assert len(folded) == 4 and base.candidates(id_key("b")) == [2]  # a copy: the base is unchanged
    assert versions.adopt(folded, handed) and versions.folding is None


def _stored(aggregate: str, sequence: int, *, version: int) -> Event:
    event = Event(EventType.CUSTOM, aggregate_id=aggregate, event_id=f"evt-{sequence}")
    return tuple.__new__(Event, (*event[:11], sequence, 1.0, version))


def test_a_checkpoint_written_in_several_sync_steps_loads_as_a_full_scan_finds(
    store_dir: Path, tmp_path: Path, run, make_event, recovered
) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir, checkpoint_every=0) as store:  # written once, on close
            for b in range(80):
                await store.append_batch([make_event(b * 1000 + i) for i in range(1000)])
        assert (store_dir / CHECKPOINT_NAME).stat().st_size > 2 * _SYNC_EVERY  # crosses several sync steps
        scanned = tmp_path / "scanned"
        shutil.copytree(store_dir, scanned)
        (scanned / CHECKPOINT_NAME).unlink()
        async with _Store(scanned, checkpoint_every=0) as store:
            expected = await recovered(store)
        async with _Store(store_dir, checkpoint_every=0) as store:
            assert store.health().details["checkpoint"]["loaded_rows"] == 80_000 and store.indexed_frames == 0
            assert await recovered(store) == expected

    run(scenario(), timeout=120)


def test_the_writes_held_for_the_next_checkpoint_count_as_index_bytes_until_adopted() -> None:
    """16 bytes per aggregate written per group, held until a checkpoint folds them: index memory that grows
    with the writes, so the store's index_bytes (what a soak's leak verdict takes out of RSS) counts it."""
    versions = AggregateVersions({}.get, lambda aggregate: None)
    empty = versions.nbytes()
    for group in range(1000):
        versions.update({f"agg-{group % 7}": (group, group + 1), f"other-{group % 3}": (group, group + 2)})
    assert versions.nbytes() == empty + 2000 * 16
    handed = versions.take_recent()
    versions.set("late", 1, 5000)
    assert versions.nbytes() == empty + 2001 * 16  # the hand-over is still held while its checkpoint runs
    folded = _with_recent(versions.base, handed)
    assert versions.adopt(folded, handed)
    assert versions.nbytes() == folded.nbytes() + 16
