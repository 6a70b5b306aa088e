"""Write-heavy (80/20) and read-heavy (20/80) mixes of agent traffic (ADR-004 load profiles).

A write appends the next generated event; a read loads the history of a command an agent recently wrote (a
query by aggregate id, as a validator or a pair partner would) and must find it: every read targets an
aggregate whose append was acknowledged, so an empty answer is a failed read-your-writes, not a fast one.
Both stores see the same seeded sequence of operations. Writes are judged on ADR-004's append p99, reads on
its 100 ms query line, each as the p99 of all operations of its kind (per-second p99s: timeline only).
"""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path
from time import monotonic_ns
from typing import Any

import pytest

from testkit.checkers import History
from testkit.data import AgentSessionGenerator, valid_batches
from testkit.load import ConstantRate, LoadResult, LoadRunner
from testkit.load.timeline import TimelineRecorder
from testkit.percentiles import HistogramSpec, LatencyRecorder

from .traffic import JUDGED, PairRecorder, agent_event_stream, check_no_loss, open_adapters

TOTAL_RATE = 800.0  # operations/s
DEFAULT_SECONDS = 8.0
PRELOAD = 2_000  # events stored before the mix starts, so the first reads have something to find
RECENT = 2_000  # reads pick among the aggregates of the last RECENT acknowledged writes
READ_LIMIT = 100
WRITE_P99_MS = 10.0  # ADR-004 append p99
READ_P99_MS = 100.0  # ADR-004 query line (range of 1,000 events p99)


@pytest.mark.parametrize("write_share", [0.8, 0.2], ids=["80-20-write-heavy", "20-80-read-heavy"])
def test_mixed_reads_and_writes(write_share: float, tmp_path: Path, run: Any, scaled: Any, pairs: PairRecorder,
                                testkit_record: Any) -> None:
    seconds = scaled(DEFAULT_SECONDS)
    profile = ConstantRate(TOTAL_RATE, seconds)
    spec = HistogramSpec()

    async def scenario() -> dict[str, Any]:
        outcomes = {}
        async with open_adapters(tmp_path) as adapters:
            for name, adapter in adapters.items():
                history = History(client_id=name)
                events = agent_event_stream(AgentSessionGenerator(seed=testkit_record.seed, agents=10))
                recent: deque[str] = deque(maxlen=RECENT)
                for batch in valid_batches([next(events) for _ in range(PRELOAD)], max_events=100):
                    await history.append_batch(adapter, batch)
                    recent.extend(e["aggregate_id"] for e in batch)
                choose = random.Random(testkit_record.seed)
                start_ns = monotonic_ns() + 50_000_000
                kinds = {"write": TimelineRecorder(start_ns, spec), "read": TimelineRecorder(start_ns, spec)}
                pooled = {"write": LatencyRecorder.from_spec(spec), "read": LatencyRecorder.from_spec(spec)}
                empty_reads = [0]

                async def operation(adapter: Any = adapter, history: History = history, events: Any = events,
                                    recent: deque[str] = recent, choose: random.Random = choose,
                                    kinds: dict[str, TimelineRecorder] = kinds, empty: list[int] = empty_reads,
                                    pooled: dict[str, LatencyRecorder] = pooled) -> None:
                    if choose.random() < write_share:
                        event = next(events)
                        started = monotonic_ns()
                        await history.append(adapter, event)
                        ended = monotonic_ns()
                        kinds["write"].completed(ended, ended - started)
                        pooled["write"].record(ended - started)
                        recent.append(event["aggregate_id"])
                    else:
                        aggregate = recent[choose.randrange(len(recent))]
                        started = monotonic_ns()
                        found = await adapter.query(aggregate_ids=[aggregate], limit=READ_LIMIT)
                        ended = monotonic_ns()
                        kinds["read"].completed(ended, ended - started)
                        pooled["read"].record(ended - started)
                        if not found:
                            empty[0] += 1

                runner = LoadRunner(progress=None, drain_timeout_s=10.0)
                result: LoadResult = await runner.open_loop_async(operation, profile, start_ns=start_ns)
                outcomes[name] = (result, await check_no_loss(adapter, history),
                                  {kind: recorder.finish() for kind, recorder in kinds.items()}, empty_reads[0],
                                  pooled)
        return outcomes

    outcomes = run(scenario(), timeout=seconds * 8 + 180)
    testkit_record.parameters.update(write_share=write_share, rate=TOTAL_RATE, seconds=seconds, preload=PRELOAD)
    typical: dict[str, dict[str, float]] = {"write": {}, "read": {}}
    for name, (result, verdict, timelines, empty, pooled) in outcomes.items():
        testkit_record.verdict(f"durability[{name}]", verdict)
        testkit_record.latency(f"operation[{name}]", result.latency)
        testkit_record.parameters[f"empty_reads[{name}]"] = empty
        for kind, points in timelines.items():
            typical[kind][name] = pooled[kind].percentile(99.0) / 1e6 if pooled[kind].count else float("inf")
            testkit_record.latency(f"{kind}[{name}]", pooled[kind])
            testkit_record.timeline(f"{kind}s [{name}]", [
                {"t": p.second, "completed": p.completed, "p99": None if p.p99_ns is None else p.p99_ns / 1e6}
                for p in points], {"p99": "ms"})
    pairs.add("write p99 (pooled)", "ms", typical["write"], target=("<=", WRITE_P99_MS))
    pairs.add("read p99 (pooled)", "ms", typical["read"], target=("<=", READ_P99_MS))
    pairs.add("achieved", "ops/s", {n: r.achieved_rate for n, (r, *_) in outcomes.items()}, direction="higher")

    result, verdict, _timelines, empty, _pooled = outcomes[JUDGED]
    assert verdict.ok, verdict.summary()
    assert result.errors == 0 and result.dropped_starts == 0 and result.unfinished == 0, str(result)
    assert empty == 0, f"{empty} reads did not find an aggregate whose append was acknowledged"
    assert typical["write"][JUDGED] <= WRITE_P99_MS, f"write p99 {typical['write'][JUDGED]} ms"
    assert typical["read"][JUDGED] <= READ_P99_MS, f"read p99 {typical['read'][JUDGED]} ms"
