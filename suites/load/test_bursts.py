"""10x bursts of agent traffic: nothing lost, and latency back to its baseline within ADR-004's 30 s (scaled).

ADR-004: "10x bursts for 5 min with no loss; recovery within 30 s". Time is compressed by ``--testkit-duration``:
at the default scale (1.0) a minute of the ADR's time is one second here, so the burst lasts 5 s and recovery
is allowed 0.5 s; ``--testkit-duration=1h`` (scale 60) runs the ADR's real 5 minutes and 30 seconds.

Baseline latency is the p99 of the steady traffic before the burst (after a warm-up second). Latency is "back"
at the first window after the burst whose p99 is within twice that baseline: a store still draining a
backlog cannot have one, because queued appends carry their wait in their latency. Windows are a fifth of the
recovery allowance, so recovery is timed well within the allowance.
"""

from __future__ import annotations

from pathlib import Path
from time import monotonic_ns
from typing import Any

from testkit.checkers import History
from testkit.data import AgentSessionGenerator
from testkit.load import Bursts, LoadResult, LoadRunner

from .traffic import JUDGED, LatencyWindows, PairRecorder, agent_event_stream, check_no_loss, open_adapters

BASE_RATE = 500.0  # appends/s
BURST_FACTOR = 10
ADR_BURST_S = 300.0
ADR_RECOVERY_S = 30.0
ADR_SECONDS_PER_SECOND_AT_SCALE_1 = 60.0  # one second here stands for one minute of the ADR's time
WARM_UP_S = 1.0
BACK_TO_BASELINE = 2.0  # a window is at baseline when its p99 is at most this multiple of the baseline p99


def test_ten_fold_bursts_lose_nothing_and_latency_recovers(tmp_path: Path, run: Any, testkit_scale: float,
                                                           pairs: PairRecorder, testkit_record: Any) -> None:
    time_factor = testkit_scale / ADR_SECONDS_PER_SECOND_AT_SCALE_1
    burst_s = ADR_BURST_S * time_factor
    allowance_s = ADR_RECOVERY_S * time_factor
    steady_s = max(burst_s, 3 * WARM_UP_S)
    profile = Bursts(base_rate=BASE_RATE, burst_rate=BASE_RATE * BURST_FACTOR, period=steady_s + burst_s,
                     burst_duration=burst_s, duration=2 * steady_s + burst_s, first_burst_at=steady_s,
                     seed=testkit_record.seed)
    burst_start, burst_end = profile.burst_windows()[0]

    async def scenario() -> dict[str, tuple[LoadResult, Any, LatencyWindows]]:
        outcomes = {}
        async with open_adapters(tmp_path) as adapters:
            for name, adapter in adapters.items():
                history = History(client_id=name)
                events = agent_event_stream(AgentSessionGenerator(seed=testkit_record.seed, agents=20))

                async def append(adapter: Any = adapter, history: History = history, events: Any = events) -> None:
                    await history.append(adapter, next(events))

                start_ns = monotonic_ns() + 50_000_000
                windows = LatencyWindows(allowance_s / 5, start_ns)
                runner = LoadRunner(progress=None, drain_timeout_s=max(30.0, 2 * burst_s), max_in_flight=50_000)
                result = await runner.open_loop_async(windows.timed(append), profile, start_ns=start_ns)
                outcomes[name] = (result, await check_no_loss(adapter, history), windows)
        return outcomes

    outcomes = run(scenario(), timeout=profile.duration_s * 8 + 300)
    testkit_record.parameters.update(base_rate=BASE_RATE, burst_rate=BASE_RATE * BURST_FACTOR, burst_s=burst_s,
                                     recovery_allowance_s=allowance_s, window_s=allowance_s / 5)
    baseline, recovery, burst_p99 = {}, {}, {}
    for name, (result, verdict, windows) in outcomes.items():
        testkit_record.verdict(f"durability[{name}]", verdict)
        testkit_record.latency(f"append[{name}]", result.latency)
        testkit_record.timeline(f"burst [{name}]", [{"t": t, "p99": p99, "completed": n}
                                                    for t, p99, n in windows.series(99.0)], {"p99": "ms"},
                                shaded=[(burst_start, burst_end, f"burst ×{BURST_FACTOR:g}")])
        baseline[name] = windows.percentile(WARM_UP_S, burst_start, 99.0)
        burst_p99[name] = windows.percentile(burst_start, burst_end, 99.0)
        series = windows.series(99.0)
        back = [t for t, p99, _ in series if t >= burst_end and p99 <= BACK_TO_BASELINE * baseline[name]]
        # Never back: record the whole time observed after the burst, a lower bound, and say so.
        recovery[name] = (back[0] if back else series[-1][0]) - burst_end
        testkit_record.parameters[f"recovered[{name}]"] = bool(back)
    pairs.add("baseline append p99", "ms", baseline)
    pairs.add("append p99 during the burst", "ms", burst_p99)
    pairs.add("recovery to baseline", "s", recovery, target=("<=", allowance_s))
    pairs.add("lost acknowledged events", "events",
              {n: float(v.violation_counts.get("lost", 0)) for n, (_, v, _) in outcomes.items()})

    result, verdict, _ = outcomes[JUDGED]
    assert verdict.ok, verdict.summary()
    assert result.errors == 0 and result.dropped_starts == 0 and result.unfinished == 0, str(result)
    assert result.completed == result.offered
    assert testkit_record.parameters[f"recovered[{JUDGED}]"] and recovery[JUDGED] <= allowance_s, (
        f"latency took {recovery[JUDGED]:.2f} s after the burst to return within {BACK_TO_BASELINE}x of its "
        f"baseline p99 {baseline[JUDGED]:.2f} ms; allowed {allowance_s:.2f} s")
