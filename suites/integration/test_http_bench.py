"""``benchmarks/http_bench.py`` end to end on a real server: rounds, the pooled summary, the no-op shares.

Speed is not judged here (that is the benchmark's job on a quiet machine); what is checked is that the
figures it prints are the ones it measured: every round's requests are in the pooled summary, and each
single-append share is taken against the no-op rate of the same round.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.percentiles import LatencyRecorder

pytestmark = pytest.mark.ci

ROOT = Path(__file__).resolve().parents[2]


def test_rounds_are_pooled_and_each_share_uses_its_own_rounds_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "http_bench.py"), "--seconds", "0.6", "--rounds", "2",
         "--only", "noop c=8,single c=8", "--durability", "none", "--json", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = json.loads(out.read_text())
    assert [(r["scenario"], r["round"]) for r in rows] == [("noop c=8", 1), ("single c=8", 1), ("noop c=8", 2),
                                                            ("single c=8", 2)]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in rows), rows
    shares = [s["requests_per_s"] / n["requests_per_s"] for n, s in (rows[0:2], rows[2:4])]
    listed = re.search(r"single c=8: (\d+)% of the no-op ceiling \(rounds: (\d+)%, (\d+)%\)", run.stdout)
    assert listed, run.stdout
    assert [f"{listed.group(2)}%", f"{listed.group(3)}%"] == [f"{x:.0%}" for x in shares]
    summary = run.stdout.split("summary of 2 rounds", 1)[1]
    line = next(text for text in summary.splitlines() if text.startswith("single c=8"))
    pooled = LatencyRecorder().merge(*(LatencyRecorder.decode(r["histogram"]) for r in rows[1::2]))
    assert pooled.count == rows[1]["requests"] + rows[3]["requests"]
    assert f"{pooled.percentile(99) / 1e6:.2f}" in line.split()
