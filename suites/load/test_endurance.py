"""Endurance: steady agent traffic (80 % writes, 20 % reads) for the whole ``--testkit-duration`` (seconds by
default, ``--testkit-duration=72h`` for ADR-004's 72-hour run), with no loss and a memory leak verdict.

Memory is judged on tracemalloc's traced bytes (every Python and numpy allocation, exactly); resident memory is
sampled alongside and reported, but in-process RSS over a short run mostly shows the C allocator keeping freed
arenas. A store legitimately grows with every event it stores, so the leak line is ADR-004's memory budget for
the events the soak stores (1 MB per 1,000 events) plus its leak rule (1 % of resident memory per hour) for
everything else; growth must exceed that *and* have a slope confidence interval above zero to count
(``testkit.memory.leak_verdict``). An in-memory index grows in steps (a table doubles, a block of rows is
frozen into arrays), and one step in a short soak would read as a steep slope, so the index size the store
reports (lighthouse's ``stats().index_bytes``) is taken out of every sample; a store that reports nothing is
judged on all of its growth. Tracing slows allocation-heavy code, so latency is reported here and judged
by the mixes test, which runs untraced. The harness stays flat: events come session by session from the
generator (its interleaved stream keeps every finished session), and acknowledgements go to a compact ledger
(sequence and id hash, 16 bytes each, counted in the budget) that is checked against a full read at the end.
SQLite's soak is capped at ``PEER_CAP_S``: it is reported, never judged.
"""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

import psutil

from testkit.data import AgentSessionGenerator, valid_batches
from testkit.load import ConstantRate, LoadRunner
from testkit.percentiles import HistogramSpec
from testkit.memory import leak_verdict

from .traffic import (
    JUDGED,
    AckLedger,
    PairRecorder,
    median,
    open_adapters,
    reported_index_bytes,
    session_events,
)

DEFAULT_SECONDS = 20.0
PEER_CAP_S = 3_600.0
RATE = 300.0  # operations/s
WRITE_SHARE = 0.8
PRELOAD_EVENTS = 20_000  # stored before the soak, so reads have targets and the store is not empty
ADR_LEAK_PER_HOUR = 0.01  # ADR-004: a leak is RSS growing by more than 1 % per hour
ADR_BYTES_PER_EVENT = 1_000.0  # ADR-004: <= 1 MB of memory per 1,000 events
SAMPLE_INTERVAL_S = 0.2
# 1 us .. 10 min at 2 significant figures: a few KB per histogram, so the runner's per-second histograms do not
# saw the traced memory up and down by a quarter of a megabyte every second.
SOAK_HISTOGRAMS = HistogramSpec(lowest_ns=1_000, highest_ns=600_000_000_000, significant_figures=2)


def test_endurance_with_memory_leak_verdict(tmp_path: Path, run: Any, testkit_duration: float | None,
                                            pairs: PairRecorder, testkit_record: Any) -> None:
    seconds = testkit_duration or DEFAULT_SECONDS
    process = psutil.Process()

    async def scenario() -> dict[str, dict[str, Any]]:
        outcomes: dict[str, dict[str, Any]] = {}
        async with open_adapters(tmp_path) as adapters:
            for name, adapter in adapters.items():
                soak_s = seconds if name == JUDGED else min(seconds, PEER_CAP_S)
                events = session_events(AgentSessionGenerator(seed=testkit_record.seed, agents=20))
                preload = [next(events) for _ in range(PRELOAD_EVENTS)]
                recent: deque[str] = deque((e["aggregate_id"] for e in preload), maxlen=2_000)
                ledger = AckLedger()
                for batch in valid_batches(preload, max_events=100):
                    ledger.add_all(await adapter.append_batch(batch))
                del preload
                tracemalloc.start()
                choose = random.Random(testkit_record.seed)
                writes = [0]

                async def operation(adapter: Any = adapter, ledger: AckLedger = ledger, events: Any = events,
                                    recent: deque[str] = recent, choose: random.Random = choose,
                                    writes: list[int] = writes) -> None:
                    if choose.random() < WRITE_SHARE:
                        event = next(events)
                        ledger.add(await adapter.append(event))
                        recent.append(event["aggregate_id"])
                        writes[0] += 1
                    else:
                        found = await adapter.query(aggregate_ids=[recent[choose.randrange(len(recent))]], limit=100)
                        assert found, "a read did not find an aggregate whose append was acknowledged"

                samples: list[tuple[float, int, int]] = []
                sampling = asyncio.create_task(_sample_memory(adapter, process, samples))
                try:
                    runner = LoadRunner(progress="auto", drain_timeout_s=30.0, spec=SOAK_HISTOGRAMS)
                    result = await runner.open_loop_async(operation, ConstantRate(RATE, soak_s))
                finally:
                    sampling.cancel()
                    await asyncio.gather(sampling, return_exceptions=True)
                    tracemalloc.stop()
                write_rate = writes[0] / result.duration_s
                typical_rss = median([float(rss) for _, rss, _ in samples])
                allowed = ADR_BYTES_PER_EVENT * write_rate + ADR_LEAK_PER_HOUR * typical_rss / 3_600
                traced = [(t, value) for t, _, value in samples]
                verdict = leak_verdict(traced, max_bytes_per_s=allowed)
                outcomes[name] = {"result": result, "samples": samples,
                                  "per_event": verdict.slope_bytes_per_s / write_rate if write_rate else 0.0,
                                  "write_rate": write_rate, "allowed": allowed,
                                  "verdict": verdict,
                                  "rss_verdict": leak_verdict([(t, rss) for t, rss, _ in samples]),
                                  "missing": await ledger.missing_from(adapter), "acknowledged": len(ledger),
                                  "seconds": soak_s}
        return outcomes

    outcomes = run(scenario(), timeout=seconds * 2 + min(seconds, PEER_CAP_S) * 2 + 600)
    testkit_record.parameters.update(seconds=seconds, rate=RATE, write_share=WRITE_SHARE,
                                     preload_events=PRELOAD_EVENTS)
    for name, outcome in outcomes.items():
        verdict = outcome["verdict"]
        testkit_record.verdict(f"durability[{name}]", {
            "ok": not outcome["missing"], "counts": {"acknowledged": outcome["acknowledged"],
                                                     "lost": len(outcome["missing"])},
            "violations": outcome["missing"][:50]})
        testkit_record.verdict(f"leak[{name}]", {"ok": not verdict.leaking, "counts": {
            "samples_used": verdict.samples_used,
            "inconclusive": verdict.inconclusive}, "violations": [verdict.reason] if verdict.leaking else []})
        testkit_record.latency(f"operation[{name}]", outcome["result"].latency)
        testkit_record.timeline(f"endurance memory [{name}]",
                                [{"t": t, "rss_mb": rss / 1e6, "traced_mb": traced / 1e6}
                                 for t, rss, traced in outcome["samples"]], {"rss_mb": "MB", "traced_beyond_index_mb": "MB"})
        testkit_record.parameters[f"rss[{name}]"] = outcome["rss_verdict"].reason
        testkit_record.parameters[f"leak[{name}]"] = verdict.reason
    pairs.add("traced memory slope beyond the index", "bytes/s", {n: o["verdict"].slope_bytes_per_s for n, o in outcomes.items()})
    pairs.add("memory slope allowed", "bytes/s", {n: o["allowed"] for n, o in outcomes.items()})
    pairs.add("RSS slope (reported)", "bytes/s", {n: o["rss_verdict"].slope_bytes_per_s for n, o in outcomes.items()})
    pairs.add("traced growth per stored event beyond the index", "bytes", {n: o["per_event"] for n, o in outcomes.items()})
    pairs.add("operation p99 under tracing", "ms",
              {n: o["result"].latency.percentile(99.0) / 1e6 for n, o in outcomes.items()})

    judged = outcomes[JUDGED]
    result = judged["result"]
    assert judged["acknowledged"] > PRELOAD_EVENTS
    assert not judged["missing"], f"acknowledged events missing from a full read: {judged['missing'][:10]}"
    assert result.errors == 0 and result.dropped_starts == 0 and result.unfinished == 0, str(result)
    assert not judged["verdict"].leaking, judged["verdict"].reason


async def _sample_memory(adapter: Any, process: psutil.Process, samples: list[tuple[float, int, int]]) -> None:
    """Every ``SAMPLE_INTERVAL_S``: resident memory, and traced bytes less the growth of the store's index."""
    loop = asyncio.get_running_loop()
    started, index_at_start = loop.time(), reported_index_bytes(adapter)
    while True:
        index_growth = reported_index_bytes(adapter) - index_at_start
        samples.append((loop.time() - started, process.memory_info().rss,
                        tracemalloc.get_traced_memory()[0] - index_growth))
        await asyncio.sleep(SAMPLE_INTERVAL_S)
