"""The ADR-004 soak: 10,000 events/s, durable and batched, for as long as ``--testkit-duration`` says.

``make soak`` runs it for an hour (``make soak SOAK=24h`` for a day); without a duration it runs for
``DEFAULT_SECONDS`` so ``make load`` proves the machinery. Open loop: 100 batches of 100 events are offered
every second whatever the store does, and latency counts from each batch's intended start. Judged: the achieved
event rate (ADR: 10,000 events/s) and the batch p99 of *all* batches (ADR: 50 ms, one merged histogram;
per-second p99s are the timeline only), no acknowledged event lost (a full read at the end), and no leak.

Leak verdict: anonymous resident memory (RSS less file-backed pages, which are the page cache of segments, not
a leak) is sampled every second. Two things legitimately grow with every event and are taken out: the store's
index, which reports its size (``stats().index_bytes``), and the harness's ledger of acknowledgements (16 bytes
per event, needed to prove no loss). What is left must not grow faster than ADR-004's leak rule (1 % of resident
memory per hour) with a slope confidence interval above zero (``testkit.memory.leak_verdict``). Aggregates cycle
over a fixed set, so per-aggregate state stays bounded. A store that falls behind the schedule holds every batch
still waiting in memory, which is backlog, not a leak: only samples taken while at most ``CAUGHT_UP_IN_FLIGHT``
batches were in flight are judged, and when too few are left the leak verdict says it was not judged (falling
behind is then a missed speed line of its own).
Speed lines are judged by ``make soak`` / ``make load``; in a ``-m ci`` run they are only recorded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psutil

from testkit.adapters import available_adapters
from testkit.load import ConstantRate, LoadRunner
from testkit.machine_activity import (
    ActivitySample,
    MachineActivity,
    activity_per_interval,
    machine_note,
    split_by_slow_intervals,
)
from testkit.memory import InsufficientSamplesError, LeakVerdict, leak_verdict
from testkit.percentiles import HistogramSpec
from testkit.speed import SpeedLines

from .traffic import JUDGED, AckLedger, open_adapters, reported_index_bytes

DEFAULT_SECONDS = 10.0
EVENTS_PER_S = 10_000.0  # ADR-004: 10,000 events/s sustained
BATCH = 100
BATCH_P99_MS = 50.0  # ADR-004 batch p99
AGGREGATES = 5_000  # aggregate ids cycle: per-aggregate state stays bounded, only the index grows
ADR_LEAK_PER_HOUR = 0.01
SAMPLE_INTERVAL_S = 1.0
CAUGHT_UP_IN_FLIGHT = 10  # batches in flight while the store keeps up with the schedule
# At most 5 s of schedule waits in memory: a store that falls further behind gets dropped starts (counted and
# judged as a missed speed line), not an ever-growing queue that outlives the soak by many minutes.
MAX_IN_FLIGHT = 500
MIN_JUDGED_SHARE = 0.5  # the leak verdict needs at least half the samples taken while caught up
# 2 significant figures keep each second's histogram small, so a day's timeline does not read as a leak.
SOAK_HISTOGRAMS = HistogramSpec(lowest_ns=1_000, highest_ns=600_000_000_000, significant_figures=2)


class BatchMaker:
    """The soak's events, made cheaply: generating them is the driver's cost, not the store's, yet it runs inside
    the timed operation (latency counts from the intended start), so it must stay small next to the store's.

    Ids are ``str(uuid.UUID(int=(7 << 64) | i))`` written directly (the uuid module costs ~2 us an event);
    aggregate and agent names and the (read-only) payloads come from tables, since they cycle.
    """

    def __init__(self) -> None:
        self._aggregates = [f"agent:{i}" for i in range(AGGREGATES)]
        self._agents = [f"agent-{i}" for i in range(16)]
        self._payloads = [{"load": load, "note": "soak"} for load in range(97)]

    def batch(self, number: int) -> list[dict[str, Any]]:
        first = number * BATCH
        aggregates, agents, payloads = self._aggregates, self._agents, self._payloads
        return [{"event_id": f"00000000-0000-0007-{i >> 48 & 0xFFFF:04x}-{i & 0xFFFFFFFFFFFF:012x}",
                 "event_type": "agent_heartbeat", "aggregate_id": aggregates[i % AGGREGATES],
                 "aggregate_type": "agent", "source_agent": agents[i % 16], "data": payloads[i % 97]}
                for i in range(first, first + BATCH)]


async def _sample(adapter: Any, ledger: AckLedger, in_flight: list[int],
                  samples: list[tuple[float, int, int, int, int]], machine: list[ActivitySample]) -> None:
    """Every ``SAMPLE_INTERVAL_S``: time, anonymous resident memory, the bytes that legitimately grow (the
    index the store reports plus the harness's ledger), the whole RSS, and the batches in flight; and what the
    machine did meanwhile (disk busy time, other processes' CPU), to tell the store's stalls from the machine's."""
    process = psutil.Process()
    activity = MachineActivity(process)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        memory = process.memory_info()
        expected = reported_index_bytes(adapter) + len(ledger) * AckLedger.BYTES_PER_ENTRY
        now = loop.time() - started
        samples.append((now, memory.rss - memory.shared, expected, memory.rss, in_flight[0]))
        machine.append(activity.sample(now))
        await asyncio.sleep(SAMPLE_INTERVAL_S)


def _verdict(samples: list[tuple[float, float]]) -> LeakVerdict:
    """The leak verdict, or an unjudged one (``samples_used == 0``) when a short or starved run sampled too little."""
    try:
        return leak_verdict(samples, max_growth_per_hour=ADR_LEAK_PER_HOUR)
    except InsufficientSamplesError as error:
        return LeakVerdict(0.0, 0.0, False, 0.0, 0.0, 0.0, 0, 0.0, f"too few memory samples: {error}")


def test_ten_thousand_events_per_second_soak(tmp_path: Path, run: Any, testkit_duration: float | None,
                                             testkit_record: Any, speed_lines: SpeedLines) -> None:
    seconds = testkit_duration or DEFAULT_SECONDS
    profile = ConstantRate(EVENTS_PER_S / BATCH, seconds)
    specs = [spec for spec in available_adapters() if spec.name == JUDGED]

    async def scenario() -> dict[str, Any]:
        async with open_adapters(tmp_path, specs) as adapters:
            adapter = adapters[JUDGED]
            ledger = AckLedger()
            numbers = iter(range(10**12))
            in_flight = [0]
            maker = BatchMaker()

            async def append_batch() -> None:
                in_flight[0] += 1
                try:
                    ledger.add_all(await adapter.append_batch(maker.batch(next(numbers))))
                finally:
                    in_flight[0] -= 1

            samples: list[tuple[float, int, int, int, int]] = []
            machine: list[ActivitySample] = []
            sampling = asyncio.create_task(_sample(adapter, ledger, in_flight, samples, machine))
            try:
                runner = LoadRunner(progress="auto", drain_timeout_s=60.0, spec=SOAK_HISTOGRAMS,
                                    max_in_flight=MAX_IN_FLIGHT)
                result = await runner.open_loop_async(append_batch, profile)
            finally:
                sampling.cancel()
                await asyncio.gather(sampling, return_exceptions=True)
            return {"result": result, "samples": samples, "machine": machine, "acknowledged": len(ledger),
                    "missing": await ledger.missing_from(adapter)}

    outcome = run(scenario(), timeout=seconds * 3 + 600)
    result, samples = outcome["result"], outcome["samples"]
    expected_at_start = samples[0][2]
    beyond_expected = [(t, anon - (expected - expected_at_start), flying) for t, anon, expected, _, flying in samples]
    caught_up = [(t, memory) for t, memory, flying in beyond_expected if flying <= CAUGHT_UP_IN_FLIGHT]
    judged_leak = len(caught_up) >= max(8, MIN_JUDGED_SHARE * len(samples))
    verdict = _verdict(caught_up if judged_leak else [(t, memory) for t, memory, _ in beyond_expected])
    judged_leak = judged_leak and verdict.samples_used > 0
    leak_reason = verdict.reason if judged_leak else (
        f"not judged: only {len(caught_up)} of {len(samples)} samples were taken while the store kept up "
        f"(<= {CAUGHT_UP_IN_FLIGHT} batches in flight); {verdict.reason}")
    rss_only = _verdict([(t, rss) for t, _, _, rss, _ in samples])
    rate = result.completed * BATCH / result.duration_s
    p99_ms = result.latency.percentile(99.0) / 1e6
    p999_ms = result.latency.percentile(99.9) / 1e6
    # The seconds whose batches missed the p99 line, as the spans those batches were in flight (a batch completes
    # in the second a stall ends): what the disk and the other processes did then, against the rest of the run.
    machine = activity_per_interval(outcome["machine"], psutil.cpu_count() or 1)
    slow = [(p.second + 1 - p.p99_ns / 1e9, p.second + 1.0) for p in result.timeline
            if p.p99_ns is not None and p.p99_ns / 1e6 > BATCH_P99_MS]
    during = split_by_slow_intervals(machine, slow)

    testkit_record.sut = JUDGED
    testkit_record.parameters.update(seconds=seconds, offered_events_per_s=EVENTS_PER_S, batch=BATCH,
                                     offered=result.offered, completed=result.completed,
                                     late_starts=result.late_starts, dropped_starts=result.dropped_starts,
                                     unfinished=result.unfinished, errors=result.errors_by_kind,
                                     leak=leak_reason, rss=rss_only.reason,
                                     max_in_flight=max(s[4] for s in samples),
                                     machine_while_slow=during["slow"], machine_otherwise=during["other"])
    testkit_record.latency("batch append", result.latency)
    testkit_record.metric("achieved events/s", rate, "events/s", "higher", (">=", EVENTS_PER_S))
    testkit_record.metric("batch p99 (pooled)", p99_ms, "ms", "lower", ("<=", BATCH_P99_MS))
    testkit_record.metric("batch p99.9 (pooled)", p999_ms, "ms", "lower")
    testkit_record.metric("anonymous RSS slope beyond index and ledger", verdict.slope_bytes_per_s, "bytes/s",
                          "lower")
    testkit_record.metric("RSS slope", rss_only.slope_bytes_per_s, "bytes/s", "lower")
    testkit_record.verdict("durability", {"ok": not outcome["missing"], "counts": {
        "acknowledged": outcome["acknowledged"], "lost": len(outcome["missing"])},
        "violations": outcome["missing"][:50]})
    if judged_leak:
        counts = {"samples_used": verdict.samples_used, "inconclusive": verdict.inconclusive}
        testkit_record.verdict("leak", {"ok": not verdict.leaking, "counts": counts,
                                        "violations": [verdict.reason] if verdict.leaking else []})
    testkit_record.timeline("soak", [
        {"t": float(p.second), "completed_events": p.completed * BATCH, "errors": p.errors,
         "p99": None if p.p99_ns is None else p.p99_ns / 1e6} for p in result.timeline], {"p99": "ms"})
    testkit_record.timeline("soak memory", [
        {"t": t, "rss_mb": rss / 1e6, "anonymous_mb": anon / 1e6, "index_and_ledger_mb": expected / 1e6,
         "batches_in_flight": flying} for t, anon, expected, rss, flying in samples],
        {"rss_mb": "MB", "anonymous_mb": "MB", "index_and_ledger_mb": "MB"})
    testkit_record.timeline("soak machine", machine,
                            {"busiest_disk_pct": "%", "disk_write_mb_s": "MB/s", "measured_process_cpu_pct": "%",
                             "other_processes_cpu_pct": "%", "steal_pct": "%"})

    assert result.errors == 0, f"failed appends: {result.errors_by_kind}"
    assert outcome["acknowledged"] == result.completed * BATCH > 0
    assert not outcome["missing"], f"acknowledged events missing from a full read: {outcome['missing'][:10]}"
    assert not (judged_leak and verdict.leaking), verdict.reason
    speed_lines.expect(rate >= EVENTS_PER_S * 0.99, f"achieved {rate:,.0f} events/s < {EVENTS_PER_S:,.0f}")
    speed_lines.expect(p99_ms <= BATCH_P99_MS, f"batch p99 {p99_ms:.1f} ms > {BATCH_P99_MS} ms; {_machine_note(during)}")
    speed_lines.expect(result.dropped_starts == 0 and result.unfinished == 0,
                       f"fell behind: {result.dropped_starts} dropped, {result.unfinished} unfinished")
    speed_lines.expect(judged_leak, f"leak verdict {leak_reason}")
    speed_lines.check()


def _machine_note(during: dict[str, dict[str, float]]) -> str:
    slow, other = during["slow"], during["other"]
    return f"while slow {machine_note(slow)}; otherwise {machine_note(other)}"
