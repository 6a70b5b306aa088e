"""ADR-004 over the wire: a rate of agent traffic through Locust into ``lighthouse serve`` for a long time.

Starts the server (fsync durability) on a fresh directory, issues one token per simulated agent, runs
a Locust master and workers on this machine (``testkit.load.locust``) in open loop at the planned rate,
samples the server's RSS and what the machine did each second (the server's CPU, the other processes',
the hypervisor's steal, the disk) throughout, then reads the whole store back and checks that every
acknowledged write is there by id. Judged: pooled percentiles from the intended start against
ADR-004, the planned rate, the history (0 acknowledged lost) and the leak verdict on the server's RSS.
Writes ``OUT/results.json`` and the HTML report ``OUT/index.html``.

    .venv/bin/python benchmarks/soak_http.py --duration 10m --rate 10000 --agents 100 --batch 50 --out reports/soak-http

``--batch 1`` sends single appends (POST /events); larger batches send POST /events/batch, as an
agent that buffers its events would. The figures say which was used.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from lighthouse.server.app import SERVER_AGENT
from lighthouse.server.auth import Role, TokenAuthority
from testkit.load.locust.cluster import LocalCluster
from testkit.load.locust.plan import timespan_s
from testkit.load.locust.run_results import ADR_004_TARGETS_MS, results_path
from testkit.load.locust.verify import record_verdict, verify_run
from testkit.machine_activity import ActivityRecorder, machine_note, split_by_slow_intervals
from testkit.memory import InsufficientSamplesError, LeakVerdict, RssSampler, leak_verdict
from testkit.report import render_report
from testkit.results import MemoryRecord, RunResults, Timeline

__all__ = ["main"]


def _start_server(workdir: Path, secret: bytes) -> tuple[subprocess.Popen[bytes], str]:
    (workdir / "secret").write_bytes(secret)
    ready = workdir / "ready.json"
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 - the server outlives this function
    process = subprocess.Popen(
        [sys.executable, "-m", "lighthouse.server", "--data-dir", str(workdir / "data"), "--port", "0",
         "--secret-file", str(workdir / "secret"), "--ready-file", str(ready), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start; see {workdir / 'server.log'}")
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"


class IndexSampler:
    """The store's own ``lighthouse_index_bytes`` over time (from ``/metrics``): the index must grow with the
    events stored, so the leak verdict judges RSS minus it, on the same clock as ``RssSampler``."""

    def __init__(self, base_url: str, interval_s: float = 2.0) -> None:
        self._url = f"{base_url}/metrics"
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, name="index-sampler", daemon=True)

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.wait(self._interval_s):
                try:
                    text = client.get(self._url).text
                except httpx.HTTPError:
                    continue
                for line in text.splitlines():
                    if line.startswith("lighthouse_index_bytes "):
                        self.samples.append((time.monotonic() - self._t0, int(float(line.split()[1]))))

    def at(self, t: float) -> int:
        """The last index size sampled at or before ``t`` (0 before the first); samples are in time order."""
        found = bisect.bisect_right(self.samples, t, key=lambda sample: sample[0])
        return self.samples[found - 1][1] if found else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", default="1h", help="how long (90s, 10m, 1h)")
    parser.add_argument("--rate", type=float, default=10_000, help="planned events/s in all")
    parser.add_argument("--agents", type=int, default=100, help="simulated agents (Locust users)")
    parser.add_argument("--batch", type=int, default=1, help="events per request (1: single appends)")
    parser.add_argument("--workers", type=int, default=2, help="Locust worker processes")
    parser.add_argument("--out", default="reports/soak-http", help="results.json, index.html, logs")
    parser.add_argument("--keep-data", action="store_true", help="keep the store's directory afterwards")
    args = parser.parse_args()
    duration_s = timespan_s(args.duration)
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    workdir = Path(tempfile.mkdtemp(prefix="soak-http-"))
    secret = secrets.token_urlsafe(32).encode()
    authority = TokenAuthority(secret)
    tokens = out / "tokens.txt"
    tokens.write_text("".join(authority.issue(f"soak-agent-{i}", Role.ADMIN, ttl_seconds=int(duration_s) + 7200) + "\n"
                              for i in range(args.agents)))
    server, base_url = _start_server(workdir, secret)
    sampler = RssSampler(interval=1.0, pid=server.pid)
    activity = ActivityRecorder(psutil.Process(server.pid), interval=1.0)
    index = IndexSampler(base_url)
    print(f"soak: {args.rate:,.0f} events/s planned from {args.agents} agents in batches of {args.batch}, "
          f"{args.duration}, {args.workers} Locust workers, server {base_url} (pid {server.pid}); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        sampler.start()
        sampled_from_wall = time.time()  # the RSS and index samples' t = 0, to line them up with the others
        activity.start()
        index.start(time.monotonic())
        # Every agent starts at once (Locust's -r equal to -u): each spawn step of a ramp blocks a Locust 2.x
        # worker for ~0.2 s (it rebuilds its argument parser once per option of the spawn message), and the
        # requests held back meanwhile reach the server as one burst. The agents' plans are spread across
        # their interval by phase, so starting together is no thundering herd.
        cluster = LocalCluster(base_url, out, tokens, users=args.agents, run_time=args.duration, workers=args.workers,
                               testkit_options=["--testkit-user-rate", str(args.rate / args.agents),
                                                "--testkit-batch", str(args.batch)])
        with cluster:
            status = cluster.wait(timeout=duration_s + 600)
        sampler.stop()
        activity.stop()
        index.stop()
        print(f"locust master exited with {status}; reading the store back for the history check", flush=True)
        verdict = asyncio.run(verify_run(out, base_url, authority.issue("soak-checker", Role.ADMIN),
                                         store_generated=lambda event: event.source_agent == SERVER_AGENT))
        results = record_verdict(out, verdict)
        judged = [(t, rss - index.at(t)) for t, rss in sampler.samples]
        try:
            raw = leak_verdict(sampler.samples, warmup_fraction=0.2)
            leak = leak_verdict(judged, warmup_fraction=0.2)
            print(f"server RSS as sampled: {raw.slope_bytes_per_s:,.0f} B/s ({raw.reason}); the index grew "
                  f"{(index.samples[-1][1] - index.samples[0][1]) if index.samples else 0:,} B; judged below: RSS minus index")
        except InsufficientSamplesError as exc:
            leak = None
            print(f"no leak verdict: {exc}")
        results.memory = sampler_record(sampler, leak)
        machine = add_machine_activity(results, activity.per_interval(), batch=args.batch)
        add_memory_timeline(results, sampler.samples, index, sampled_from_wall)
        if leak is not None and leak.leaking:
            results.tests[0].outcome = "failed"
            results.finish("failed")
        results.save(results_path(out))
        report = render_report(results_path(out), out / "index.html", title="lighthouse HTTP soak (Locust)")
        summarize(results, verdict.summary(), leak, report, machine)
        return 0 if results.run.verdict == "passed" else 1
    finally:
        if sampler.running:
            sampler.stop()
        activity.stop()
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(timeout=120)
        if not args.keep_data:
            shutil.rmtree(workdir, ignore_errors=True)


def sampler_record(sampler: RssSampler, leak: LeakVerdict | None) -> MemoryRecord:
    """RSS as sampled; the verdict judged RSS minus the index, which the memory timeline draws."""
    return MemoryRecord(peak_rss_bytes=sampler.peak, samples=sampler.samples,
                        leak=None if leak is None else leak.to_dict())


def add_memory_timeline(results: RunResults, rss: list[tuple[float, int]], index: IndexSampler,
                        sampled_from_wall: float) -> None:
    """The server's RSS, the index size it reported and their difference at each index sample (MB): where a
    leak verdict's slope comes from. On the latency timeline's clock (its t = 0 is ``first_wall_second``)."""
    origin = results.tests[0].parameters.get("first_wall_second")
    if not index.samples or not rss or origin is None:
        return
    shift = sampled_from_wall - float(origin)
    points: list[tuple[float, int, int]] = []
    position = 0
    for when, size in index.samples:
        while position + 1 < len(rss) and rss[position + 1][0] <= when:
            position += 1
        points.append((when + shift, rss[position][1], size))
    results.tests[0].timelines.append(Timeline(
        "server memory: RSS, the index size the store reports, and RSS minus the index (what the leak verdict judges)",
        [when for when, _, _ in points],
        {"rss_mb": [r / 1e6 for _, r, _ in points], "index_mb": [i / 1e6 for _, _, i in points],
         "rss_minus_index_mb": [(r - i) / 1e6 for _, r, i in points]},
        {"rss_mb": "MB", "index_mb": "MB", "rss_minus_index_mb": "MB"}))


def add_machine_activity(results: RunResults, rows: list[dict[str, float]], *, batch: int) -> str:
    """Draw what the server and the machine did each second beside the latency timeline, and compare the
    seconds whose p99 missed ADR-004 with the rest: the server working harder, the load generators (other
    processes) crowding it, the hypervisor taking the cores, or the disk. Returns that comparison in words."""
    test = results.tests[0]
    origin = test.parameters.get("first_wall_second")
    if not rows or origin is None or not test.timelines:
        return "no machine activity sampled"
    keys = ("measured_process_cpu_pct", "other_processes_cpu_pct", "steal_pct", "busiest_disk_pct", "disk_write_mb_s")
    aligned = [{**row, "t": row["t"] - origin} for row in rows]
    test.timelines.append(Timeline(
        "each second: the server's share of the CPUs, the other processes' (the load generators), steal, disk",
        [row["t"] for row in aligned], {key: [row[key] for row in aligned] for key in keys},
        {key: "MB/s" if key == "disk_write_mb_s" else "%" for key in keys}))
    line = ADR_004_TARGETS_MS["single" if batch == 1 else "batch"]["p99"]
    latency = test.timelines[0]
    # a second's slow requests were in flight for up to its p99 before they completed in it
    slow = [(t + 1.0 - p99 / 1e3, t + 1.0) for t, p99 in zip(latency.t, latency.series["p99_ms"])
            if p99 is not None and p99 > line]
    during = split_by_slow_intervals(aligned, slow)
    test.parameters.update(machine_while_slow=during["slow"], machine_otherwise=during["other"])
    return f"seconds with p99 > {line:g} ms {machine_note(during['slow'])}; the others {machine_note(during['other'])}"


def summarize(results: RunResults, history: str, leak: LeakVerdict | None, report: Path, machine: str) -> None:
    test = results.tests[0]
    m = {name: metric.value for name, metric in test.metrics.items()}
    totals = test.parameters["totals"]
    print(f"achieved {m['throughput_events_per_s']:,.0f} events/s (steady seconds), {totals['events_ok']:,} events "
          f"acknowledged in {totals['requests']:,} requests, {totals['requests_failed']} refused, "
          f"{totals['requests_unknown']} answered without a definite outcome, {totals['late_starts']:,} late starts "
          f"(requests still in flight when the run stopped are counted by the history check below)")
    print(f"pooled latency from the intended start: p50 {m['intended_p50_ms']:.1f} ms, p99 {m['intended_p99_ms']:.1f} ms, "
          f"p99.9 {m['intended_p99.9_ms']:.1f} ms; from the send: p99 {m['sent_p99_ms']:.1f} ms, p99.9 "
          f"{m['sent_p99.9_ms']:.1f} ms; Locust's own p99 {m['locust_p99_ms']:.0f} ms")
    if "server_p99_ms" in m:
        print(f"inside the server (its Server-Timing header): p50 {m['server_p50_ms']:.1f} ms, p99 "
              f"{m['server_p99_ms']:.1f} ms, p99.9 {m['server_p99.9_ms']:.1f} ms")
    for name, metric in sorted(test.metrics.items()):
        if metric.target is not None:
            print(f"  {name}: {metric.value:,.1f} {metric.unit} vs {metric.target.op} {metric.target.value:,.1f}: "
                  f"{'met' if metric.target_met else 'NOT met'}")
    print(f"machine: {machine}")
    print(f"history: {history}")
    if leak is not None:
        print(f"server RSS: {leak.slope_bytes_per_s:,.0f} B/s ({leak.relative_per_hour:.2%}/h): {leak.reason}")
    print(f"verdict: {results.run.verdict}; report: {report}")


if __name__ == "__main__":
    sys.exit(main())
