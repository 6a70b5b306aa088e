"""Disk full, inodes exhausted, filesystem read-only: refuse writes with typed errors, keep serving reads,
lose nothing acknowledged, resume by itself once the condition clears.

The data directory sits on a private filesystem (a size-limited tmpfs, or a loop-mounted ext4 where
ENOSPC can also surface at fsync through delayed allocation); the fault is made real and proven
(a probe write gets ENOSPC / EROFS) before the store is judged. The store runs in the test's event
loop so that the fault can be switched on and off between its writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.adapters import AdapterError, AdapterSpec
from testkit.faults import LoopExt4, MountedFs, SmallTmpfs, disk_full, exhaust_inodes, free_space, remount_readonly
from testkit.faults.probe import probe_loop_mount, probe_tmpfs
from testkit.faults.workload import recover_async

from . import stores
from .appender import Appender, StepCounts
from .judging import Tally, judge

FILESYSTEMS: dict[str, Callable[[], MountedFs]] = {
    "tmpfs": lambda: SmallTmpfs(8 * 1024 * 1024, nr_inodes=64),
    "ext4": lambda: LoopExt4(16, inodes=64),
}
ADAPTERS = [
    # probe_interval: how soon lighthouse retries a durable write while read-only (default 0.2 s).
    pytest.param(stores.lighthouse(probe_interval=0.05), id="lighthouse"),
    pytest.param(stores.sqlite(), id="sqlite"),
]
RESUME_DEADLINE_S = 15.0
FS_CASES = [
    pytest.param(adapter.values[0], fs_kind, id=f"{adapter.id}-{fs_kind}",
                 marks=[pytest.mark.smoke] if (adapter.id, fs_kind) == ("lighthouse", "tmpfs") else [])
    for fs_kind in ("tmpfs", "ext4") for adapter in ADAPTERS
]


def _require_fs(kind: str, require) -> None:
    require("tmpfs mounts" if kind == "tmpfs" else "loop ext4", probe_tmpfs() if kind == "tmpfs" else probe_loop_mount())


async def _judge_into(tally: Tally, appender: Appender, adapter: AdapterSpec, data_dir: Path,
                      problems: list[str]) -> None:
    recovered = await recover_async(adapter, data_dir)
    judgement = judge(appender.history, recovered.events, voided=recovered.voided_ranges(),
                      declared_lost=recovered.lost_ranges())
    tally.add(judgement)
    if not judgement.ok:
        problems.append(judgement.describe())


def _typed(tally: Tally, problems: list[str], *steps: StepCounts) -> None:
    untyped = [u for step in steps for u in step.untyped]
    tally.violated("typed_errors", 1 if untyped else 0)
    if untyped:
        problems.append(f"untyped errors: {untyped[:3]}")


@pytest.mark.parametrize(("adapter", "fs_kind"), FS_CASES)
def test_disk_full(adapter: AdapterSpec, fs_kind: str, testkit_record, testkit_seed: int, case_seed: int,
                   require) -> None:
    _require_fs(fs_kind, require)
    testkit_record.sut = adapter.name
    tally = Tally(f"disk_full[{fs_kind}]", adapter.name)
    problems: list[str] = []
    with FILESYSTEMS[fs_kind]() as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            store = adapter.create(data_dir)
            await store.open()
            appender = Appender(store, seed=case_seed)
            try:
                before = await appender.append(20)
                with disk_full(fs.path) as ballast:
                    tally.case(ballast.record.proven)
                    testkit_record.fault("disk_full", ballast.record.proven, ballast.record.detail,
                                         (ballast.record.t_start, ballast.record.t_end))
                    full = await appender.until_refused(500)
                    if not full.failed:
                        problems.append("500 writes went through on a full disk: the store never noticed")
                    more = await appender.append(10)  # and it keeps refusing, cleanly
                    served = set(await appender.read_ids())
                    unread = appender.acknowledged_ids() - served
                    tally.violated("recovers", 1 if unread else 0)
                    if unread:
                        problems.append(f"reads on a full disk miss {len(unread)} acknowledged events")
                resumed = await appender.until_acknowledged(5, RESUME_DEADLINE_S)
                tally.violated("recovers", 0 if resumed.ok >= 5 else 1)
                if resumed.ok < 5:
                    problems.append(f"no resume within {RESUME_DEADLINE_S}s after space was freed: {resumed}")
                _typed(tally, problems, before, full, more, resumed)
                testkit_record.parameters.update(refused=dict(full.refused + more.refused))
            finally:
                await store.close()
            await _judge_into(tally, appender, adapter, data_dir, problems)

        asyncio.run(scenario())
    tally.record(testkit_record)
    assert not problems, f"seed {testkit_seed}: {adapter.name} on a full {fs_kind}:\n" + "\n".join(problems)


@pytest.mark.parametrize(("adapter", "fs_kind"), FS_CASES)
def test_inodes_exhausted(adapter: AdapterSpec, fs_kind: str, testkit_record, testkit_seed: int, case_seed: int,
                          require) -> None:
    """No inode left: a store that needs a new file (lighthouse rotates every 4 KiB here) must refuse cleanly."""
    _require_fs(fs_kind, require)
    if stores.is_lighthouse(adapter):
        adapter = stores.lighthouse(probe_interval=0.05, segment_bytes=4096)
    testkit_record.sut = adapter.name
    tally = Tally("inodes_exhausted", adapter.name)
    problems: list[str] = []
    with FILESYSTEMS[fs_kind]() as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            store = adapter.create(data_dir)
            await store.open()
            appender = Appender(store, seed=case_seed)
            try:
                before = await appender.append(10)
                ballast = exhaust_inodes(fs.path)
                tally.case(ballast.record.proven)
                testkit_record.fault("inodes_exhausted", ballast.record.proven, ballast.record.detail)
                try:
                    during = await appender.append(40)  # lighthouse must rotate in here; sqlite needs no new file
                    served = set(await appender.read_ids())
                    if appender.acknowledged_ids() - served:
                        problems.append("reads without inodes miss acknowledged events")
                        tally.violated("recovers")
                finally:
                    free_space(ballast).require()
                resumed = await appender.until_acknowledged(5, RESUME_DEADLINE_S)
                tally.violated("recovers", 0 if resumed.ok >= 5 else 1)
                if resumed.ok < 5:
                    problems.append(f"no resume after inodes were freed: {resumed}")
                if stores.is_lighthouse(adapter) and not during.failed:
                    problems.append("lighthouse rotated 40 writes deep without an inode and never refused")
                _typed(tally, problems, before, during, resumed)
            finally:
                await store.close()
            await _judge_into(tally, appender, adapter, data_dir, problems)

        asyncio.run(scenario())
    tally.record(testkit_record)
    assert not problems, f"seed {testkit_seed}: {adapter.name}, inodes exhausted on {fs_kind}:\n" + "\n".join(problems)


@pytest.mark.parametrize("adapter", [
    pytest.param(stores.lighthouse(), id="lighthouse"),
    pytest.param(stores.sqlite(), id="sqlite", marks=pytest.mark.xfail(strict=True, reason=(
        "peer limitation: SQLite in WAL mode cannot open a database on a read-only filesystem "
        "(it needs to create the -shm file); it refuses with a typed error, so reads are not served"))),
])
def test_read_only_remount_serves_reads_and_refuses_writes(
    adapter: AdapterSpec, testkit_record, testkit_seed: int, case_seed: int, require,
) -> None:
    """The filesystem goes read-only under a closed store (the kernel refuses while files are open for writing)."""
    require("tmpfs mounts", probe_tmpfs())
    testkit_record.sut = adapter.name
    tally = Tally("read_only_remount", adapter.name)
    problems: list[str] = []
    with SmallTmpfs(8 * 1024 * 1024) as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            store = adapter.create(data_dir)
            await store.open()
            writer = Appender(store, seed=case_seed)
            await writer.append(20)
            await store.close()
            with remount_readonly(fs.path) as record:
                tally.case(record.proven)
                testkit_record.fault("read_only", record.proven, record.detail)
                reader = adapter.create(data_dir)
                try:
                    await reader.open()
                except AdapterError as exc:  # typed refusal to open: acceptable, but reads are not served
                    problems.append(f"refused to open read-only ({exc.code}): acknowledged events unreadable")
                    tally.violated("recovers")
                    return
                try:
                    served = set(await Appender(reader, seed=0).read_ids())
                    if writer.acknowledged_ids() - served:
                        problems.append("read-only store misses acknowledged events")
                        tally.violated("recovers")
                    refused = await Appender(reader, seed=case_seed + 1).append(3)
                    _typed(tally, problems, refused)
                    if refused.ok:
                        problems.append(f"{refused.ok} appends acknowledged on a read-only filesystem")
                        tally.violated("no_phantom")
                finally:
                    await reader.close()
            resumed_store = adapter.create(data_dir)
            await resumed_store.open()
            try:
                resumed = await Appender(resumed_store, seed=case_seed + 2).until_acknowledged(3, RESUME_DEADLINE_S)
                tally.violated("recovers", 0 if resumed.ok >= 3 else 1)
            finally:
                await resumed_store.close()
            recovered = await recover_async(adapter, data_dir)
            missing = writer.acknowledged_ids() - {e.event_id for e in recovered.events}
            tally.violated("no_lost_ack", 1 if missing else 0)
            if missing:
                problems.append(f"{len(missing)} acknowledged events lost across the read-only period")

        asyncio.run(scenario())
    tally.record(testkit_record)
    assert not problems, f"seed {testkit_seed}: {adapter.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("adapter", [
    ADAPTERS[0],
    pytest.param(stores.sqlite(), id="sqlite", marks=pytest.mark.xfail(strict=True, reason=(
        "peer limitation: SQLite in WAL mode must create its -shm (and -wal) files to open, which fails on a "
        "full tmpfs with a typed 'disk I/O error', so nothing can be read until space is freed"))),
])
def test_open_on_a_full_disk(adapter: AdapterSpec, testkit_record, testkit_seed: int, case_seed: int,
                             require) -> None:
    """A restart while the disk is full: recovery must not need space to serve what is there."""
    require("tmpfs mounts", probe_tmpfs())
    testkit_record.sut = adapter.name
    tally = Tally("disk_full[at open]", adapter.name)
    problems: list[str] = []
    with SmallTmpfs(8 * 1024 * 1024) as fs:
        data_dir = fs.path / "data"

        async def scenario() -> None:
            store = adapter.create(data_dir)
            await store.open()
            writer = Appender(store, seed=case_seed)
            before = await writer.append(20)
            await store.close()
            with disk_full(fs.path) as ballast:
                tally.case(ballast.record.proven)
                testkit_record.fault("disk_full", ballast.record.proven, ballast.record.detail)
                store = adapter.create(data_dir)
                try:
                    await store.open()
                except AdapterError as exc:
                    tally.violated("recovers")
                    problems.append(f"cannot open on a full disk ({exc.code}: {exc}): nothing can be read")
                    return
                writer.adapter = store
                try:
                    served = set(await writer.read_ids())
                    if writer.acknowledged_ids() - served:
                        tally.violated("recovers")
                        problems.append("opened on a full disk without all acknowledged events")
                    full = await writer.append(5)
                    _typed(tally, problems, before, full)
                    resume_after = free_space(ballast)
                    resume_after.require()
                    resumed = await writer.until_acknowledged(5, RESUME_DEADLINE_S)
                    tally.violated("recovers", 0 if resumed.ok >= 5 else 1)
                    if resumed.ok < 5:
                        problems.append(f"no resume after space was freed: {resumed}")
                finally:
                    await store.close()
            await _judge_into(tally, writer, adapter, data_dir, problems)

        asyncio.run(scenario())
    tally.record(testkit_record)
    assert not problems, f"seed {testkit_seed}: {adapter.name}:\n" + "\n".join(problems)
