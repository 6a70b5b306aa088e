"""PostgreSQL on a full or read-only filesystem: typed refusals (never a bare OSError), and room for its cluster.

A fresh cluster takes 27 MiB in about 1,000 files; the disk campaigns size their private filesystems by the
adapter's declared :class:`~testkit.chaos.capabilities.Footprint`, so that the fault lands on the store's
writes and not on the copy of its cluster (which used to fail the campaigns with an untyped ``shutil.Error``).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from testkit.adapters.base import AdapterError
from testkit.adapters.shipped import SHIPPED
from testkit.chaos.capabilities import capabilities_of
from testkit.chaos.disk import private_filesystem
from testkit.faults.disk import SmallTmpfs, disk_full, remount_readonly
from testkit.faults.probe import probe_tmpfs

pytestmark = pytest.mark.ci


@pytest.fixture
def postgres_default():
    missing = SHIPPED["postgres"].missing()
    if missing:
        pytest.skip(missing)
    probe = probe_tmpfs()
    if not probe:
        pytest.skip(probe.reason)
    from testkit.adapters.postgres import postgres_default

    return postgres_default


def _event(number: int) -> dict[str, str]:
    return {"event_id": f"e{number}", "event_type": "custom", "aggregate_id": "a"}


async def _refusal(adapter) -> AdapterError:
    with pytest.raises(AdapterError) as refused:
        await adapter.open()
    return refused.value


def test_no_room_for_a_new_cluster_is_a_typed_retryable_refusal_that_leaves_no_half_copy(postgres_default) -> None:
    with SmallTmpfs(8 * 1024 * 1024) as fs:  # the campaigns' old size: too small for the 27 MiB cluster
        refusal = asyncio.run(_refusal(postgres_default(fs.path / "store")))
        assert (refusal.code, refusal.retryable) == ("resource_exhausted", True), refusal
        assert os.listdir(fs.path / "store") == []  # the partial copy is gone, its space given back


def test_the_declared_footprint_holds_a_cluster_and_a_restart_on_the_full_disk_is_refused_typed(
        postgres_default) -> None:
    footprint = capabilities_of(postgres_default).footprint
    with private_filesystem("tmpfs", footprint) as fs:
        store = fs.path / "store"

        async def write_then_restart_full() -> AdapterError:
            adapter = postgres_default(store)
            await adapter.open()
            try:
                await adapter.append(_event(0))
            finally:
                await adapter.close()
            with disk_full(fs.path) as ballast:
                assert ballast.record.proven
                return await _refusal(postgres_default(store))  # it cannot even write postmaster.pid

        refusal = asyncio.run(write_then_restart_full())
        assert (refusal.code, refusal.retryable) == ("resource_exhausted", True), refusal

        async def reads_after_space_freed() -> list[str]:
            adapter = postgres_default(store)
            await adapter.open()
            try:
                return [event.event_id async for event in adapter.read_all()]
            finally:
                await adapter.close()

        assert asyncio.run(reads_after_space_freed()) == ["e0"]


def test_a_read_only_filesystem_is_a_typed_refusal(postgres_default) -> None:
    footprint = capabilities_of(postgres_default).footprint
    with private_filesystem("tmpfs", footprint) as fs:
        store = fs.path / "store"

        async def write() -> None:
            adapter = postgres_default(store)
            await adapter.open()
            await adapter.close()

        asyncio.run(write())
        with remount_readonly(fs.path) as record:
            assert record.proven
            refusal = asyncio.run(_refusal(postgres_default(store)))
        assert (refusal.code, refusal.retryable) == ("store_read_only", True), refusal
