"""Locust users that are testkit agents: ``locust -f`` this file (or ``python -m testkit.load.locust``).

Each Locust user is one simulated agent replaying its own ``testkit.data`` session (mix, payload
sizes, think times) against an event store's HTTP API, with the kit's request shapes: client-chosen
``event_id``, ``POST /events`` or ``POST /events/batch``, a bearer token per agent. The transport is
Locust's ``FastHttpUser`` (geventhttpclient): Locust runs users as gevent greenlets, where the kit's
asyncio/httpx adapter cannot run, and its own statistics stay intact for comparison.

With ``--testkit-user-rate R`` each agent plans a request every ``batch / R`` seconds (open loop) and
latency is also measured from that planned start: a stalled server's backlog shows up, where
Locust's own figures (timed from the actual send) hide it. Every worker records HDR histograms and
ships them to the master as a custom message; the master merges them and writes the kit's
``results.json`` into ``--testkit-out`` (see ``testkit.load.locust``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from typing import Any

import gevent
import locust.runners
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from testkit.checkers import DEFINITE_FAILURE_CODES, HistoryWriter, OpKind
from testkit.load.locust.agents import AgentTraffic
from testkit.load.locust.plan import LocustPlan, PlanError, add_plan_arguments
from testkit.load.locust.recording import RunAggregate, WorkerRecorder
from testkit.load.locust.run_results import build_results, results_path
from testkit.load.server_timing import server_time_ns

__all__ = ["AgentUser", "MESSAGE_TYPE"]

MESSAGE_TYPE = "testkit_histograms"
_log = logging.getLogger("testkit.locust")


class _ProcessRun:
    """This Locust process's part of the run (one per process, attached to its ``Environment``)."""

    def __init__(self, environment: Environment, plan: LocustPlan) -> None:
        self.environment = environment
        self.plan = plan
        self.recorder = WorkerRecorder()
        self.aggregate = RunAggregate()
        self.history: HistoryWriter | None = None
        self.starts = 0  # tests started in this process (each journals to a file of its own)
        self.agents = 0

    @property
    def name(self) -> str:
        runner = self.environment.runner
        index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        return f"w{index}-{os.getpid()}"

    def worker_index(self) -> int:
        runner = self.environment.runner
        return runner.worker_index if isinstance(runner, WorkerRunner) else 0

    def start(self) -> None:
        runner = self.environment.runner
        if not isinstance(runner, WorkerRunner) and self.plan.run_time_s and runner is not None:
            gevent.spawn_later(self.plan.run_time_s, self._end_gracefully)
        if not isinstance(runner, WorkerRunner):
            _warn_of_a_ramp(self.environment.parsed_options)
        if isinstance(runner, MasterRunner):
            self.aggregate = RunAggregate()
            return
        self.recorder = WorkerRecorder()
        self.aggregate = RunAggregate()
        # journal only: a worker's memory stays flat however long it runs. A test started again in this process
        # (the web UI's restart) gets a journal of its own: a HistoryWriter starts journals, it does not resume them
        suffix = f"-{self.starts}" if self.starts else ""
        self.starts += 1
        self.history = HistoryWriter(self.plan.out_dir / f"history-{self.name}{suffix}.journal", client_id=self.name,
                                     sync="none")

    def _end_gracefully(self) -> None:
        """Stop (the master tells every worker, waits for them, and only then fires test_stop), then quit.

        A worker's final delta is sent before its "client_stopped", so the master holds all of them when it
        writes the results; Locust's headless ``--run-time`` quits without that wait."""
        runner = self.environment.runner
        if runner is None:
            return
        runner.stop()
        runner.quit()

    def ship(self, *, final: bool = False) -> None:
        """Send what was recorded since the last shipment to the master (a worker) or merge it (standalone)."""
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message(MESSAGE_TYPE, self.recorder.take_delta(final=final))
        elif not isinstance(runner, MasterRunner):
            self.aggregate.add(self.name, self.recorder.take_delta(final=final))

    def stop(self) -> None:
        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            self.ship(final=True)
            if self.history is not None:
                self.history.close()
                self.history = None
            summary = self.plan.out_dir / f"worker-{self.name}.json"
            summary.write_text(json.dumps(self.recorder.summary()))
        if not isinstance(runner, WorkerRunner):
            self.write_results()

    def write_results(self) -> None:
        stats = self.environment.stats.total
        figures = {
            "requests": stats.num_requests, "failures": stats.num_failures,
            "p50_ms": stats.get_response_time_percentile(0.5) or 0, "p99_ms": stats.get_response_time_percentile(0.99) or 0,
            "p99.9_ms": stats.get_response_time_percentile(0.999) or 0, "max_ms": stats.max_response_time or 0,
            "requests_over_500ms": sum(n for t, n in stats.response_times.items() if t >= 500),
        }
        runner = self.environment.runner
        users = int(getattr(runner, "target_user_count", 0) or getattr(self.environment.parsed_options, "num_users", 0) or 0)
        host = self.environment.host or ""
        target = self.plan.user_rate * users if self.plan.open_loop else None
        results = build_results(self.aggregate, plan=self.plan.describe(), locust_figures=figures, users=users,
                                host=host, target_events_per_s=target)
        results.tests[0].parameters["locust_errors"] = {
            f"{e.method} {e.name}: {e.error}": e.occurrences for e in self.environment.stats.errors.values()}
        path = results.save(results_path(self.plan.out_dir))
        if not self.aggregate.complete:
            _log.error("testkit results are INCOMPLETE: %d of %d workers sent their final histograms "
                       "(stop the run gracefully: --testkit-run-time, or the web UI's stop)",
                       len(self.aggregate.finished), len(self.aggregate.workers))
        _log.warning("testkit results: %s", path)


def _warn_of_a_ramp(options: Any) -> None:
    """A ramp (``-r`` below ``-u``) shows in the intended-time latency as the load generator's own stalls:
    Locust 2.47's workers rebuild their argument parser once per option of every spawn message (~0.2 s,
    during which no request leaves), then send what was held back at once."""
    users = getattr(options, "num_users", None) or 0
    rate = getattr(options, "spawn_rate", None) or 0
    if users and rate and rate < users:
        _log.warning("-r %s < -u %s: every spawn step stalls each worker ~0.2 s and its held-back requests reach "
                     "the server as one burst, which the intended-time latency counts; start all agents at once "
                     "(-r %s): open-loop agents spread their plans over their interval themselves", rate, users, users)


def _run_of(environment: Environment) -> _ProcessRun:
    return environment.testkit_run  # type: ignore[attr-defined,no-any-return]


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    add_plan_arguments(parser)


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    try:
        plan = LocustPlan.from_options(environment.parsed_options)
    except PlanError as exc:
        raise SystemExit(f"testkit: {exc}") from None
    run = _ProcessRun(environment, plan)
    environment.testkit_run = run  # type: ignore[attr-defined]
    # Locust has no option for it; workers register after init, so their liveness is the one set here.
    locust.runners.HEARTBEAT_LIVENESS = plan.heartbeat_liveness
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(
            MESSAGE_TYPE, lambda environment, msg, **_: run.aggregate.add(msg.node_id, msg.data))
    if isinstance(environment.runner, WorkerRunner):
        # Ship on Locust's own reporting cadence (every few seconds); Locust's stats message stays Locust's.
        environment.events.report_to_master.add_listener(lambda client_id, data, **_: run.ship())


@events.test_start.add_listener
def _test_start(environment: Environment, **_: Any) -> None:
    _run_of(environment).start()


@events.test_stop.add_listener
def _test_stop(environment: Environment, **_: Any) -> None:
    # A worker's custom message leaves before its "client_stopped", and the master's test_stop fires only
    # once every worker has stopped: the master has every delta when it writes the results.
    _run_of(environment).stop()


class AgentUser(FastHttpUser):
    """One simulated agent."""

    network_timeout = 60.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        run = _run_of(self.environment)
        plan = run.plan
        self.run_state = run
        index = run.agents
        run.agents += 1
        worker = run.worker_index()
        seed = plan.seed * 1_000_003 + worker * 10_007 + index
        self.agent_name = f"{run.name}-a{index}"
        self.traffic = AgentTraffic(seed, pool=plan.pool, batch=plan.batch, think_scale=plan.think_scale,
                                    max_think_s=plan.max_think_s, pause=lambda: gevent.sleep(0))
        token = plan.tokens[(worker * 7919 + index) % len(plan.tokens)]
        self.request_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.interval_ns = int(plan.request_interval_s * 1e9) if plan.open_loop else 0
        phase = random.Random(seed).random() * self.interval_ns  # spread agents' plans across the interval
        self.next_intended_ns = time.perf_counter_ns() + int(phase)

    def wait_time(self) -> float:
        return max(0.0, (self.next_intended_ns - time.perf_counter_ns()) / 1e9)

    @task
    def send(self) -> None:
        run = self.run_state
        request = next(self.traffic)
        intended = self.next_intended_ns
        early_ns = intended - time.perf_counter_ns()
        if early_ns > 0:  # Locust runs a user's first task at once, before any wait_time: keep to the plan
            gevent.sleep(early_ns / 1e9)
        history = run.history
        kind = OpKind.APPEND if len(request.event_ids) == 1 else OpKind.APPEND_BATCH
        op = None if history is None else history.invoke(
            kind, [{"event_id": i} for i in request.event_ids], digests=[None] * len(request.event_ids),
            client_id=self.agent_name)
        sent = time.perf_counter_ns()
        failed = unknown = False
        with self.client.post(request.path, data=request.body, headers=self.request_headers,
                              catch_response=True) as response:
            done = time.perf_counter_ns()
            status = response.status_code or 0
            server_ns = server_time_ns(response.headers.get("server-timing")) if response.headers else None
            if status in (200, 201):
                response.success()
                if op is not None and history is not None:
                    history.ok(op)
            else:
                code = _error_code(response, status)
                definite = code in DEFINITE_FAILURE_CODES or (400 <= status < 500 and status not in (408, 429))
                failed, unknown = definite, not definite
                if op is not None and history is not None:
                    (history.fail if definite else history.unknown)(op, code)
                response.failure(f"HTTP {status}: {code}")
        run.recorder.record(intended, sent, done, events_ok=0 if failed or unknown else len(request.event_ids),
                            failed=failed, unknown=unknown, server_ns=server_ns)
        self.next_intended_ns = intended + self.interval_ns if self.interval_ns else done + int(request.think_s * 1e9)


def _error_code(response: Any, status: int) -> str:
    if status == 0:
        return f"transport: {type(response.error).__name__}"
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return f"http_{status}"
    return str(body.get("error") or f"http_{status}") if isinstance(body, dict) else f"http_{status}"
