"""`lighthouse bench` end to end at a small size, and the event-loop stall probe it reports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from lighthouse.bench import _idle_loop


def test_the_idle_loop_probe_sees_a_blocked_loop() -> None:
    """The idle reference is the same probe: a loop blocked for 40 ms shows up as a stall of about that size."""

    async def block_the_loop_once() -> None:
        await asyncio.sleep(0.05)
        deadline = time.perf_counter() + 0.04
        while time.perf_counter() < deadline:  # holds the loop: no await
            pass

    async def measure() -> dict[str, float]:
        blocker = asyncio.get_running_loop().create_task(block_the_loop_once())
        figures = await _idle_loop(0.2)
        await blocker
        return figures

    figures = asyncio.run(measure())
    assert figures["loop_stall_max_ms"] >= 35
    assert figures["loop_stall_p99_ms"] <= figures["loop_stall_max_ms"]


def test_bench_prints_both_systems_and_the_idle_loop_reference(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lighthouse.cli", "bench", "--events", "2000", "--single", "300", "--concurrent", "1000",
         "--batches", "2", "--queries", "10", "--dir", str(tmp_path / "stores"), "--json", str(tmp_path / "f.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "idle event loop, same probe" in out.stdout
    figures = json.loads((tmp_path / "f.json").read_text())
    idle = figures["results"]["physical"]["idle_loop"]
    assert 0 <= idle["loop_stall_p99_ms"] <= idle["loop_stall_max_ms"]
    x1 = figures["results"]["lighthouse"]["append_1"]
    assert x1["elapsed_s"] > 0 and 0 <= x1["loop_stall_p99_ms"] <= x1["loop_stall_max_ms"]
    rows = {row["metric"]: row for row in figures["table"]}
    assert rows["x1 event-loop stall p99"]["lighthouse"] == x1["loop_stall_p99_ms"]
    for metric in ("durable append x1 events/s", "durable append x64 events/s", "batch of 1000 events/s",
                   "replay events/s", "filtered query p99"):
        assert rows[metric]["lighthouse"] > 0 and rows[metric]["sqlite"] > 0, metric
