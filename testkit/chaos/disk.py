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
from collections.abc import Callable
from pathlib import Path

from testkit.adapters import AdapterError, AdapterSpec
from testkit.chaos.appender import Appender, StepCounts
from testkit.chaos.judging import Tally, judge
from testkit.chaos.result import CampaignResult
from testkit.faults.disk import SmallTmpfs, disk_full, exhaust_inodes, free_space, remount_readonly
from testkit.faults.mounts import MountedFs
from testkit.faults.powerloss import LoopExt4
from testkit.faults.workload import recover_async

__all__ = ["FILESYSTEMS", "RESUME_DEADLINE_S", "run_disk_full", "run_inodes_exhausted", "run_open_on_full_disk",
           "run_read_only_remount"]

#: Small private filesystems by kind: a tmpfs (ENOSPC at write) and a loop ext4 (also at fsync).
FILESYSTEMS: dict[str, Callable[[], MountedFs]] = {
    "tmpfs": lambda: SmallTmpfs(8 * 1024 * 1024, nr_inodes=64),
    "ext4": lambda: LoopExt4(16, inodes=64),
}
RESUME_DEADLINE_S = 15.0


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


def run_disk_full(adapter: AdapterSpec, fs_kind: str, seed: int) -> CampaignResult:
    """Fill the disk under an open store: it must refuse (typed), serve reads, and resume once space is freed."""
    result = CampaignResult(Tally(f"disk_full[{fs_kind}]", adapter.name))
    with FILESYSTEMS[fs_kind]() as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            store = adapter.create(data_dir)
            await store.open()
            appender = Appender(store, seed=seed)
            try:
                before = await appender.append(20)
                with disk_full(fs.path) as ballast:
                    result.tally.case(ballast.record.proven)
                    result.fault("disk_full", ballast.record.proven, ballast.record.detail,
                                 (ballast.record.t_start, ballast.record.t_end))
                    result.timeline.fault(ballast.record, "disk_full")
                    full = await appender.until_refused(500)
                    if not full.failed:
                        result.failures.append("500 writes went through on a full disk: the store never noticed")
                    more = await appender.append(10)  # and it keeps refusing, cleanly
                    unread = appender.acknowledged_ids() - set(await appender.read_ids())
                    result.tally.violated("recovers", 1 if unread else 0)
                    if unread:
                        result.failures.append(f"reads on a full disk miss {len(unread)} acknowledged events")
                resumed = await appender.until_acknowledged(5, RESUME_DEADLINE_S)
                _resumed(result, resumed, 5, "space was freed")
                _typed(result, before, full, more, resumed)
                result.parameters.update(refused=dict(full.refused + more.refused))
            finally:
                await store.close()
            await _judge_into(result, appender, adapter, data_dir)

        asyncio.run(scenario())
    return result


def run_inodes_exhausted(adapter: AdapterSpec, fs_kind: str, seed: int, *, creates_files: bool) -> CampaignResult:
    """No inode left. ``creates_files``: the store needs new files within 40 writes, so it must refuse cleanly."""
    result = CampaignResult(Tally("inodes_exhausted", adapter.name))
    with FILESYSTEMS[fs_kind]() as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            store = adapter.create(data_dir)
            await store.open()
            appender = Appender(store, seed=seed)
            try:
                before = await appender.append(10)
                ballast = exhaust_inodes(fs.path)
                result.tally.case(ballast.record.proven)
                result.fault("inodes_exhausted", ballast.record.proven, ballast.record.detail)
                result.timeline.fault(ballast.record, "inodes_exhausted")
                try:
                    during = await appender.append(40)
                    if appender.acknowledged_ids() - set(await appender.read_ids()):
                        result.problem("reads without inodes miss acknowledged events", "recovers")
                finally:
                    free_space(ballast).require()
                resumed = await appender.until_acknowledged(5, RESUME_DEADLINE_S)
                _resumed(result, resumed, 5, "inodes were freed")
                if creates_files and not during.failed:
                    result.failures.append("40 writes deep without an inode and the store never refused")
                _typed(result, before, during, resumed)
            finally:
                await store.close()
            await _judge_into(result, appender, adapter, data_dir)

        asyncio.run(scenario())
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


def run_read_only_remount(adapter: AdapterSpec, seed: int) -> CampaignResult:
    """The filesystem goes read-only under a closed store: reads served, appends refused (typed), resume after."""
    result = CampaignResult(Tally("read_only_remount", adapter.name))
    with SmallTmpfs(8 * 1024 * 1024) as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            writer, _ = await _filled_then_closed(adapter, data_dir, seed)
            with remount_readonly(fs.path) as record:
                result.tally.case(record.proven)
                result.fault("read_only", record.proven, record.detail)
                result.timeline.fault(record, "read_only")
                reader = adapter.create(data_dir)
                try:
                    await reader.open()
                except AdapterError as exc:  # typed refusal to open: acceptable, but reads are not served
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


def run_open_on_full_disk(adapter: AdapterSpec, seed: int) -> CampaignResult:
    """A restart while the disk is full: recovery must not need space to serve what is there."""
    result = CampaignResult(Tally("disk_full[at open]", adapter.name))
    with SmallTmpfs(8 * 1024 * 1024) as fs:
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
