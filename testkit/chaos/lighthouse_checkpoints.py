"""Lighthouse index checkpoints under SIGKILL: recovery from a checkpoint + tail must equal a full scan.

:func:`recovered_state` is everything recovery rebuilds, in comparable form (two opens of the same
log must give equal states); the unit property tests use it too. :func:`run_checkpoint_kills` is the
campaign: a child (:func:`append_until_killed`, importable by its absolute name in a fresh
interpreter) appends with a checkpoint every few dozen events and is SIGKILLed at a random moment
after it wrote its first checkpoint (awaited, so a slow start on a loaded machine cannot leave a round
with nothing to compare), possibly while writing a checkpoint or a group; the log is then opened
twice, with the checkpoint it left and without any, and both must rebuild the same index, ids,
versions, voids and damage record.
The next round's child continues the same log (recovering through its checkpoint). Format-aware:
it reads the store's internals, so it imports lighthouse (never at ``testkit.chaos`` import time).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lighthouse import Event, EventStore, EventType
from lighthouse.checkpoint import CHECKPOINT_NAME
from testkit.aio import run_with_deadline
from testkit.chaos.result import ChaosFailure
from testkit.faults.process import ChildProcess, kill_at_random

__all__ = ["CheckpointKills", "CountingStore", "append_until_killed", "recovered_state", "run_checkpoint_kills"]

KILL_WINDOW_S = (0.0, 1.5)  # after the round's first checkpoint of its own, however slowly python started: the
# kill may land in a group or a later checkpoint; each round of appends grows the states two recoveries compare
CHECKPOINT_DEADLINE_S = 60.0  # for that first checkpoint: generous enough for a fresh interpreter at load 8
ROUNDS_PER_LOG = 10


async def recovered_state(store: EventStore) -> dict[str, Any]:
    """Everything recovery rebuilds, in comparable form: two opens of the same log must give equal states."""
    events = [event async for event in store.replay()]
    columns, _ids = store._index.export()
    health = store.health()
    return {
        "events": events,
        "columns": {name: [value for part in parts for value in part.tolist()] for name, parts in columns.items()},
        "ids": {e.event_id: sorted(store._index.sequences_for_id(e.event_id)) for e in events},
        "versions": {a: store._versions.get(a) for a in sorted({e.aggregate_id for e in events})},
        "head": store.head_sequence,
        "next_sequence": store._next_seq,
        "voided": health.voided_sequences,
        "lost": health.lost_sequences,
        "damage": [d for d in health.damage if d["kind"] != "torn_tail"],
        "quarantined_bytes": store.stats().quarantined_bytes,
        "segments": [(s.path.name, s.size) for s in store._segments],
        "last_recorded_at": store._last_recorded_at,
        "last_frame": store._last_frame,
    }


class CountingStore(EventStore):
    """The real store, counting the frames recovery decoded (what a checkpoint saves it from reading)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.indexed_frames = 0

    def _index_frames(self, segment: Any, fd: int, frames: list[tuple[int, Any]]) -> None:
        self.indexed_frames += len(frames)
        super()._index_frames(segment, fd, frames)


def append_until_killed(path: str, checkpoint_every: int, segment_bytes: int, seed: int) -> None:
    """Child: append forever (random batch sizes and bursts of concurrent single appends)."""

    async def main() -> None:
        rng = random.Random(seed)
        store = await EventStore.open(path, checkpoint_every=checkpoint_every, segment_bytes=segment_bytes)
        n = store.head_sequence

        def event() -> Event:
            nonlocal n
            n += 1
            return Event(EventType.CUSTOM, aggregate_id=f"agg:{rng.randrange(40)}", source_agent=f"agent-{n % 5}",
                         data={"n": n, "pad": "x" * rng.randrange(200)})

        while True:
            if rng.random() < 0.5:
                await store.append_batch([event() for _ in range(rng.randint(1, 60))])
            else:
                await asyncio.gather(*(store.append(event()) for _ in range(rng.randint(1, 8))))

    asyncio.run(main())


def _checkpoint_identity(log: Path) -> tuple[int, int] | None:
    """(inode, mtime) of the log's checkpoint: a checkpoint replaces the file by rename, so both change."""
    try:
        stat = (log / CHECKPOINT_NAME).stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _await_own_checkpoint(child: ChildProcess, log: Path, inherited: tuple[int, int] | None) -> bool:
    """Poll until ``child`` has written a checkpoint (one other than ``inherited``); False if it exited first
    or none came within CHECKPOINT_DEADLINE_S."""
    deadline = time.monotonic() + CHECKPOINT_DEADLINE_S
    while child.poll() is None and time.monotonic() < deadline:
        current = _checkpoint_identity(log)
        if current is not None and current != inherited:
            return True
        time.sleep(0.01)
    return False


@dataclass(frozen=True, slots=True)
class CheckpointKills:
    """Rounds run, rounds that left a checkpoint to compare, and rounds recovered from a checkpoint + a tail."""

    rounds: int
    compared: int
    with_tail: int


async def _open_state(path: Path) -> tuple[dict[str, Any], dict[str, Any], int]:
    async with CountingStore(path, checkpoint_every=0) as store:
        return await recovered_state(store), dict(store.health().details["checkpoint"]), store.indexed_frames


def run_checkpoint_kills(root: Path, rounds: int, rng: random.Random) -> CheckpointKills:
    """``rounds`` SIGKILLs of a checkpointing writer on a log under ``root`` (a fresh one every
    ``ROUNDS_PER_LOG`` rounds); after each, checkpoint + tail must equal a full scan (:class:`ChaosFailure`
    otherwise, also when no kill is proven or no round recovered from a checkpoint plus a tail: then the
    campaign proved nothing)."""
    compared = with_tail = 0

    def copy(name: str) -> Path:
        return Path(shutil.copytree(log, root / name, ignore=shutil.ignore_patterns("LOCK")))

    for round_ in range(rounds):
        # A fresh log every ROUNDS_PER_LOG rounds: comparing two whole recovered states costs as much as the log
        # holds, and one ever-growing log made every round dearer than the last (30 rounds: 215-256 s).
        log = root / f"log-{round_ // ROUNDS_PER_LOG}"
        args = (str(log), rng.randint(10, 150), rng.choice([8192, 65536, 1 << 20]), rng.randrange(1 << 30))
        inherited = _checkpoint_identity(log)
        with ChildProcess.python(append_until_killed, args) as child:
            if not _await_own_checkpoint(child, log, inherited) and child.poll() is None:
                raise ChaosFailure(f"round {round_}: no checkpoint within {CHECKPOINT_DEADLINE_S} s\n"
                                   f"{child.stderr_text()}")
            kill = kill_at_random(child, rng, KILL_WINDOW_S)
            if not kill.proven:
                raise ChaosFailure(f"round {round_}: {kill.detail}\n{child.stderr_text()}\n{child.outcome(5)}")
        full = copy(f"full-{round_}")
        (full / CHECKPOINT_NAME).unlink()
        expected, _, _ = run_with_deadline(_open_state(full), 120)
        state, report, indexed_frames = run_with_deadline(_open_state(copy(f"ckpt-{round_}")), 120)
        if state != expected:
            raise ChaosFailure(f"round {round_}: checkpoint + tail recovered a different state ({report})")
        for judged in (full, root / f"ckpt-{round_}"):
            shutil.rmtree(judged)
        compared += 1
        if report.get("loaded_rows") and indexed_frames:
            with_tail += 1
    if not with_tail:
        raise ChaosFailure(f"no round of {rounds} recovered from a checkpoint plus a tail: the campaign proved nothing")
    return CheckpointKills(rounds, compared, with_tail)
