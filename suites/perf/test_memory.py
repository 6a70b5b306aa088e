"""Memory per 1,000 stored events (RSS and tracemalloc) and a soak judged by the slope of memory growth.

Each measurement runs in a fresh interpreter (``memory_probe``): in the test runner, arenas freed by earlier
tests would absorb a store's growth. The soak is judged on traced bytes (exact; resident memory over a few
seconds mostly shows the C allocator keeping freed arenas, and is reported). A store legitimately grows with
every event it stores, in steps when its index doubles, so: the index size the store reports is taken out of
every sample, and the leak line is ADR-004's memory budget for the events the soak stores (1 MB per 1,000) plus
its 1 %/h of resident memory; the slope must exceed that *and* have a confidence interval above zero.
SQLite keeps its indexes on disk, so all of its growth counts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testkit.memory import leak_verdict

from . import adr
from .figures import AdrLine, Measured, PeerFigures
from .peers import PEER_NAMES

FILL_EVENTS = 100_000
TRACED_EVENTS = 20_000  # tracemalloc slows allocation-heavy code several times; growth per event is linear
SOAK_SECONDS = 10.0
SOAK_WARM_UP_S = 5.0  # long enough for lighthouse's frame cache (20,000 events) to fill from the soak's gets
ADR_BYTES_PER_EVENT = 1_000.0  # ADR-004: <= 1 MB per 1,000 events
ADR_LEAK_PER_HOUR = 0.01  # ADR-004: a leak is RSS growing by more than 1 % per hour
LEAK_LINE = AdrLine("<=", ADR_BYTES_PER_EVENT, "leak: growth beyond index > 1 KB/stored event + 1 %/h, CI above 0")


def _probe(root: Path, *args: str, timeout: float) -> dict[str, Any]:
    completed = subprocess.run([sys.executable, "-m", "suites.perf.memory_probe", *args], cwd=root,
                               capture_output=True, text=True, timeout=timeout, check=False)
    assert completed.returncode == 0, f"memory probe {args} failed:\n{completed.stderr[-3000:]}"
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def _per_thousand(marks: dict[str, dict[str, int | None]], kind: str, first: str, last: str, events: int) -> float:
    before, after = marks[first][kind], marks[last][kind]
    assert before is not None and after is not None, f"{kind} was not measured"
    return (after - before) * 1_000 / events


def test_memory_per_thousand_events_and_soak(tmp_path: Path, request: pytest.FixtureRequest, figures: PeerFigures,
                                             scaled: Any, testkit_record: Any) -> None:
    root = request.config.rootpath
    soak_seconds = scaled(SOAK_SECONDS)
    fills, traced, soaks = {}, {}, {}
    for name in PEER_NAMES:
        fills[name] = _probe(root, "fill", name, str(tmp_path / name), "--events", str(FILL_EVENTS), timeout=300)
        traced[name] = _probe(root, "fill", name, str(tmp_path / f"{name}-traced"), "--events", str(TRACED_EVENTS),
                              "--trace", timeout=300)
        soaks[name] = _probe(root, "soak", name, str(tmp_path / name), "--seconds", str(soak_seconds),
                             "--warm-up", str(SOAK_WARM_UP_S), timeout=soak_seconds * 3 + 120)
    testkit_record.parameters.update(fill_events=FILL_EVENTS, traced_events=TRACED_EVENTS, soak_seconds=soak_seconds)

    for name, fill in fills.items():
        assert fill["stats"]["events"] == FILL_EVENTS, f"{name} stored {fill['stats']['events']} events"

    def measured(values: dict[str, float]) -> dict[str, Measured]:
        return {name: Measured(value) for name, value in values.items()}

    rss = measured({n: _per_thousand(f["marks"], "rss", "open", "full", FILL_EVENTS) for n, f in fills.items()})
    marginal = measured({n: _per_thousand(f["marks"], "rss", "half", "full", FILL_EVENTS // 2)
                         for n, f in fills.items()})
    python = measured({n: _per_thousand(t["marks"], "traced", "open", "full", TRACED_EVENTS) for n, t in traced.items()})
    index = {"lighthouse": Measured(fills["lighthouse"]["stats"]["index_bytes"] * 1_000 / FILL_EVENTS),
             "sqlite": Measured(math.nan)}
    figures.add("RSS per 1,000 events", "bytes", line=adr.BYTES_PER_1000_EVENTS, **rss)
    figures.add("RSS per 1,000 events, 50k->100k", "bytes", **marginal)
    figures.add("traced bytes per 1,000 events", "bytes", line=adr.BYTES_PER_1000_EVENTS, **python)
    figures.add("index bytes per 1,000 events", "bytes", line=adr.INDEX_BYTES_PER_1000_EVENTS, **index)

    verdicts, per_event = {}, {}
    for name, soak in soaks.items():
        samples = soak["samples"]
        assert soak["cycles"] > 0 and len(samples) >= 20, f"{name}: the soak did too little to judge ({soak})"
        index_at_start = samples[0][4]
        traced = [(t, traced - (index - index_at_start)) for t, _rss, traced, _events, index in samples]
        span = samples[-1][0] - samples[0][0]
        stored_per_s = (samples[-1][3] - samples[0][3]) / span if span > 0 else 0.0
        typical_rss = sorted(rss for _, rss, *_ in samples)[len(samples) // 2]
        allowed = ADR_BYTES_PER_EVENT * stored_per_s + ADR_LEAK_PER_HOUR * typical_rss / 3_600
        verdicts[name] = leak_verdict(traced, max_bytes_per_s=allowed)
        per_event[name] = verdicts[name].slope_bytes_per_s / stored_per_s if stored_per_s else math.inf
        rss_verdict = leak_verdict([(t, rss) for t, rss, *_ in samples])
        testkit_record.parameters[f"soak[{name}]"] = {"traced": verdicts[name].reason, "rss": rss_verdict.reason,
                                                      "stored_per_s": stored_per_s}
        testkit_record.timeline(f"soak memory [{name}]", [
            {"t": t, "rss_mb": rss / 1e6, "traced_beyond_index_mb": (traced - (index - index_at_start)) / 1e6}
            for t, rss, traced, _events, index in samples], {"rss_mb": "MB", "traced_beyond_index_mb": "MB"})
        figures.info(f"soak append rate[{name}]", soak["achieved_append_rate"], "events/s", "higher")
    figures.add("soak growth beyond index per stored event", "bytes", line=LEAK_LINE,
                judged=not verdicts["lighthouse"].leaking, **measured(per_event))
    for name, verdict in verdicts.items():
        testkit_record.verdict(f"leak[{name}]", {"ok": not verdict.leaking, "counts": {
            "samples_used": verdict.samples_used,
            "inconclusive": verdict.inconclusive}, "violations": [] if not verdict.leaking else [verdict.reason]})

    assert not verdicts["lighthouse"].leaking, verdicts["lighthouse"].reason
    figures.assert_lines_met()
