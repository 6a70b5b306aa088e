"""Single writer per directory: a second store, in this process or another, gets ``StoreLocked``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lighthouse import Event, EventStore, EventType, StoreLocked

#: A child process that opens the store, appends one event, says so, and holds the lock until stdin closes.
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from lighthouse import Event, EventStore, EventType

    async def main(path):
        async with EventStore(path) as store:
            await store.append(Event(EventType.SYSTEM_STARTED, aggregate_id="system", event_id="child-started"))
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main(sys.argv[1]))
    """
)

#: A child process that tries to open the store and reports what happened as JSON.
CONTENDER = textwrap.dedent(
    """
    import asyncio, json, sys
    from lighthouse import EventStore, LighthouseError

    async def main(path):
        try:
            async with EventStore(path) as store:
                print(json.dumps({"opened": True, "head": store.head_sequence}))
        except LighthouseError as exc:
            print(json.dumps({"opened": False, "type": type(exc).__name__, **exc.to_dict()}))

    asyncio.run(main(sys.argv[1]))
    """
)


def _contend(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CONTENDER, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def test_a_second_store_in_the_same_process_is_locked_out(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as first:
            await first.append(make_event(0))
            with pytest.raises(StoreLocked) as caught:
                await EventStore.open(store_dir)
            assert caught.value.code == "store_locked" and caught.value.retryable
            with pytest.raises(StoreLocked):
                async with EventStore(store_dir):
                    pass
            assert (await first.append(make_event(1))).sequence == 2, "the failed open disturbed the owner"
        async with EventStore(store_dir) as reopened:  # released on close
            assert reopened.head_sequence == 2

    run(scenario())


def test_another_process_is_locked_out_while_this_one_holds_the_store(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0))
            outcome = await asyncio.get_running_loop().run_in_executor(None, _contend, store_dir)
            assert (outcome["opened"], outcome["type"], outcome["error"]) == (False, "StoreLocked", "store_locked")
            assert outcome["retryable"] is True
            assert (await store.append(make_event(1))).sequence == 2

    run(scenario())
    assert _contend(store_dir) == {"opened": True, "head": 2}


def test_this_process_is_locked_out_while_another_holds_the_store(store_dir: Path, run) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"

        async def contend() -> None:
            with pytest.raises(StoreLocked) as caught:
                await EventStore.open(store_dir)
            if Path("/proc/locks").exists():  # the refusal names who is in the way
                assert f"held by pid {holder.pid} (" in str(caught.value) and "EventStore" in str(caught.value)

        run(contend())
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0

    async def after() -> None:
        async with EventStore(store_dir) as store:
            assert (await store.get("child-started")).sequence == 1

    run(after())


def test_a_killed_holder_releases_the_lock_and_its_acknowledged_event_survives(store_dir: Path, run) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        holder.kill()  # SIGKILL: no close(), no cleanup
        assert holder.wait(timeout=30) == -9
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

    async def after() -> None:
        async with EventStore(store_dir) as store:
            assert (await store.get("child-started")).event_type is EventType.SYSTEM_STARTED
            assert (await store.append(Event(EventType.SYSTEM_STARTED, aggregate_id="system"))).sequence == 2

    run(after())
