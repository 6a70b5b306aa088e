"""A snapshot client for crash tests: saves projection snapshots (full and incremental) while agents append.

Runs inside a workload worker (``WorkloadSpec.snapshot_every_s``) next to the appending clients: every
period it replays the store, projects the events into a per-aggregate state, and saves it as a
snapshot at the highest sequence it saw, two incremental saves for each full one. Each save is
journalled as invoke -> ok / fail (an invoke without an outcome was cut short by a crash: unknown),
with the state's digest, one ``os.write`` per line so the journal survives the worker's SIGKILL.

The store must offer the optional snapshot methods of :class:`~testkit.adapters.base.SnapshotCapable`.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from testkit.adapters.base import AdapterError
from testkit.checkers.snapshots import SnapshotSave, project, state_digest

__all__ = ["SNAPSHOT_NAME", "load_snapshot_journal", "run_snapshot_client"]

SNAPSHOT_NAME = "aggregates"
_JOURNAL = "snapshots-{:05d}.jsonl"
#: One full snapshot, then this many incremental ones on top of it.
INCREMENTALS_PER_FULL = 2


def _append_line(fd: int, record: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(record) + "\n").encode())


async def run_snapshot_client(adapter: Any, journal_dir: str, incarnation: int, every_s: float,
                              stop: asyncio.Event) -> None:
    """Save a snapshot every ``every_s`` seconds until ``stop`` is set (or the worker dies)."""
    fd = os.open(Path(journal_dir) / _JOURNAL.format(incarnation), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        number = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every_s)
                return
            except TimeoutError:
                pass
            try:
                events = [event async for event in adapter.read_all()]
            except AdapterError:
                continue  # a store that cannot replay right now: try again next period
            if not events:
                continue
            at = max(event.sequence for event in events)
            state = project(events)
            incremental = number % (INCREMENTALS_PER_FULL + 1) != 0
            record = {"n": number, "at": at, "digest": state_digest(state), "incremental": incremental}
            _append_line(fd, {**record, "phase": "invoke"})
            try:
                await adapter.save_snapshot(SNAPSHOT_NAME, state, at, incremental=incremental)
            except AdapterError as exc:
                _append_line(fd, {**record, "phase": "fail", "error": exc.code})
            else:
                _append_line(fd, {**record, "phase": "ok"})
            number += 1
    finally:
        os.close(fd)


def load_snapshot_journal(journal_dir: str | os.PathLike[str]) -> list[SnapshotSave]:
    """Every journalled save of every incarnation, in order; a torn last line (a kill mid-write) is dropped."""
    saves: list[SnapshotSave] = []
    for path in sorted(Path(journal_dir).glob("snapshots-*.jsonl")):
        incarnation = int(path.stem.split("-")[1])
        invoked: dict[int, dict[str, Any]] = {}
        outcomes: dict[int, str] = {}
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record["phase"] == "invoke":
                invoked[record["n"]] = record
            else:
                outcomes[record["n"]] = record["phase"]
        for number, record in sorted(invoked.items()):
            saves.append(SnapshotSave(incarnation, number, record["at"], record["digest"], record["incremental"],
                                      outcomes.get(number, "unknown")))
    return saves
