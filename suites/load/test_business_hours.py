"""A working day of multi-agent coordination traffic, compressed into seconds, against every store.

The agent-session generator plays agents registering, proposing commands, being validated or escalated,
changing files and pairing (heavy-tailed payloads up to the 1 MiB limit); the business-hours profile shapes the
day (night floor, morning ramp, late-morning peak, lunch dip). Open loop: latency counts from each append's
intended start. lighthouse must lose nothing and meet ADR-004's append p99 and p99.9 over the whole day (the
percentiles of all appends, one merged histogram; per-second p99s are in the timeline only); SQLite is measured
on the same day and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testkit.checkers import History
from testkit.data import AgentSessionGenerator
from testkit.load import BusinessHours, LoadResult, LoadRunner

from .traffic import JUDGED, PairRecorder, agent_event_stream, check_no_loss, open_adapters

PEAK_RATE = 400.0  # appends/s at the late-morning peak; the night floor is 4 % of it
DEFAULT_SECONDS = 20.0
AGENTS = 10
APPEND_P99_MS = 10.0  # ADR-004
APPEND_P999_MS = 100.0  # ADR-004


def test_a_business_day_of_agent_sessions(tmp_path: Path, run: Any, scaled: Any, pairs: PairRecorder,
                                          testkit_record: Any) -> None:
    seconds = scaled(DEFAULT_SECONDS)
    profile = BusinessHours(peak_rate=PEAK_RATE, duration=seconds, seed=testkit_record.seed)

    async def scenario() -> dict[str, tuple[LoadResult, Any]]:
        outcomes = {}
        async with open_adapters(tmp_path) as adapters:
            for name, adapter in adapters.items():
                history = History(client_id=name)
                events = agent_event_stream(AgentSessionGenerator(seed=testkit_record.seed, agents=AGENTS))

                async def append(adapter: Any = adapter, history: History = history, events: Any = events) -> None:
                    await history.append(adapter, next(events))

                result = await LoadRunner(progress=None, drain_timeout_s=10.0).open_loop_async(append, profile)
                outcomes[name] = (result, await check_no_loss(adapter, history))
        return outcomes

    outcomes = run(scenario(), timeout=seconds * 6 + 120)
    testkit_record.parameters.update(seconds=seconds, peak_rate=PEAK_RATE, agents=AGENTS,
                                     offered=profile.expected_count())
    for name, (result, verdict) in outcomes.items():
        testkit_record.verdict(f"durability[{name}]", verdict)
        testkit_record.latency(f"append[{name}]", result.latency)
        testkit_record.timeline(f"business day [{name}]", [
            {"t": p.second, "offered": p.offered, "completed": p.completed, "errors": p.errors,
             "p99": None if p.p99_ns is None else p.p99_ns / 1e6} for p in result.timeline], {"p99": "ms"})
    pairs.add("append p99 (day)", "ms", {n: r.latency.percentile(99.0) / 1e6 for n, (r, _) in outcomes.items()},
              target=("<=", APPEND_P99_MS))
    pairs.add("append p99.9 (day)", "ms", {n: r.latency.percentile(99.9) / 1e6 for n, (r, _) in outcomes.items()},
              target=("<=", APPEND_P999_MS))
    pairs.add("completed", "events", {n: float(r.completed) for n, (r, _) in outcomes.items()}, direction="higher")

    result, verdict = outcomes[JUDGED]
    assert verdict.ok, verdict.summary()
    assert result.errors == 0 and result.dropped_starts == 0 and result.unfinished == 0, str(result)
    assert result.completed == result.offered > 0
    assert result.latency.percentile(99.0) / 1e6 <= APPEND_P99_MS, str(result.latency.summary())
    assert result.latency.percentile(99.9) / 1e6 <= APPEND_P999_MS, str(result.latency.summary())
