"""What a correct store must do about each damaged byte range of a lighthouse log, and the judge of one case.

The oracle knows the ground truth (the pristine log's frames and every acknowledged event) and says,
for one corruption case: which events may be lost and which must survive, and whether the store must
report mid-log corruption (a bad range with good data after it, or any damage to a closed segment) or
may treat the damage as a torn tail (only the last segment's last frames, nothing intact after them).
Then it judges the recovered store against that: no silently wrong read, no silently dropped good
data, every loss declared, the damage reported, and the store still appends afterwards.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.adapters import AdapterSpec, StoredEvent
from testkit.chaos.judging import Tally, is_store_generated
from testkit.chaos.lighthouse_log import SEGMENT_HEADER_BYTES, PristineLog, build_pristine_log
from testkit.chaos.result import CampaignResult
from testkit.faults.corruption import CorruptionCase, CorruptionKind, CorruptionPlan
from testkit.faults.records import FaultRecord

__all__ = ["FAULT_KIND", "CaseOutcome", "Expectation", "expect", "judge_case", "plan_cases", "run_cases",
           "run_format_aware_corruption"]

FAULT_KIND = "corruption"
ORACLE_INVARIANTS = ("no_lost_ack", "no_duplicate", "order", "no_phantom", "prefix_no_holes",
                     "corruption_detected", "recovers")

#: Segment header bytes the format protects: magic, version, reserved, first sequence (CRC-covered) and the CRC.
#: The last four are padding no reader looks at, so a flip there changes nothing a store could report.
SEGMENT_HEADER_CHECKED_BYTES = SEGMENT_HEADER_BYTES - 4


@dataclass(frozen=True)
class Expectation:
    may_lose: frozenset[int]  # sequences of damaged frames (or of a torn tail)
    tail: bool  # damage a crash could have left: may be truncated, reported as a torn tail
    report_mid_log: bool  # must be reported as corruption (verify exits 1)
    report_tail: bool  # must at least be reported as a torn tail


def expect(log: PristineLog, segment_index: int, case: CorruptionCase) -> Expectation:
    segment = log.segments[segment_index]
    last_segment = segment_index == len(log.segments) - 1
    kind = case.kind
    if kind is CorruptionKind.GARBAGE_TAIL:
        return Expectation(frozenset(), last_segment, not last_segment, last_segment)
    if kind is CorruptionKind.DUPLICATE_RANGE:  # a whole valid frame repeated: report it, lose nothing
        return Expectation(frozenset(), False, True, False)
    if kind in (CorruptionKind.TRUNCATE, CorruptionKind.TORN_TAIL):
        low, high = case.offset, segment.size
    else:
        low, high = case.offset, case.offset + max(case.length, 1)
    damaged = [i for i, f in enumerate(segment.frames) if f.start < high and low < f.end]
    header = low < SEGMENT_HEADER_CHECKED_BYTES
    cut = kind in (CorruptionKind.TRUNCATE, CorruptionKind.TORN_TAIL) and not case.zero_fill
    tail = last_segment and not header and bool(damaged) and (cut or damaged[0] == len(segment.frames) - 1)
    lose = {seq for i in damaged for seq in segment.frames[i].sequences}
    if tail:
        lose |= {seq for frame in segment.frames[damaged[0]:] for seq in frame.sequences}
    at_boundary = cut and any(f.start == case.offset for f in segment.frames)
    return Expectation(frozenset(lose), tail, not tail and (bool(damaged) or header), tail and not at_boundary)


@dataclass
class CaseOutcome:
    broken: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: The damage as injected, and the recovery that followed (monotonic start, seconds, events intact), for
    #: the campaign's picture.
    record: FaultRecord | None = None
    read_back: tuple[float, float, int] | None = None

    def violate(self, invariant: str, problem: str) -> None:
        self.broken[invariant] = self.broken.get(invariant, 0) + 1
        self.problems.append(f"{invariant}: {problem}")

    @property
    def ok(self) -> bool:
        return not self.broken


def verify_exit_code(directory: Path) -> int:
    """The exit code ``lighthouse verify DIR`` gives (0 intact, 1 damaged), from the function it runs.

    In-process: a subprocess per case would cost 0.3 s; one test runs the real command end to end.
    The one place the kit reads lighthouse's own code, imported here so the kit installs without it.
    """
    from lighthouse.maintenance import verify_directory

    return 0 if verify_directory(directory).intact else 1


def _same(a: StoredEvent, b: StoredEvent) -> bool:
    """Field by field; a store that serves damaged bytes may hand back any type in any field (data as an int),
    which is simply not the same event."""
    return (a.event_id, a.sequence, a.event_type, a.aggregate_id, a.source_agent, _plain(a.data), a.correlation_id,
            a.causation_id) == (b.event_id, b.sequence, b.event_type, b.aggregate_id, b.source_agent, _plain(b.data),
                                b.correlation_id, b.causation_id)


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


async def _recover_and_append(adapter: AdapterSpec, directory: Path, spare: dict[str, Any]) -> tuple[list[StoredEvent], dict[str, Any], StoredEvent, list[StoredEvent]]:
    store = adapter.create(directory)
    await store.open()
    try:
        recovered = [e async for e in store.read_all()]
        health = store.health()  # type: ignore[attr-defined]
        appended = await store.append(spare)
    finally:
        await store.close()
    store = adapter.create(directory)
    await store.open()
    try:
        reopened = [e async for e in store.read_all()]
    finally:
        await store.close()
    return recovered, health, appended, reopened


def judge_case(log: PristineLog, segment_index: int, case: CorruptionCase, workdir: Path, adapter: AdapterSpec,
               *, check_verify: bool = True) -> tuple[bool, CaseOutcome]:
    """Copy the pristine log, damage it, verify, recover, judge. Returns (fault proven, outcome)."""
    directory = workdir / "case"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(log.directory, directory)
    record = case.apply(directory / log.segments[segment_index].name)
    outcome = CaseOutcome(record=record)
    if not record.proven:
        return False, outcome
    expectation = expect(log, segment_index, case)
    if check_verify:
        code = verify_exit_code(directory)
        wanted = 1 if expectation.report_mid_log else 0
        if code != wanted:
            outcome.violate("corruption_detected", f"`lighthouse verify` exited {code}, expected {wanted}")
    started = time.monotonic()
    try:
        recovered, health, appended, reopened = asyncio.run(_recover_and_append(adapter, directory, log.spare))
    except Exception as exc:
        outcome.violate("recovers", f"the store did not recover: {type(exc).__name__}: {exc}")
        return True, outcome
    intact = sum(1 for e in recovered if e.sequence in log.events and _same(e, log.events[e.sequence]))
    outcome.read_back = (started, time.monotonic() - started, intact)
    _judge_recovered(log, expectation, recovered, health, outcome)
    _judge_resumed(log, recovered, health, appended, reopened, outcome)
    return True, outcome


def _judge_recovered(log: PristineLog, expectation: Expectation, recovered: list[StoredEvent],
                     health: dict[str, Any], outcome: CaseOutcome) -> None:
    seen: set[int] = set()
    previous = 0
    client_ids = {e.event_id for e in log.events.values()}
    for event in recovered:
        if is_store_generated(event) and event.event_id not in client_ids:
            continue  # the store's own record of the damage it found
        original = log.events.get(event.sequence)
        if original is None or not _same(event, original):
            outcome.violate("no_phantom", f"served an event that was never written so: seq {event.sequence} "
                                          f"id {event.event_id}")
        if event.sequence in seen:
            outcome.violate("no_duplicate", f"sequence {event.sequence} served twice")
        if event.sequence <= previous:
            outcome.violate("order", f"sequence {event.sequence} after {previous}")
        seen.add(event.sequence)
        previous = max(previous, event.sequence)
    missing = set(log.events) - seen
    declared = [tuple(r) for r in health.get("lost_sequences", [])]
    kinds = [d.get("kind") for d in health.get("damage", [])]
    silently_dropped = sorted(missing - expectation.may_lose)
    if silently_dropped:
        outcome.violate("no_lost_ack", f"intact events dropped: sequences {silently_dropped[:10]}")
        outcome.violate("prefix_no_holes", f"{len(silently_dropped)} intact events missing around the damage")
    if not expectation.tail:
        undeclared = sorted(s for s in missing & expectation.may_lose if not any(lo <= s <= hi for lo, hi in declared))
        if undeclared:
            outcome.violate("corruption_detected", f"lost sequences {undeclared[:10]} not declared in health()")
    if expectation.report_mid_log and not any(k != "torn_tail" for k in kinds):
        outcome.violate("corruption_detected", f"mid-log damage not reported (health damage kinds {kinds})")
    if expectation.report_tail and not kinds:
        outcome.violate("corruption_detected", "a damaged tail was truncated without being reported")


def _judge_resumed(log: PristineLog, recovered: list[StoredEvent], health: dict[str, Any], appended: StoredEvent,
                   reopened: list[StoredEvent], outcome: CaseOutcome) -> None:
    declared_end = max((int(r[1]) for r in health.get("lost_sequences", [])), default=0)
    floor = max([declared_end, *(e.sequence for e in recovered)], default=0)
    if appended.sequence <= floor:
        outcome.violate("recovers", f"new append got sequence {appended.sequence}, not above {floor} (reused)")
    expected_ids = [e.event_id for e in recovered] + [appended.event_id]
    if [e.event_id for e in reopened] != expected_ids:
        outcome.violate("recovers", "after an append and a reopen the log is not the recovered log plus the append")


def plan_cases(log: PristineLog, rng: random.Random, random_cases: int, *, every_torn_byte: bool = True,
               kinds: tuple[CorruptionKind, ...] = tuple(CorruptionKind),
               targets: tuple[str, ...] | None = None) -> list[tuple[int, CorruptionCase]]:
    """Torn tails at every byte of the last frame (cut and zero-filled), then random cases in every segment.

    ``targets`` limits random cases to those targets (e.g. ``("middle_frame",)``: damage with good frames after it).
    """
    plans = [CorruptionPlan(s.size, [(f.start, f.end) for f in s.frames], seed=rng.getrandbits(32))
             for s in log.segments]
    last = len(log.segments) - 1
    cases: list[tuple[int, CorruptionCase]] = []
    if every_torn_byte:
        cases += [(last, case) for case in plans[last].torn_tails_of_last_frame()]
        cases += [(last, case) for case in plans[last].torn_tails_of_last_frame(zero_fill=True)]
    wanted = len(cases) + random_cases
    while len(cases) < wanted:
        index = rng.randrange(len(plans))
        kind = rng.choice(kinds)
        allowed = [t for t in plans[index].targets_for(kind) if targets is None or t in targets]
        if allowed:
            cases.append((index, plans[index].case(rng, kind, rng.choice(allowed))))
    return cases


def run_cases(log: PristineLog, cases: list[tuple[int, CorruptionCase]], workdir: Path, adapter: AdapterSpec,
              fault_kind: str = FAULT_KIND) -> CampaignResult:
    """Judge every case; ``caught[i]`` says whether proven case ``i`` broke an invariant."""
    result = CampaignResult(Tally(fault_kind, adapter.name))
    result.timeline.history = log.history  # the picture: the writes, then every damaged copy recovered
    for segment, case in cases:
        proven, outcome = judge_case(log, segment, case, workdir, adapter)
        result.tally.case(proven)
        if not proven:
            continue
        if outcome.record is not None:
            result.timeline.fault(outcome.record, case.kind.value)
        if outcome.read_back is not None:
            result.timeline.read_back(*outcome.read_back[:2], len(log.events), outcome.read_back[2])
        result.tally.judged_ok(*ORACLE_INVARIANTS)
        for invariant in outcome.broken:
            result.tally.violated(invariant)
        result.caught.append(not outcome.ok)
        if not outcome.ok:
            result.failures.append(f"{log.segments[segment].name} {case}: {'; '.join(outcome.problems[:3])}")
    return result


def run_format_aware_corruption(adapter: AdapterSpec, root: Path, rng: random.Random, seed: int, cases: int, *,
                                every_torn_byte: bool = True) -> CampaignResult:
    """Lighthouse's oracle over a small pre-built log: torn tails at every byte of the last frame, then random cases."""
    log = build_pristine_log(root / "pristine", seed=seed)
    return run_cases(log, plan_cases(log, rng, cases, every_torn_byte=every_torn_byte), root / "work", adapter)
