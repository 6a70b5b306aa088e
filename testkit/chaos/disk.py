"""Disk full, inodes exhausted, filesystem read-only, restart on a full disk: one scenario function each.

The data directory sits on a private filesystem (a size-limited tmpfs, or a loop-mounted ext4 where
ENOSPC can also surface at fsync through delayed allocation); the fault is made real and proven (a
probe write gets ENOSPC / EROFS) before the store is judged. The store runs in the caller's process,
driven by an :class:`~testkit.chaos.appender.Appender`, so the fault can be switched on and off between
writes. A correct store refuses writes with typed errors (``AdapterError``), keeps serving reads, loses
nothing acknowledged, and resumes by itself once the condition clears.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.adapters import AdapterError, AdapterSpec
from testkit.chaos.appender import Appender, StepCounts
from testkit.chaos.capabilities import Footprint
from testkit.chaos.judging import Tally, judge
from testkit.chaos.result import CampaignResult
from testkit.faults.disk import Ballast, SmallTmpfs, disk_full, exhaust_inodes, free_space, remount_readonly
from testkit.faults.mounts import MountedFs
from testkit.faults.powerloss import LoopExt4
from testkit.faults.workload import recover_async

__all__ = ["FILESYSTEMS", "RESUME_DEADLINE_S", "private_filesystem", "run_disk_full", "run_inodes_exhausted",
           "run_open_on_full_disk", "run_read_only_remount"]

_MIB = 1024 * 1024
#: Small private filesystems by kind: a tmpfs (ENOSPC at write) and a loop ext4 (also at fsync), each given
#: (MiB, files) on top of the store's :class:`~testkit.chaos.capabilities.Footprint`.
FILESYSTEMS: dict[str, Callable[[int, int], MountedFs]] = {
    "tmpfs": lambda mib, files: SmallTmpfs((8 + mib) * _MIB, nr_inodes=64 + files),
    "ext4": lambda mib, files: LoopExt4(16 + mib, inodes=64 + files),
}
RESUME_DEADLINE_S = 15.0


def private_filesystem(kind: str, footprint: Footprint = Footprint()) -> MountedFs:
    """A small filesystem of ``kind`` ("tmpfs", "ext4") with room for the store's ``footprint``."""
    return FILESYSTEMS[kind](footprint.mib, footprint.files)


async def _judge_into(result: CampaignResult, appender: Appender, adapter: AdapterSpec, data_dir: Path) -> None:
    recovered = await recover_async(adapter, data_dir)
    judgement = judge(appender.history, recovered.events, voided=recovered.voided_ranges(),
                      declared_lost=recovered.lost_ranges())
    result.tally.add(judgement)
    result.last = judgement
    result.timeline.history = appender.history  # in-process: the appender's own history is the picture
    result.timeline.cycle(judgement, recovered)
    if not judgement.ok:
        result.failures.append(judgement.describe())


def _typed(result: CampaignResult, *steps: StepCounts) -> None:
    untyped = [u for step in steps for u in step.untyped]
    result.tally.violated("typed_errors", 1 if untyped else 0)
    if untyped:
        result.failures.append(f"untyped errors: {untyped[:3]}")


def _resumed(result: CampaignResult, counts: StepCounts, wanted: int, what: str) -> None:
    result.tally.violated("recovers", 0 if counts.ok >= wanted else 1)
    if counts.ok < wanted:
        result.failures.append(f"no resume within {RESUME_DEADLINE_S}s after {what}: {counts}")


@contextmanager
def _inodes_exhausted(directory: Path) -> Iterator[Ballast]:
    """:func:`exhaust_inodes` for the body of the ``with``, :func:`free_space` afterwards (always)."""
    ballast = exhaust_inodes(directory)
    try:
        yield ballast
    finally:
        free_space(ballast).require()


@dataclass(frozen=True)
class _Pressure:
    """A fault applied under an open store: how it is applied and released, and how messages name it."""

    kind: str  # the fault's name in the results and the picture
    apply: Callable[[Path], AbstractContextManager[Ballast]]  # released when the ``with`` ends
    under: str  # "on a full disk"
    cleared: str  # "space was freed"


_DISK_FULL = _Pressure("disk_full", disk_full, "on a full disk", "space was freed")
_NO_INODES = _Pressure("inodes_exhausted", _inodes_exhausted, "without inodes", "inodes were freed")


def _under_pressure(result: CampaignResult, adapter: AdapterSpec, fs: MountedFs, seed: int, pressure: _Pressure, *,
                    before: int, during: Callable[[Appender], Awaitable[list[StepCounts]]],
                    must_refuse: str | None) -> list[StepCounts]:
    """Open a store, append ``before``, apply ``pressure``, run ``during`` (``must_refuse``: the message when no
    write was refused), check reads, release, wait for the store to resume, close, judge the whole history."""
    data_dir = fs.path / "data"
    steps: list[StepCounts] = []

    async def scenario() -> None:
        store = adapter.create(data_dir)
        await store.open()
        appender = Appender(store, seed=seed)
        try:
            first = await appender.append(before)
            with pressure.apply(fs.path) as ballast:
                record = ballast.record
                result.tally.case(record.proven)
                result.fault(pressure.kind, record.proven, record.detail, (record.t_start, record.t_end))
                result.timeline.fault(record, pressure.kind)
                steps.extend(await during(appender))
                if must_refuse and not steps[0].failed:  # the first step under the fault must meet a refusal
                    result.failures.append(must_refuse)
                unread = appender.acknowledged_ids() - set(await appender.read_ids())
                result.tally.violated("recovers", 1 if unread else 0)
                if unread:
                    result.failures.append(f"reads {pressure.under} miss {len(unread)} acknowledged events")
            resumed = await appender.until_acknowledged(5, RESUME_DEADLINE_S)
            _resumed(result, resumed, 5, pressure.cleared)
            _typed(result, first, *steps, resumed)
        finally:
            await store.close()
        await _judge_into(result, appender, adapter, data_dir)

    asyncio.run(scenario())
    return steps


def run_disk_full(adapter: AdapterSpec, fs_kind: str, seed: int, *,
                  footprint: Footprint = Footprint()) -> CampaignResult:
    """Fill the disk under an open store: it must refuse (typed), serve reads, and resume once space is freed."""
    result = CampaignResult(Tally(f"disk_full[{fs_kind}]", adapter.name))

    async def fill_up(appender: Appender) -> list[StepCounts]:
        full = await appender.until_refused(500)
        return [full, await appender.append(10)]  # and it keeps refusing, cleanly

    with private_filesystem(fs_kind, footprint) as fs:
        full, more = _under_pressure(result, adapter, fs, seed, _DISK_FULL, before=20, during=fill_up,
                                     must_refuse="500 writes went through on a full disk: the store never noticed")
    result.parameters.update(refused=dict(full.refused + more.refused))
    return result


def run_inodes_exhausted(adapter: AdapterSpec, fs_kind: str, seed: int, *, creates_files: bool,
                         footprint: Footprint = Footprint()) -> CampaignResult:
    """No inode left. ``creates_files``: the store needs new files within 40 writes, so it must refuse cleanly."""
    result = CampaignResult(Tally("inodes_exhausted", adapter.name))

    async def forty(appender: Appender) -> list[StepCounts]:
        return [await appender.append(40)]

    with private_filesystem(fs_kind, footprint) as fs:
        _under_pressure(result, adapter, fs, seed, _NO_INODES, before=10, during=forty,
                        must_refuse="40 writes deep without an inode and the store never refused"
                        if creates_files else None)
    return result


async def _filled_then_closed(adapter: AdapterSpec, data_dir: Path, seed: int) -> tuple[Appender, StepCounts]:
    """Twenty writes into a fresh store, closed again: the log a restart under the fault must serve."""
    store = adapter.create(data_dir)
    await store.open()
    writer = Appender(store, seed=seed)
    try:
        return writer, await writer.append(20)
    finally:
        await store.close()


def run_read_only_remount(adapter: AdapterSpec, seed: int, *, footprint: Footprint = Footprint()) -> CampaignResult:
    """The filesystem goes read-only under a closed store: reads served, appends refused (typed), resume after."""
    result = CampaignResult(Tally("read_only_remount", adapter.name))
    with SmallTmpfs((8 + footprint.mib) * _MIB) as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            writer, _ = await _filled_then_closed(adapter, data_dir, seed)
            result.timeline.history = writer.history  # the picture: the writes, then the read-only window
            with remount_readonly(fs.path) as record:
                result.tally.case(record.proven)
                result.fault("read_only", record.proven, record.detail)
                result.timeline.fault(record, "read_only")
                reader = adapter.create(data_dir)
                try:
                    await reader.open()
                except AdapterError as exc:  # typed refusal to open: acceptable, but reads are not served
                    result.parameters["refused_open"] = exc.code
                    result.problem(f"refused to open read-only ({exc.code}): acknowledged events unreadable",
                                   "recovers")
                    return
                try:
                    if writer.acknowledged_ids() - set(await Appender(reader, seed=0).read_ids()):
                        result.problem("read-only store misses acknowledged events", "recovers")
                    refused = await Appender(reader, seed=seed + 1).append(3)
                    _typed(result, refused)
                    if refused.ok:
                        result.problem(f"{refused.ok} appends acknowledged on a read-only filesystem", "no_phantom")
                finally:
                    await reader.close()
            resumed_store = adapter.create(data_dir)
            await resumed_store.open()
            try:
                resumed = await Appender(resumed_store, seed=seed + 2).until_acknowledged(3, RESUME_DEADLINE_S)
                _resumed(result, resumed, 3, "the remount read-write")
            finally:
                await resumed_store.close()
            recovered = await recover_async(adapter, data_dir)
            missing = writer.acknowledged_ids() - {e.event_id for e in recovered.events}
            result.tally.violated("no_lost_ack", 1 if missing else 0)
            if missing:
                result.failures.append(f"{len(missing)} acknowledged events lost across the read-only period")

        asyncio.run(scenario())
    return result


def run_open_on_full_disk(adapter: AdapterSpec, seed: int, *, footprint: Footprint = Footprint()) -> CampaignResult:
    """A restart while the disk is full: recovery must not need space to serve what is there."""
    result = CampaignResult(Tally("disk_full[at open]", adapter.name))
    with SmallTmpfs((8 + footprint.mib) * _MIB) as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            writer, before = await _filled_then_closed(adapter, data_dir, seed)
            with disk_full(fs.path) as ballast:
                result.tally.case(ballast.record.proven)
                result.fault("disk_full", ballast.record.proven, ballast.record.detail)
                result.timeline.fault(ballast.record, "disk_full")
                store = adapter.create(data_dir)
                try:
                    await store.open()
                except AdapterError as exc:
                    result.parameters["refused_open"] = exc.code
                    result.problem(f"cannot open on a full disk ({exc.code}: {exc}): nothing can be read", "recovers")
                    return
                writer.adapter = store
                try:
                    if writer.acknowledged_ids() - set(await writer.read_ids()):
                        result.problem("opened on a full disk without all acknowledged events", "recovers")
                    full = await writer.append(5)
                    _typed(result, before, full)
                    free_space(ballast).require()
                    resumed = await writer.until_acknowledged(5, RESUME_DEADLINE_S)
                    _resumed(result, resumed, 5, "space was freed")
                finally:
                    await store.close()
            await _judge_into(result, writer, adapter, data_dir)

        asyncio.run(scenario())
    return result
