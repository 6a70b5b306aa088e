"""``benchmarks/checkpoint_stall.py`` end to end: every batch is in the pooled figures and the store's
checkpoints really happened during the run (speed is the benchmark's business, not CI's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ci

ROOT = Path(__file__).resolve().parents[2]


def test_every_batch_is_pooled_and_the_checkpoints_were_written(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "checkpoint_stall.py"), "--events", "30000", "--rate", "10000",
         "--writers", "3", "--checkpoint-every", "10000", "--slow-ms", "0", "--dir", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("30,000 events in "), run.stdout
    pooled = re.search(r"pooled, from intended start: n=(\d+) ", run.stdout)
    assert pooled and int(pooled.group(1)) == 300, run.stdout  # 30,000 events in batches of 100
    written = re.search(r"checkpoints written: (\d+)", run.stdout)
    assert written and int(written.group(1)) >= 1, run.stdout  # one per 10,000 events (the last may be in flight)
    seconds = re.findall(r"second +(\d+): p50", run.stdout)
    assert seconds and all(0 <= int(s) <= 3 for s in seconds), run.stdout  # a 3-second plan; --slow-ms 0 lists each
    assert list(tmp_path.iterdir()) == [], "the store's directory is removed"
