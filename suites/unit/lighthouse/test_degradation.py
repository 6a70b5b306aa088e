"""Degradation: a write that fails for real turns the store read-only (reads continue, health says why),
it returns to healthy by itself once writes succeed, and the sequences of the failed write are never reused.

The real failure comes from ``RLIMIT_FSIZE`` lowered inside a child process: ``pwrite`` past the limit
first writes short, then fails with EFBIG (Python ignores SIGXFSZ). The child can raise its soft limit
again, which is how "the condition clears". Disk-full on a real filesystem (tmpfs, loop ext4) is the
chaos suite's job; failures the kernel cannot produce on demand here (EIO from fdatasync) use the
store's documented I/O hooks.
"""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lighthouse import EventStore, HealthState, StoreReadOnly, WriteFailed

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, resource, sys
    from pathlib import Path
    from lighthouse import Event, EventFilter, EventStore, EventType, LighthouseError

    class ProbeCountingStore(EventStore):
        # Counts probe attempts so the test can wait for failed probes instead of sleeping.
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.probes = []

        def _probe_write(self):
            ok = super()._probe_write()
            self.probes.append(ok)
            return ok

    def event(name):
        return Event(EventType.CUSTOM, aggregate_id="a", event_id=name, timestamp=1.0)

    async def until(predicate, what, deadline=10.0):
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while not predicate():
            if loop.time() > end:
                raise SystemExit(f"timed out waiting for {what}")
            await asyncio.sleep(0.005)

    def error(exc):
        return {"type": type(exc).__name__, **exc.to_dict()}

    async def main(path, extra, keep_short_write_limit):
        obs = {}
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        store = await ProbeCountingStore.open(path, probe_interval=0.01)
        for i in range(3):
            await store.append(event(f"ok{i}"))
        segment = sorted(Path(path).glob("*.seg"))[-1]
        size = store._segments[-1].size  # the last frame's end: the file is allocated further ahead of it
        assert segment.stat().st_size > size, "no space was allocated ahead of the writes"
        obs["size_before"] = size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + extra, hard))
        try:
            await store.append(event("doomed"))
            obs["failed_append"] = None
        except LighthouseError as exc:
            obs["failed_append"] = error(exc)
        if not keep_short_write_limit:
            # No await since the failure: the probe has not run yet. From here every write fails at once.
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
        obs["size_after_failure"] = segment.stat().st_size
        obs["health_failed"] = store.health().to_dict()
        try:
            await store.append(event("refused"))
            obs["refused_append"] = None
        except LighthouseError as exc:
            obs["refused_append"] = error(exc)
        obs["reads"] = {
            "replay": [e.event_id async for e in store.replay()],
            "get": (await store.get("ok1")).sequence,
            "query": len((await store.query(EventFilter(aggregate_ids=["a"]))).events),
        }
        await until(lambda: len(store.probes) >= 3 or store.health().state == "healthy", "three probes")
        obs["probes_while_limited"] = list(store.probes)
        obs["state_while_limited"] = store.health().state.value
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        await until(lambda: store.health().state == "healthy", "the store to heal itself")
        obs["health_healed"] = store.health().to_dict()
        after = await store.append(event("after"))
        obs["after_sequence"] = after.sequence
        obs["voided_after_append"] = store.health().to_dict()["voided_sequences"]
        await store.close()
        async with EventStore(path) as reopened:
            obs["reopened"] = {
                "events": [(e.sequence, e.event_id) async for e in reopened.replay()],
                "voided": reopened.health().to_dict()["voided_sequences"],
                "next": (await reopened.append(event("next"))).sequence,
            }
        print(json.dumps(obs))

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "keep"))
    """
)


def run_child(path: Path, *, extra: int, keep_short_write_limit: bool) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(extra), "keep" if keep_short_write_limit else "drop"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def efbig_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One child run: three appends, a write that hits EFBIG after a short write, recovery, reopen."""
    return run_child(tmp_path_factory.mktemp("efbig") / "store", extra=16, keep_short_write_limit=False)


def test_the_fault_really_happened(efbig_run: dict) -> None:
    failed = efbig_run["failed_append"]
    assert failed is not None, "the append past RLIMIT_FSIZE succeeded: no fault was injected"
    assert failed["details"]["errno"] == "EFBIG"


def test_a_failed_write_raises_write_failed_and_leaves_no_partial_frame(efbig_run: dict) -> None:
    failed = efbig_run["failed_append"]
    assert (failed["type"], failed["error"], failed["retryable"]) == ("WriteFailed", "write_failed", True)
    assert failed["details"]["outcome"] == "not_written"
    # 16 bytes of the frame were written before EFBIG; they must be gone.
    assert efbig_run["size_after_failure"] == efbig_run["size_before"]


def test_the_store_turns_read_only_and_says_why(efbig_run: dict) -> None:
    health = efbig_run["health_failed"]
    assert (health["state"], health["writable"]) == ("read_only", False)
    assert "EFBIG" in health["last_error"]
    assert any("EFBIG" in reason for reason in health["reasons"].values())
    refused = efbig_run["refused_append"]
    assert refused is not None and (refused["type"], refused["error"]) == ("StoreReadOnly", "store_read_only")


def test_reads_continue_while_read_only(efbig_run: dict) -> None:
    assert efbig_run["reads"] == {"replay": ["ok0", "ok1", "ok2"], "get": 2, "query": 3}


def test_the_store_stays_read_only_while_writes_keep_failing(efbig_run: dict) -> None:
    assert len(efbig_run["probes_while_limited"]) >= 3
    assert not any(efbig_run["probes_while_limited"]), "a probe succeeded while every write fails"
    assert efbig_run["state_while_limited"] == "read_only"


def test_the_store_heals_itself_once_writes_succeed(efbig_run: dict) -> None:
    healed = efbig_run["health_healed"]
    assert healed["state"] == "healthy" and healed["writable"]
    states = [(t["from"], t["to"]) for t in healed["recent_transitions"]]
    assert states == [("healthy", "read_only"), ("read_only", "healthy")]
    assert healed["transitions"] == 2


def test_sequences_of_the_failed_write_are_never_reused(efbig_run: dict) -> None:
    assert efbig_run["after_sequence"] == 5, "sequence 4 went to the failed write and must stay void"
    assert efbig_run["voided_after_append"] == [[4, 4]]
    reopened = efbig_run["reopened"]
    assert reopened["events"] == [[1, "ok0"], [2, "ok1"], [3, "ok2"], [5, "after"]]
    assert reopened["voided"] == [[4, 4]], "the void range did not survive reopen"
    assert reopened["next"] == 6


def test_a_short_probe_write_is_not_a_recovery(tmp_path: Path) -> None:
    outcome = run_child(tmp_path / "store", extra=16, keep_short_write_limit=True)
    assert outcome["failed_append"] is not None and outcome["failed_append"]["details"]["errno"] == "EFBIG"
    assert outcome["state_while_limited"] == "read_only"


# --------------------------------------------------------------------------------- through the store's hooks


class FailingWrites(EventStore):
    """``_write_durably`` raises ENOSPC for the next ``failures`` groups (the real-disk version is in suites/chaos)."""

    failures = 0

    def _write_durably(self, offset: int, data: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        super()._write_durably(offset, data)


async def wait_healthy(store: EventStore, deadline: float = 30.0) -> None:  # generous: a loaded 2-core CI
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while store.health().state != HealthState.HEALTHY:
        assert loop.time() < end, f"store did not heal: {store.health().reasons}"
        await asyncio.sleep(0.005)


def test_a_failed_batch_voids_all_its_sequences_and_the_next_write_records_them(
    store_dir: Path, run, make_event
) -> None:
    async def scenario() -> None:
        async with FailingWrites(store_dir, probe_interval=0.01) as store:
            await store.append(make_event(0))
            store.failures = 1
            with pytest.raises(WriteFailed) as caught:
                await store.append_batch([make_event(i) for i in range(1, 4)])
            assert caught.value.details["errno"] == "ENOSPC" and store.failures == 0
            assert store.health().voided_sequences == [(2, 4)]
            assert store.head_sequence == 1
            with pytest.raises(StoreReadOnly):
                await store.append(make_event(5))
            await wait_healthy(store)
            assert (await store.append(make_event(6))).sequence == 5
        async with EventStore(store_dir) as store:
            assert store.health().voided_sequences == [(2, 4)]
            assert [e.sequence async for e in store.replay()] == [1, 5]

    run(scenario())


def test_repeated_failures_extend_one_void_range(store_dir: Path, run, make_event, healed) -> None:
    async def scenario() -> None:
        async with FailingWrites(store_dir, probe_interval=0.01) as store:
            await store.append(make_event(0))
            for _ in range(2):
                store.failures = 1
                with pytest.raises(WriteFailed):
                    await store.append(make_event(1))
                await healed(store)  # else the planted failure can hit the healed store's own void write
            assert (await store.append(make_event(2))).sequence == 4
        async with EventStore(store_dir) as store:
            assert store.health().voided_sequences == [(2, 3)]
            assert (await store.append(make_event(3))).sequence == 5

    run(scenario())


def test_a_void_range_survives_close_even_without_a_later_append(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with FailingWrites(store_dir, probe_interval=0.01) as store:
            await store.append(make_event(0))
            store.failures = 1
            with pytest.raises(WriteFailed):
                await store.append(make_event(1))
            await wait_healthy(store)
        async with EventStore(store_dir) as store:
            assert store.health().voided_sequences == [(2, 2)]
            assert (await store.append(make_event(2))).sequence == 3

    run(scenario())


def test_low_free_space_refuses_writes_and_clears_when_space_returns(store_dir: Path, run, make_event) -> None:
    """The free-space threshold is checked against the real filesystem (statvfs)."""
    free = shutil.disk_usage(store_dir.parent).free

    async def scenario() -> None:
        async with EventStore(store_dir, probe_interval=0.01) as store:
            kept = await store.append(make_event(0))
            store.min_free_bytes = free * 1000  # more than this disk will ever have
            with pytest.raises(StoreReadOnly) as caught:
                await store.append(make_event(1))
            assert not isinstance(caught.value, WriteFailed)
            health = store.health()
            assert health.state == HealthState.READ_ONLY and "low_disk_space" in health.reasons
            assert await store.get(1) == kept
            store.min_free_bytes = 1  # space came back (as far as the threshold is concerned)
            await wait_healthy(store)
            assert (await store.append(make_event(2))).sequence == 2, "a refused append consumed a sequence"
            assert store.health().voided_sequences == []

    run(scenario())


def test_a_free_space_warning_degrades_but_keeps_writing(store_dir: Path, run, make_event) -> None:
    free = shutil.disk_usage(store_dir.parent).free

    async def scenario() -> None:
        async with EventStore(store_dir, warn_free_bytes=free * 1000) as store:
            stored = await store.append(make_event(0))
            assert stored.sequence == 1
            health = store.health()
            assert health.state == HealthState.DEGRADED and health.writable
            assert "disk_space_warning" in health.reasons

    run(scenario())


def test_writes_after_read_only_are_refused_without_touching_the_disk(store_dir: Path, run, make_event, disk) -> None:
    async def scenario() -> None:
        async with FailingWrites(store_dir, probe_interval=60) as store:  # no probe during this test
            await store.append(make_event(0))
            store.failures = 1
            with pytest.raises(WriteFailed):
                await store.append(make_event(1))
            size = disk.last_segment(store_dir).stat().st_size
            for i in range(5):
                with pytest.raises(StoreReadOnly):
                    await store.append_batch([make_event(10 + i)])
            assert disk.last_segment(store_dir).stat().st_size == size
            assert store.health().voided_sequences == [(2, 2)]

    run(scenario())
