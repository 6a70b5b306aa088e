"""A replaced checkpoint is kept and the next one is written over it: no checkpoint's blocks are freed at once.

Freeing a checkpoint of hundreds of megabytes held the appenders' syncs for a second on ext4 with
``discard`` (see ``lighthouse.checkpoint``). These tests follow the files by inode: the replaced
checkpoint survives as the temp name and the checkpoint after next is written into that same file;
a file the store's index is still mapped from, or that is not the one the store kept, is never
written over; leftovers of a crash in between do not stop the next checkpoint; and where the
filesystem cannot link, a checkpoint is written as before.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from lighthouse import EventStore
from lighthouse.checkpoint import (
    _REPLACED_NAME,
    CHECKPOINT_NAME,
    NEXT_CHECKPOINT_NAME,
    load_checkpoint,
    write_checkpoint,
)
from suites.unit.lighthouse.checkpoint_copies import in_memory

pytestmark = pytest.mark.ci

BATCH = 100


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


async def _checkpointed_batch(store: EventStore, make_event, start: int) -> None:
    """Append one batch that triggers a checkpoint (``checkpoint_every=BATCH``) and wait until it is written."""
    written = int(store.health().details["checkpoint"].get("written", 0))
    await store.append_batch([make_event(n) for n in range(start, start + BATCH)])
    assert store._checkpoint_task is not None
    await asyncio.wait([store._checkpoint_task])
    assert store.health().details["checkpoint"]["written"] == written + 1


def _loaded_rows(path: Path) -> int:
    checkpoint = load_checkpoint(path)
    try:
        return checkpoint.rows
    finally:
        del checkpoint.columns, checkpoint.ids, checkpoint.versions
        assert checkpoint.mapping is not None and checkpoint.mapping.close()


def test_the_checkpoint_after_next_is_written_over_the_replaced_one(store_dir: Path, run, make_event) -> None:
    final, kept = store_dir / CHECKPOINT_NAME, store_dir / NEXT_CHECKPOINT_NAME

    async def scenario() -> list[tuple[int | None, int | None, int]]:
        seen = []
        async with EventStore(store_dir, checkpoint_every=BATCH) as store:
            for number in range(4):
                await _checkpointed_batch(store, make_event, number * BATCH)
                seen.append((_inode(final), _inode(kept), _loaded_rows(store_dir)))
        return seen

    seen = run(scenario())
    (first, none, rows1), (second, kept2, rows2), (third, kept3, rows3), (fourth, kept4, rows4) = seen
    assert none is None and [rows1, rows2, rows3, rows4] == [100, 200, 300, 400]
    assert kept2 == first, "the replaced checkpoint stays, under the temp name"
    assert third == first and kept3 == second, "the third is written into the first one's file"
    assert fourth == second and kept4 == first
    assert not (store_dir / _REPLACED_NAME).exists()

    async def reopen() -> tuple[int, int]:
        async with EventStore(store_dir) as store:
            return store.health().details["checkpoint"]["loaded_rows"], (await store.get(400)).sequence

    assert run(reopen()) == (400, 400)


def test_the_file_the_index_is_mapped_from_is_never_written_over(store_dir: Path, run, make_event) -> None:
    async def fill() -> None:
        async with EventStore(store_dir, checkpoint_every=0) as store:
            await store.append_batch([make_event(n) for n in range(500)])

    run(fill())
    mapped = _inode(store_dir / CHECKPOINT_NAME)
    ids = {}

    async def scenario() -> list[tuple[int | None, int | None]]:
        seen = []
        async with EventStore(store_dir, checkpoint_every=BATCH) as store:
            assert store.health().details["checkpoint"]["loaded_rows"] == 500
            ids.update({n: (await store.get(n)).event_id for n in (1, 250, 500)})
            for number in range(3):
                await _checkpointed_batch(store, make_event, 500 + number * BATCH)
                seen.append((_inode(store_dir / CHECKPOINT_NAME), _inode(store_dir / NEXT_CHECKPOINT_NAME)))
                assert {n: (await store.get(n)).event_id for n in ids} == ids  # read through the mapped columns
        return seen

    (first, kept1), (second, kept2), (third, kept3) = run(scenario())
    assert kept1 == mapped, "the mapped file is kept aside like any replaced checkpoint"
    assert mapped not in (second, kept2, third, kept3), "but never written over: a new file takes its place"
    assert third == kept2 == first, "a file the store wrote itself is reused"


def test_a_file_put_at_the_temp_name_by_someone_else_is_not_written_over(store_dir: Path, run, make_event) -> None:
    stranger = store_dir.parent / "stranger"

    async def scenario() -> tuple[int | None, int | None]:
        async with EventStore(store_dir, checkpoint_every=BATCH) as store:
            await _checkpointed_batch(store, make_event, 0)
            await _checkpointed_batch(store, make_event, BATCH)
            reusable = store._reusable_checkpoint
            assert reusable is not None
            kept = store_dir / NEXT_CHECKPOINT_NAME
            kept.unlink()
            stranger.write_bytes(b"not yours")
            os.link(stranger, kept)
            await _checkpointed_batch(store, make_event, 2 * BATCH)
            return reusable[1], _inode(store_dir / CHECKPOINT_NAME)

    reusable, written = run(scenario())
    assert stranger.read_bytes() == b"not yours"
    assert written not in (reusable, _inode(stranger))
    assert _loaded_rows(store_dir) == 3 * BATCH


def test_leftovers_of_a_crash_between_the_renames_do_not_stop_the_next_checkpoint(
    store_dir: Path, run, make_event
) -> None:
    async def first() -> None:
        async with EventStore(store_dir, checkpoint_every=0) as store:
            await store.append_batch([make_event(n) for n in range(BATCH)])

    run(first())
    # the crash left the checkpoint before under the transient name and a half-written temp file
    (store_dir / _REPLACED_NAME).write_bytes(b"the checkpoint before")
    (store_dir / NEXT_CHECKPOINT_NAME).write_bytes(b"half written")

    async def scenario() -> None:
        async with EventStore(store_dir, checkpoint_every=BATCH) as store:
            assert store.health().details["checkpoint"]["loaded_rows"] == BATCH
            await _checkpointed_batch(store, make_event, BATCH)

    run(scenario())
    assert not (store_dir / _REPLACED_NAME).exists()
    assert _loaded_rows(store_dir) == 2 * BATCH


def test_without_hard_links_the_replaced_checkpoint_is_deleted_as_before(
    store_dir: Path, run, make_event, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, target: object) -> None:  # a filesystem without hard links (vfat, some FUSE)
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)

    async def scenario() -> None:
        async with EventStore(store_dir, checkpoint_every=BATCH) as store:
            for number in range(3):
                await _checkpointed_batch(store, make_event, number * BATCH)
                assert store._reusable_checkpoint is None

    run(scenario())
    assert not (store_dir / NEXT_CHECKPOINT_NAME).exists()
    assert _loaded_rows(store_dir) == 3 * BATCH


def test_a_shorter_checkpoint_written_over_a_longer_one_loads(tmp_path: Path, run, make_event) -> None:
    checkpoints = {}
    for events in (1000, 10):
        source = tmp_path / f"store-{events}"

        async def fill() -> None:
            async with EventStore(source, checkpoint_every=0) as store:
                await store.append_batch([make_event(n) for n in range(events)])

        run(fill())
        checkpoints[events] = in_memory(source)
    target = tmp_path / "target"
    target.mkdir()
    assert write_checkpoint(target, checkpoints[1000]) is None
    reusable = write_checkpoint(target, checkpoints[1000])
    longer = (target / NEXT_CHECKPOINT_NAME).stat().st_size
    write_checkpoint(target, checkpoints[10], reuse=reusable)
    assert (target / CHECKPOINT_NAME).stat().st_ino == reusable[1], "written over the longer file"
    assert (target / CHECKPOINT_NAME).stat().st_size < longer
    assert _loaded_rows(target) == 10
