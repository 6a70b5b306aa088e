"""The pieces of ``testkit.load.locust`` that run without Locust: agent traffic, recording, merging, results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.load.locust.agents import AgentTraffic
from testkit.load.locust.plan import PlanError, timespan_s
from testkit.load.locust.recording import SETTLE_SECONDS, RunAggregate, WorkerRecorder
from testkit.load.locust.run_results import build_results
from testkit.load.server_timing import server_time_ns
from testkit.results import RunResults

pytestmark = pytest.mark.ci

MS = 1_000_000


def _record(recorder: WorkerRecorder, n: int, *, late_ms: int = 0, service_ms: int = 2) -> None:
    for i in range(n):
        intended = i * 10 * MS
        sent = intended + late_ms * MS
        recorder.record(intended, sent, sent + service_ms * MS, events_ok=1, failed=False, unknown=False)


def test_agent_traffic_sends_its_session_with_fresh_ids_in_the_kits_request_shapes() -> None:
    single = AgentTraffic(11, pool=20, batch=1)
    requests = [next(single) for _ in range(45)]  # more than the pool: replayed, with new ids
    bodies = [json.loads(r.body) for r in requests]
    assert all(r.path == "/events" for r in requests)
    assert [b["event_id"] for b in bodies] == [r.event_ids[0] for r in requests]
    assert len({b["event_id"] for b in bodies}) == 45
    assert all("source_agent" not in b and b["event_type"] and b["aggregate_id"] for b in bodies)
    assert bodies[0]["event_type"] == bodies[20]["event_type"]  # the same session, replayed
    batch = next(AgentTraffic(11, pool=20, batch=5))
    body = json.loads(batch.body)
    assert batch.path == "/events/batch" and [e["event_id"] for e in body["events"]] == list(batch.event_ids)


def test_deltas_merged_at_the_master_equal_what_each_worker_recorded() -> None:
    workers = {"w0": WorkerRecorder(), "w1": WorkerRecorder()}
    aggregate = RunAggregate()
    for round_ in range(3):
        for name, recorder in workers.items():
            _record(recorder, 50 + 10 * round_ + len(name))
            aggregate.add(name, json.loads(json.dumps(recorder.take_delta(final=round_ == 2))))  # as sent on the wire
    intended, service, totals = aggregate.merged()
    assert aggregate.complete
    assert intended.count == service.count == sum(r.intended.count for r in workers.values()) == 2 * (52 + 62 + 72)
    assert totals.requests == totals.events_ok == intended.count
    assert all(aggregate.workers[name].intended.count == r.intended.count for name, r in workers.items())


def test_a_worker_without_its_final_delta_makes_the_run_incomplete() -> None:
    aggregate = RunAggregate()
    recorder = WorkerRecorder()
    _record(recorder, 10)
    aggregate.add("w0", recorder.take_delta())
    assert not aggregate.complete
    results = build_results(aggregate, plan={"batch": 1, "seed": 1}, locust_figures={}, users=1, host="h")
    assert results.tests[0].parameters["complete"] is False and results.tests[0].outcome == "failed"


def test_a_late_start_counts_in_the_intended_latency_but_not_in_the_sent_latency() -> None:
    recorder = WorkerRecorder()
    _record(recorder, 100, late_ms=0)
    _record(recorder, 5, late_ms=900)  # queued behind a stall: sent late, answered quickly
    assert recorder.intended.percentile(99) >= 900 * MS
    assert recorder.service.percentile(99) <= 3 * MS
    assert recorder.totals.late_starts == 5


def test_results_round_trip_the_schema_with_adr_targets_and_the_timeline() -> None:
    aggregate = RunAggregate()
    recorder = WorkerRecorder()
    _record(recorder, 200)
    aggregate.add("w0", recorder.take_delta(final=True))
    results = build_results(aggregate, plan={"batch": 1, "seed": 3}, locust_figures={"p99_ms": 2.0, "requests": 200},
                            users=4, host="http://127.0.0.1:1", command=["locust"])
    again = RunResults.from_dict(json.loads(json.dumps(results.to_dict())))
    test = again.tests[0]
    assert test.metrics["intended_p99_ms"].target is not None and test.metrics["intended_p99_ms"].target.value == 10.0
    assert test.metrics["locust_p99_ms"].value == 2.0
    assert test.parameters["intended_count"] == 200 and test.timelines[0].series["completed"]


class _Clock:
    """A worker's wall clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _at(recorder: WorkerRecorder, n: int, latency_ms: float) -> None:
    for _ in range(n):
        recorder.record(0, 0, int(latency_ms * MS), events_ok=1, failed=False, unknown=False)


def test_each_seconds_latency_is_merged_across_workers_before_its_percentiles_are_taken() -> None:
    """Worker w1's slow requests are most of w1's but 1.2% of the second's: the pooled p50 stays fast and
    the p99 shows them (the mean of the two workers' medians would say 201 ms)."""
    clocks = {"w0": _Clock(1000.2), "w1": _Clock(1000.7)}
    workers = {name: WorkerRecorder(clock=clock) for name, clock in clocks.items()}
    _at(workers["w0"], 490, 2.0)
    _at(workers["w1"], 4, 2.0)
    _at(workers["w1"], 6, 400.0)
    clocks["w0"].now = 1001.1
    _at(workers["w0"], 100, 5.0)
    aggregate = RunAggregate()
    for name, recorder in workers.items():
        aggregate.add(name, json.loads(json.dumps(recorder.take_delta(final=True))))
    results = build_results(aggregate, plan={"batch": 1, "seed": 1}, locust_figures={}, users=2, host="h",
                            target_events_per_s=550.0)
    first, second = aggregate.second_latency[1000], aggregate.second_latency[1001]
    assert first.count == 500 and second.count == 100
    assert 1.9 * MS <= first.p50_ns <= 2.1 * MS and first.p99_ns >= 390 * MS
    assert 4.9 * MS <= second.p99_ns <= 5.1 * MS
    timeline = results.tests[0].timelines[0]
    assert timeline.t == [0.0, 1.0] and timeline.units["p99_ms"] == "ms"
    assert timeline.series["p99_ms"][0] is not None and timeline.series["p99_ms"][0] >= 390.0
    assert timeline.series["completed"] == [500.0, 100.0] and timeline.series["offered"] == [550.0, 550.0]


def test_the_master_keeps_figures_not_histograms_for_settled_seconds_and_counts_what_came_too_late() -> None:
    clock = _Clock(5000.5)
    recorder = WorkerRecorder(clock=clock)
    aggregate = RunAggregate()
    for _ in range(3 * SETTLE_SECONDS):
        _at(recorder, 3, 1.0)
        aggregate.add("w0", recorder.take_delta())
        clock.now += 1
    settled = sorted(aggregate.second_latency)
    assert settled and settled[0] == 5000 and len(settled) >= SETTLE_SECONDS  # settled while the run went on
    assert all(aggregate.second_latency[s].count == 3 for s in settled)
    clock.now = 5000.5  # a delta for a second that has settled: pooled, but not drawn
    _at(recorder, 7, 1.0)
    aggregate.add("w0", recorder.take_delta(final=True))
    assert aggregate.unplotted_requests == 7
    assert aggregate.merged()[0].count == 3 * 3 * SETTLE_SECONDS + 7
    aggregate.settle()
    assert len(aggregate.second_latency) == 3 * SETTLE_SECONDS


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0)])
def test_durations_read_like_locusts(text: str, seconds: float) -> None:
    assert timespan_s(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "-5s", "0"])
def test_bad_durations_are_a_plan_error(text: str) -> None:
    with pytest.raises(PlanError):
        timespan_s(text)


@pytest.mark.parametrize(("header", "expected_ns"), [
    ("app;dur=12.5", 12_500_000),
    ('db;dur=3.25, app;desc="whole request";dur=40', 40_000_000),  # the longest: a total covers its parts
    ("cache;desc=hit, total;dur = \"7\"", 7_000_000),
    ("app;dur=0", 1),
    ('app;desc="x;dur=99";dur=3', 3_000_000),  # a description's text is not a duration
    ("app;dur=.5", 500_000), ("app;dur=2e1", 20_000_000),
    ("app;dur=4000000", None),  # over an hour: the server's mistake, not a request's time
    ("miss", None), ("", None), (None, None), ("app;dur=abc", None),
])
def test_the_server_timing_header_gives_the_longest_duration_it_names(header: str | None,
                                                                      expected_ns: int | None) -> None:
    assert server_time_ns(header) == expected_ns


def test_the_servers_own_time_is_merged_apart_and_reported_only_when_the_server_gave_it() -> None:
    workers = {"w0": WorkerRecorder(), "w1": WorkerRecorder()}
    aggregate = RunAggregate()
    for index, (name, recorder) in enumerate(workers.items()):
        for i in range(100):  # 60 ms from the intended start, of which the server says it spent 5 (w0) or 9 (w1)
            recorder.record(i * MS, i * MS + 20 * MS, i * MS + 60 * MS, events_ok=1, failed=False, unknown=False,
                            server_ns=(5 + 4 * index) * MS if i % 2 else None)
        aggregate.add(name, json.loads(json.dumps(recorder.take_delta(final=True))))
    server = aggregate.merged_server()
    assert server.count == 100 == sum(r.server.count for r in workers.values())  # half the requests said
    test = build_results(aggregate, plan={"batch": 100, "seed": 1}, locust_figures={}, users=2, host="h").tests[0]
    assert test.metrics["server_p50_ms"].value == pytest.approx(5, rel=0.01)
    assert test.metrics["server_p99_ms"].value == pytest.approx(9, rel=0.01)
    assert test.metrics["intended_p99_ms"].value == pytest.approx(60, rel=0.01)
    assert test.metrics["server_p99_ms"].target is None and test.parameters["server_timed_count"] == 100

    silent = RunAggregate()
    recorder = WorkerRecorder()
    _record(recorder, 10)
    silent.add("w0", recorder.take_delta(final=True))
    assert "server_p99_ms" not in build_results(silent, plan={"batch": 1}, locust_figures={}, users=1,
                                                host="h").tests[0].metrics


_RESTART_SCRIPT = """
import sys
from pathlib import Path
from locust.env import Environment
from testkit.checkers import History
from testkit.load.locust.locustfile import _ProcessRun
from testkit.load.locust.plan import LocustPlan
out = Path(sys.argv[1])
plan = LocustPlan(tokens=("t",), out_dir=out, seed=1, user_rate=1.0, batch=1, pool=10, think_scale=1.0, max_think_s=1.0)
run = _ProcessRun(Environment(), plan)
for round_ in range(2):
    run.start()
    run.history.ok(run.history.invoke("append", [{"event_id": f"e-{round_}"}], digests=[None]))
    run.history.close()
journals = sorted(out.glob("history-*.journal"))
print(len(journals), sorted(op.event_ids[0] for op in History.load(*journals)))
"""


def test_a_test_started_again_in_one_process_journals_to_a_file_of_its_own(tmp_path: Path) -> None:
    """Locust's web UI can start a test again in the same worker; its writes must be journaled too (in a
    process of its own: importing Locust monkey-patches the standard library for gevent)."""
    done = subprocess.run([sys.executable, "-c", _RESTART_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "2 ['e-0', 'e-1']"
