"""The bench's two loop probes: a tick's lateness, and how long one task holds the loop per step."""

from __future__ import annotations

import asyncio
import time

import pytest

from lighthouse.loop_probes import TimedSteps, idle_loop_lateness, p99_and_max

_BLOCK_S = 0.04


def _hold_the_loop(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:  # no await: nothing else on the loop runs
        pass


def test_the_lateness_probe_sees_a_blocked_loop() -> None:
    """A loop blocked for 40 ms shows up as a tick about that late."""

    async def block_the_loop_once() -> None:
        await asyncio.sleep(0.05)
        _hold_the_loop(_BLOCK_S)

    async def measure() -> dict[str, float]:
        blocker = asyncio.get_running_loop().create_task(block_the_loop_once())
        figures = await idle_loop_lateness(0.2)
        await blocker
        return figures

    figures = asyncio.run(measure())
    assert figures["loop_stall_max_ms"] >= 35
    assert figures["loop_stall_p99_ms"] <= figures["loop_stall_max_ms"]


def test_timed_steps_time_each_step_and_keep_the_result() -> None:
    """Three steps (two suspensions): the one that held the loop for 40 ms is the longest, the others are short,
    and the task's result comes through the wrapper."""

    async def three_steps() -> str:
        await asyncio.sleep(0)
        _hold_the_loop(_BLOCK_S)
        await asyncio.sleep(0)
        return "done"

    steps: list[int] = []

    async def run() -> str:
        return await asyncio.get_running_loop().create_task(TimedSteps(three_steps(), steps))

    assert asyncio.run(run()) == "done"
    assert len(steps) == 3
    longest = max(steps)
    assert steps.index(longest) == 1 and longest >= _BLOCK_S * 0.9e9
    assert sorted(steps)[1] < longest / 4
    summary = p99_and_max(steps, "loop_step")
    assert summary["loop_step_max_ms"] == longest / 1e6 and summary["loop_step_p99_ms"] <= summary["loop_step_max_ms"]


def test_timed_steps_take_away_what_the_inner_clock_counted() -> None:
    """A step that spends 40 ms in something counted by the inner clock (as the store counts its writes) held the
    loop beyond it for only the rest of the step."""
    counted = [0.0]

    async def counted_wait() -> None:
        await asyncio.sleep(0)
        started = time.perf_counter()
        _hold_the_loop(_BLOCK_S)
        counted[0] += time.perf_counter() - started
        _hold_the_loop(_BLOCK_S / 4)  # not counted: beyond the inner clock

    steps: list[int] = []
    beyond: list[int] = []

    async def run() -> None:
        await asyncio.get_running_loop().create_task(
            TimedSteps(counted_wait(), steps, inner_clock=lambda: counted[0], beyond_inner=beyond))

    asyncio.run(run())
    assert len(steps) == len(beyond) == 2
    assert steps[1] >= _BLOCK_S * 1.2e9
    assert _BLOCK_S / 4 * 0.9e9 <= beyond[1] < _BLOCK_S * 0.5e9
    orphan = counted_wait()
    with pytest.raises(ValueError):
        TimedSteps(orphan, steps, inner_clock=lambda: 0.0)
    orphan.close()


def test_timed_steps_pass_cancellation_through() -> None:
    """A cancelled task is cancelled inside the wrapped coroutine too (``throw`` is forwarded, and timed)."""
    seen: list[str] = []
    steps: list[int] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def run() -> None:
        task = asyncio.get_running_loop().create_task(TimedSteps(waits_forever(), steps))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert seen == ["cancelled"] and len(steps) == 2
