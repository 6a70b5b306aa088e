"""Many concurrent simulated agents, each appending its own session in order with think time between steps.

The generator's stream is split by source agent; each agent spreads its share over the run with exponential
think times, so the store sees ``EVENTS_PER_S`` events/s from every agent the generator has started by then.

Each agent is a task that appends its events one after another (as a real agent waits for each answer), so the
store sees ``AGENTS`` concurrent writers. Beyond latency and loss, the durability checker's real-time rule
checks each agent's order: an append acknowledged before another was sent must get the smaller sequence.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from testkit.checkers import History
from testkit.data import AgentSessionGenerator
from testkit.percentiles import LatencyRecorder

from .traffic import JUDGED, PairRecorder, check_no_loss, open_adapters

AGENTS = 400  # in the generator's roster; the first EVENTS_PER_S * seconds events involve most of them
MIN_ACTIVE_AGENTS = 150
EVENTS_PER_S = 1_000.0
DEFAULT_SECONDS = 8.0
APPEND_P99_MS = 10.0  # ADR-004


def test_many_concurrent_agents(tmp_path: Path, run: Any, scaled: Any, pairs: PairRecorder,
                                testkit_record: Any) -> None:
    seconds = scaled(DEFAULT_SECONDS)
    total = int(EVENTS_PER_S * seconds)
    stream = list(_take(AgentSessionGenerator(seed=testkit_record.seed, agents=AGENTS).events(), total))
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in stream:
        by_agent[event["source_agent"]].append(event)

    async def scenario() -> dict[str, tuple[LatencyRecorder, Any, float]]:
        outcomes = {}
        async with open_adapters(tmp_path) as adapters:
            for name, adapter in adapters.items():
                history = History(client_id=name)
                recorder = LatencyRecorder()
                rng = random.Random(testkit_record.seed)
                # Each agent spreads its own events at random moments over the run (a Poisson process given its
                # count), so a busy agent thinks less between steps and every agent is done by the end.
                thinks = {}
                for agent_id, events in by_agent.items():
                    moments = sorted(rng.uniform(0, seconds) for _ in events)
                    thinks[agent_id] = [b - a for a, b in zip([0.0, *moments], moments)]

                async def agent(events: list[dict[str, Any]], pauses: list[float], adapter: Any = adapter,
                                history: History = history, recorder: LatencyRecorder = recorder) -> None:
                    for event, pause in zip(events, pauses, strict=True):
                        await asyncio.sleep(pause)
                        with recorder.time():
                            await history.append(adapter, event)

                loop = asyncio.get_running_loop()
                started = loop.time()
                await asyncio.gather(*(agent(events, thinks[a]) for a, events in by_agent.items()))
                elapsed = loop.time() - started
                outcomes[name] = (recorder, await check_no_loss(adapter, history), total / elapsed)
        return outcomes

    outcomes = run(scenario(), timeout=seconds * 10 + 180)
    testkit_record.parameters.update(agents=len(by_agent), events=total, seconds=seconds)
    for name, (recorder, verdict, _rate) in outcomes.items():
        testkit_record.verdict(f"durability[{name}]", verdict)
        testkit_record.latency(f"append[{name}]", recorder)
    pairs.add("append p99", "ms", {n: r.percentile(99.0) / 1e6 for n, (r, _, _) in outcomes.items()},
              target=("<=", APPEND_P99_MS))
    pairs.add("append p50", "ms", {n: r.percentile(50.0) / 1e6 for n, (r, _, _) in outcomes.items()})
    pairs.add("achieved", "events/s", {n: rate for n, (_, _, rate) in outcomes.items()}, direction="higher")

    recorder, verdict, _ = outcomes[JUDGED]
    assert len(by_agent) >= MIN_ACTIVE_AGENTS, f"only {len(by_agent)} agents took part"
    assert verdict.ok, verdict.summary()
    assert recorder.count == total
    assert recorder.percentile(99.0) / 1e6 <= APPEND_P99_MS, str(recorder.summary())


def _take(iterator: Any, n: int) -> Any:
    for _, item in zip(range(n), iterator):
        yield item
