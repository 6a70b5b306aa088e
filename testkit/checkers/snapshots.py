"""The snapshot checker: after a crash, is the loaded snapshot one a client saved, and does it agree with the log?

Rules, for a store that acknowledges a save only once it is durable (temp file, fsync, rename,
directory fsync):

* the loaded snapshot is the last acknowledged save or a later one whose outcome is unknown (cut short
  by the crash), never an older one: an acknowledged save cannot be lost;
* its state is exactly a state some save wrote (same sequence, same digest): never torn, never a mix
  of two saves, never a save the store refused;
* it agrees with the recovered log: the projection of the events up to its sequence is its state, and
  the snapshot plus the events after it gives exactly what a full replay gives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from testkit.adapters.base import StoredEvent

__all__ = ["SnapshotSave", "check_snapshot", "project", "state_digest"]


def project(events: Iterable[StoredEvent], state: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
    """The projection under test: per aggregate, [events seen, last sequence, digest of the last event]."""
    out = {key: list(value) for key, value in (state or {}).items()}
    for event in events:
        count = out.get(event.aggregate_id, [0, 0, ""])[0]
        out[event.aggregate_id] = [count + 1, event.sequence, event.digest()]
    return out


def state_digest(state: Any) -> str:
    """A stable digest of a snapshot state (keys sorted), to tell a saved state from a torn or mixed one."""
    canonical = msgpack.packb(sorted((str(k), v) for k, v in state.items()), use_bin_type=True)
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class SnapshotSave:
    """One journalled save: its outcome is ``ok``, ``fail`` or ``unknown`` (cut short by a crash)."""

    incarnation: int
    number: int
    at_sequence: int
    digest: str
    incremental: bool
    outcome: str



def check_snapshot(saves: Sequence[SnapshotSave], loaded: tuple[int, Any] | None,
                   events: Sequence[StoredEvent]) -> list[str]:
    """Every broken rule, as a sentence naming the sequences involved (empty: the snapshot is right)."""
    acked = [s for s in saves if s.outcome == "ok"]
    if loaded is None:
        return [f"no snapshot loads, yet {len(acked)} saves were acknowledged (last at "
                f"{acked[-1].at_sequence})"] if acked else []
    at, state = loaded
    problems: list[str] = []
    digest = state_digest(state)
    written = [s for s in saves if s.at_sequence == at and s.digest == digest]
    if not written:
        problems.append(f"the snapshot at {at} holds a state no save wrote (torn or mixed)")
    elif all(s.outcome == "fail" for s in written):
        problems.append(f"the snapshot at {at} is one the store refused to save")
    newest_acked = max((s.at_sequence for s in acked), default=0)
    if at < newest_acked:
        problems.append(f"the snapshot at {at} is older than the last acknowledged save (at {newest_acked})")
    upto = [e for e in events if e.sequence <= at]
    after = [e for e in events if e.sequence > at]
    if project(upto) != state:
        problems.append(f"the snapshot at {at} disagrees with the log's first {len(upto)} events")
    if project(after, state) != project(events):
        problems.append(f"the snapshot at {at} plus the {len(after)} events after it differs from a full replay")
    return problems
