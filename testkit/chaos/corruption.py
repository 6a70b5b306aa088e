"""Corruption without knowing the format: damage the files of any store's data directory, then read it back.

A store is filled with acknowledged agent traffic and closed cleanly; each case damages a fresh copy of
its data directory with one seeded change to one of its files (a bit flip, a zeroed range, a
truncation, appended bytes), proven by the changed bytes. The invariant is *no silently wrong read*:
every event the store serves afterwards is exactly one it acknowledged (same id, same sequence, same
content), or the store refuses with a typed error, or it reports the damage (``health()``). Events that
merely go missing without a report are counted (``silent_drops``) and, with ``strict_loss``, fail:
a store without checksums cannot know, one with them should say. Each read-back runs in a child
process: a store that dies on damaged bytes (LMDB maps its file, and a truncated map is SIGBUS) is a
crash to report, never the end of the test run. Lighthouse adds its format-aware oracle
(:mod:`testkit.chaos.lighthouse_oracle`) on top.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.adapters import AdapterError, AdapterSpec, StoredEvent
from testkit.chaos.appender import Appender
from testkit.chaos.judging import Tally
from testkit.chaos.preload import modules_of
from testkit.chaos.reader_process import ReaderDied, ReaderProcess
from testkit.chaos.result import CampaignResult
from testkit.checkers.history import History
from testkit.faults.corruption import append_garbage, flip_bit, truncate_to, zero_range
from testkit.faults.records import FaultRecord

__all__ = ["FAULT_KIND", "DAMAGE_KINDS", "AcknowledgedStore", "FileDamage", "build_acknowledged_store",
           "plan_file_damage", "run_generic_corruption"]

FAULT_KIND = "corruption[generic]"
DAMAGE_KINDS = ("bit_flip", "zero_range", "truncate", "append")
INVARIANTS = ("no_phantom", "typed_errors", "no_lost_ack")


@dataclass(frozen=True)
class AcknowledgedStore:
    """A cleanly closed data directory and every event the store acknowledged into it, by id."""

    directory: Path
    acknowledged: dict[str, StoredEvent]
    #: The writes that filled it, for the campaign's picture.
    history: History | None = None
    #: Files (relative paths) whose size changed while the events were appended: where the store keeps them.
    grown: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileDamage:
    """One seeded change to one file (``path`` relative to the data directory)."""

    kind: str
    path: str
    offset: int
    length: int
    seed: int

    def apply(self, directory: Path) -> FaultRecord:
        target = directory / self.path
        if self.kind == "bit_flip":
            return flip_bit(target, self.offset, self.seed % 8)
        if self.kind == "zero_range":
            return zero_range(target, self.offset, self.length)
        if self.kind == "truncate":
            return truncate_to(target, self.offset)
        return append_garbage(target, self.length, random.Random(self.seed))

    def __str__(self) -> str:
        return f"{self.kind} {self.path}@{self.offset}+{self.length}"


def _sizes(directory: Path) -> dict[str, int]:
    """File sizes under a live store's directory (a file it renames or removes meanwhile is left out)."""
    sizes = {}
    for path in directory.rglob("*"):
        try:
            if path.is_file():
                sizes[path.relative_to(directory).as_posix()] = path.stat().st_size
        except FileNotFoundError:
            continue
    return sizes


async def _fill(adapter: AdapterSpec, directory: Path, seed: int, operations: int) -> AcknowledgedStore:
    store = adapter.create(directory)
    await store.open()
    try:
        opened = _sizes(directory)
        appender = Appender(store, seed=seed, payload_max_bytes=1024)
        await appender.append(operations)
        grown = tuple(sorted(path for path, size in _sizes(directory).items() if opened.get(path) != size))
        acknowledged = appender.acknowledged_ids()
        events = {e.event_id: e for e in await appender.read_all() if e.event_id in acknowledged}
        return AcknowledgedStore(directory, events, appender.history, grown)
    finally:
        await store.close()


def build_acknowledged_store(adapter: AdapterSpec, directory: Path, *, seed: int, operations: int = 60
                             ) -> AcknowledgedStore:
    """Append ``operations`` writes (singles and batches), close, and keep what was acknowledged and read back."""
    return asyncio.run(_fill(adapter, directory, seed, operations))


def plan_file_damage(directory: Path, rng: random.Random, cases: int, *, grown: tuple[str, ...] = ()
                     ) -> list[FileDamage]:
    """``cases`` seeded damages spread over the non-empty files of ``directory`` (weighted by nothing: any file).

    ``grown``: files the events went into; half the damages land there. A server's cluster holds a thousand
    files besides its data (PostgreSQL: 60 damages over all of them hit the events table about once)."""
    files = sorted((p.relative_to(directory).as_posix(), p.stat().st_size)
                   for p in directory.rglob("*") if p.is_file() and p.stat().st_size > 0)
    if not files:
        raise ValueError(f"{directory} holds no non-empty file to damage")
    data = [(path, size) for path, size in files if path in set(grown)]
    plan = []
    for _ in range(cases):
        path, size = rng.choice(data if data and rng.random() < 0.5 else files)
        kind = rng.choice(DAMAGE_KINDS)
        offset = rng.randrange(size)
        length = min(rng.randint(1, 64), size - offset)
        plan.append(FileDamage(kind, path, offset, length if kind != "append" else rng.randint(1, 256),
                               rng.getrandbits(32)))
    return plan


def _same(a: StoredEvent, b: StoredEvent) -> bool:
    return (a.sequence, a.digest(), a.source_agent, a.correlation_id, a.causation_id) == (
        b.sequence, b.digest(), b.source_agent, b.correlation_id, b.causation_id)


async def _read_back(adapter: AdapterSpec, directory: Path) -> tuple[list[StoredEvent], dict[str, Any] | None]:
    store = adapter.create(directory)
    await store.open()
    try:
        events = [event async for event in store.read_all()]
        health = getattr(store, "health", None)
        return events, (health() if callable(health) else None)
    finally:
        await store.close()


def _read_back_here(adapter: AdapterSpec, directory: Path) -> tuple[list[StoredEvent], dict[str, Any] | None]:
    return asyncio.run(_read_back(adapter, directory))


def _declared(health: dict[str, Any] | None) -> bool:
    return bool(health and (health.get("lost_sequences") or health.get("damage")))


def run_generic_corruption(adapter: AdapterSpec, root: Path, rng: random.Random, seed: int, cases: int, *,
                           strict_loss: bool = False, operations: int = 60, min_catches: int = 0) -> CampaignResult:
    """Damage copies of a filled store's directory ``cases`` times; judge every read-back (see the module doc).

    ``min_catches``: for a configuration expected to serve damage, go on (up to three times ``cases``) until
    that many damages were caught (PostgreSQL without data checksums serves a wrong event in about 3 in 100)."""
    result = CampaignResult(Tally(FAULT_KIND, adapter.name))
    pristine = build_acknowledged_store(adapter, root / "pristine", seed=seed, operations=operations)
    result.timeline.history = pristine.history  # the picture: the writes, then every damaged copy read back
    counts = {"refused": 0, "reported": 0, "intact": 0, "silent_drops": 0, "crashed": 0, "unchanged": 0}
    with ReaderProcess(modules_of(adapter)) as reader:
        if not _copy_reads_back(result, reader, adapter, pristine, root):
            return result
        # Zeroing bytes that are already zero changes nothing (page stores are full of padding): such a case
        # proves no fault and is drawn again, up to three plans' worth, until ``cases`` damages changed bytes.
        plan = plan_file_damage(pristine.directory, rng, (9 if min_catches else 3) * cases, grown=pristine.grown)
        for number, damage in enumerate(plan):
            if result.tally.cases >= cases and (result.catches >= min_catches or result.tally.cases >= 3 * cases):
                break
            _judge_case(result, counts, reader, adapter, pristine, root, number, damage, strict_loss)
    result.parameters.update(generic_corruption=counts)
    return result


def _copy_reads_back(result: CampaignResult, reader: ReaderProcess, adapter: AdapterSpec,
                     pristine: AcknowledgedStore, root: Path) -> bool:
    """The control case: an undamaged copy must read back exactly as acknowledged, or every refusal of a
    damaged one means nothing (a server that refuses a data directory copied by another account)."""
    copy = root / "case"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(pristine.directory, copy)
    try:
        events, _ = reader.call(_read_back_here, adapter, copy)
    except Exception as exc:  # noqa: BLE001 - whatever it was, nothing damaged can be judged against this copy
        result.problem(f"an undamaged copy of the store does not read back ({type(exc).__name__}: "
                       f"{str(exc)[:300]}): damaged copies cannot be judged", "recovers")
        return False
    if sorted(e.event_id for e in events) != sorted(pristine.acknowledged):
        result.problem(f"an undamaged copy served {len(events)} events, not the {len(pristine.acknowledged)} "
                       "acknowledged: damaged copies cannot be judged", "recovers")
        return False
    return True


def _judge_case(result: CampaignResult, counts: dict[str, int], reader: ReaderProcess, adapter: AdapterSpec,
                pristine: AcknowledgedStore, root: Path, number: int, damage: FileDamage, strict_loss: bool) -> None:
    """Damage a fresh copy, read it back in the child, judge."""
    copy = root / "case"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(pristine.directory, copy)
    record = damage.apply(copy)
    if not record.proven:
        counts["unchanged"] += 1
        return
    result.tally.case(True)
    result.tally.judged_ok(*INVARIANTS)
    result.timeline.fault(record, damage.kind)
    started = time.monotonic()
    try:
        events, health = reader.call(_read_back_here, adapter, copy)
    except AdapterError:
        counts["refused"] += 1
        result.caught.append(False)
        return
    except ReaderDied as death:  # the store killed its process (a signal): no wrong read, but no typed refusal
        counts["crashed"] += 1
        result.problem(f"case {number} ({damage}): reading the damaged store crashed its process ({death})",
                       "typed_errors")
        result.caught.append(True)
        return
    except Exception as exc:  # a refusal, but not a typed one: the store's error handling leaked
        result.problem(f"case {number} ({damage}): untyped {type(exc).__name__}: {str(exc)[:160]}", "typed_errors")
        result.caught.append(True)
        return
    wrong = [e.event_id for e in events
             if e.event_id not in pristine.acknowledged or not _same(e, pristine.acknowledged[e.event_id])]
    missing = set(pristine.acknowledged) - {e.event_id for e in events}
    intact = len({e.event_id for e in events}.difference(wrong))  # served exactly as acknowledged
    result.timeline.read_back(started, time.monotonic() - started, len(pristine.acknowledged), intact)
    broke = False
    if wrong:
        result.problem(f"case {number} ({damage}): served {len(wrong)} events never acknowledged so, "
                       f"e.g. {wrong[:3]}", "no_phantom")
        broke = True
    if missing and not _declared(health):
        counts["silent_drops"] += 1
        if strict_loss:
            result.problem(f"case {number} ({damage}): {len(missing)} acknowledged events gone, "
                           "no damage reported", "no_lost_ack")
            broke = True
    counts["reported" if _declared(health) else "intact"] += 1
    result.caught.append(broke)
