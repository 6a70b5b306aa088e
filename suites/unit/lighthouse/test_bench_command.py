"""`lighthouse bench` end to end at a small size (the loop probes themselves: test_loop_probes.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_prints_both_systems_and_the_loop_references(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lighthouse.cli", "bench", "--events", "2000", "--single", "300", "--concurrent", "1000",
         "--batches", "2", "--queries", "10", "--dir", str(tmp_path / "stores"), "--json", str(tmp_path / "f.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "an idle loop as long" in out.stdout and "x1 appender held the loop per step" in out.stdout
    figures = json.loads((tmp_path / "f.json").read_text())
    idle = figures["results"]["physical"]["idle_loop"]
    assert 0 <= idle["loop_stall_p99_ms"] <= idle["loop_stall_max_ms"]
    x1 = figures["results"]["lighthouse"]["append_1"]
    assert x1["elapsed_s"] > 0 and 0 <= x1["loop_stall_p99_ms"] <= x1["loop_stall_max_ms"]
    assert 0 < x1["loop_step_p99_ms"] <= x1["loop_step_max_ms"]
    assert 0 <= x1["loop_step_beyond_write_max_ms"] <= x1["loop_step_max_ms"]
    rows = {row["metric"]: row for row in figures["table"]}
    assert rows["x1 event-loop stall p99"]["lighthouse"] == x1["loop_stall_p99_ms"]
    assert rows["x1 loop held per step max"]["lighthouse"] == x1["loop_step_max_ms"]
    for metric in ("durable append x1 events/s", "durable append x64 events/s", "batch of 1000 events/s",
                   "replay events/s", "filtered query p99"):
        assert rows[metric]["lighthouse"] > 0 and rows[metric]["sqlite"] > 0, metric
