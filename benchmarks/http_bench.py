"""HTTP throughput and latency of a lighthouse server over loopback, load generated in separate processes.

Starts the real server (``benchmarks/http_bench_server.py``: ``serve()`` plus a benchmark-only no-op
route) on a fresh data directory, then for each scenario forks client processes that hold keep-alive
connections and run closed-loop for a fixed time. It prints, side by side in one run:

- ``noop``: ``POST /bench/noop`` (read body, fixed answer): the HTTP stack's ceiling on this machine;
- ``single``: ``POST /events``, one event per request;
- ``batch100``: ``POST /events/batch``, 100 events per request;

each at 1/8/32/128 connections: events/s, requests/s, pooled p50/p99/p99.9 (every request of every
client process, merged HDR histograms from testkit.percentiles), and CPU microseconds per request of the
server process (psutil, all its threads) and of the client processes: CPU per request stays meaningful
when the machine is shared, where throughput does not. ``ckpts`` counts the index checkpoints the store
wrote during a scenario (one per million events, each writing the whole index): a scenario that crosses
one pays for it, as any long run does. ``--rounds N`` runs the whole set N times in
turn (this machine's speed drifts by half within minutes) and ends with a summary per scenario: the
median and range of the rounds' rates, percentiles pooled over every round's requests, and each
single-append rate as a share of the no-op rate measured in the same round. Each connection
authenticates as its own agent, as a fleet of agents would (one principal for every connection would
meet the per-principal budget).
The client processes share the machine's cores with the server, so on a small machine the figures are
a floor.

    PYTHONPATH=. .venv/bin/python benchmarks/http_bench.py [--seconds 5] [--rounds 3] [--durability fsync] \
        [--only "noop c=32,single c=32"] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection as Pipe
from multiprocessing.synchronize import Barrier
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from lighthouse.server.auth import Role, TokenAuthority
from lighthouse.server.serve import event_loop_factory
from testkit.percentiles import LatencyRecorder

__all__ = ["Row", "Scenario", "main", "summarize"]

NOOP_PATH = "/bench/noop"
CONCURRENCIES: tuple[int, ...] = (1, 8, 32, 128)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    path: str
    connections: int
    events_per_request: int


def scenarios() -> list[Scenario]:
    kinds = (("noop", NOOP_PATH, 1), ("single", "/events", 1), ("batch100", "/events/batch", 100))
    return [Scenario(f"{kind} c={c}", path, c, per) for kind, path, per in kinds for c in CONCURRENCIES]


def start_server(workdir: Path, durability: str) -> tuple[subprocess.Popen[bytes], int, bytes]:
    secret = secrets.token_urlsafe(32).encode()
    (workdir / "secret").write_bytes(secret)
    ready = workdir / "ready.json"
    launcher = Path(__file__).with_name("http_bench_server.py")
    process = subprocess.Popen(
        [sys.executable, str(launcher), str(workdir / "data"), str(workdir / "secret"), str(ready), durability],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.02)
    return process, json.loads(ready.read_text())["port"], secret


class Bodies:
    """Request bodies with a fresh event id each (the server deduplicates by id), built from a template.

    Ids are a random per-process prefix plus a counter: unique, and far cheaper for the client's CPU
    (which shares the machine with the server) than a uuid4 per event.
    """

    def __init__(self, payload_bytes: int, per_request: int) -> None:
        self.per_request = per_request
        self.prefix = b'{"event_id":"' + uuid.uuid4().hex.encode() + b"-"
        self.counter = itertools.count()
        self.tail = (f'","event_type":"custom","aggregate_id":"bench:{os.getpid()}","timestamp":{time.time()},'
                     f'"data":{{"payload":"{"x" * payload_bytes}"}}}}').encode()

    def _event(self) -> bytes:
        return b"%s%d%s" % (self.prefix, next(self.counter), self.tail)

    def next(self) -> bytes:
        if self.per_request == 1:
            return self._event()
        return b'{"events":[' + b",".join([self._event() for _ in range(self.per_request)]) + b"]}"


class KeepAlive:
    """A minimal keep-alive HTTP/1.1 client: a general client costs the shared CPUs more per request than
    the server does, and would measure itself. One read for the response head, one for the body."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: bytes) -> int:
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"POST %s HTTP/1.1\r\n%s%d\r\n\r\n%s" % (path.encode(), self.head, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        if at >= 0:
            await self.reader.readexactly(int(head[at + 17:head.index(b"\r\n", at + 2)]))
        return int(head[9:12])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def _drive(port: int, tokens: Sequence[str], scenario: Scenario, seconds: float, payload_bytes: int,
                 barrier: Barrier) -> tuple[int, int, LatencyRecorder, float]:
    recorder = LatencyRecorder()
    bodies = Bodies(payload_bytes, scenario.events_per_request)
    clients = [KeepAlive(port, token) for token in tokens]
    await asyncio.gather(*(c.open() for c in clients))
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    cpu_started = time.process_time()
    stop_at = time.monotonic() + seconds
    done = errors = 0

    async def loop(client: KeepAlive) -> None:
        nonlocal done, errors
        while time.monotonic() < stop_at:
            body = bodies.next()
            started = time.perf_counter_ns()
            status = await client.post(scenario.path, body)
            recorder.record(time.perf_counter_ns() - started)
            if status in (200, 201):
                done += scenario.events_per_request
            else:
                errors += 1

    try:
        await asyncio.gather(*(loop(c) for c in clients))
        cpu_seconds = time.process_time() - cpu_started
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return done, errors, recorder, cpu_seconds


def _client_process(port: int, tokens: Sequence[str], scenario: Scenario, seconds: float,
                    payload_bytes: int, barrier: Barrier, out: Pipe) -> None:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:  # uvloop when installed, as the server
        done, errors, recorder, cpu = runner.run(_drive(port, tokens, scenario, seconds, payload_bytes, barrier))
    out.send((done, errors, recorder.encode(), cpu))
    out.close()


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    connections: int
    client_processes: int
    events_per_request: int
    events_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    requests: int
    errors: int
    server_cpu_us_per_request: float
    client_cpu_us_per_request: float
    events_per_sync: float = 0.0  # appended events per fdatasync of the store (0 for the no-op route)
    #: index checkpoints the store wrote while the scenario ran (each writes the whole index); None: not known
    checkpoints: int | None = 0
    round: int = 1
    histogram: str = ""  # every request's latency (testkit.percentiles encoding), to pool rounds


def _store_syncs(port: int) -> int:
    """The store's fsync/fdatasync count, from the server's own /metrics: how many appends share one sync
    is what single appends' speed turns on (group commit), and it moves with the arrival pattern."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "lighthouse_fsyncs":
            return int(family.samples[0].value)
    raise RuntimeError("the server's /metrics has no lighthouse_fsyncs")


class CheckpointCount:
    """Index checkpoints the store wrote (``/health/detailed``) since the last reading: one is written per
    million events and costs CPU and disk writes while it runs, so a scenario that crosses one pays for it, as
    a long run does. Each reading ends one interval and starts the next, so none falls between scenarios."""

    def __init__(self, port: int, admin_token: str) -> None:
        self._request = urllib.request.Request(f"http://127.0.0.1:{port}/health/detailed",
                                               headers={"Authorization": f"Bearer {admin_token}"})
        self._last = self._written()

    def _written(self) -> int | None:
        try:
            with urllib.request.urlopen(self._request, timeout=30) as answer:
                health = json.loads(answer.read())
            return int(health["store"]["details"]["checkpoint"].get("written", 0))
        except (OSError, ValueError, KeyError, TypeError):  # the figures measured so far matter more than this
            return None

    def since_last(self) -> int | None:
        """How many were written since the last reading (``None`` if either reading failed)."""
        now, last = self._written(), self._last
        self._last = now
        return None if now is None or last is None else now - last


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run_scenario(server: psutil.Process, port: int, tokens: Sequence[str], checkpoints: CheckpointCount,
                 scenario: Scenario, seconds: float, payload_bytes: int, processes: int, round_: int = 1) -> Row:
    """Fork the client processes, start them together, merge their histograms into one pooled view."""
    context = multiprocessing.get_context("fork")
    count = min(processes, scenario.connections)
    shares = [scenario.connections // count + (i < scenario.connections % count) for i in range(count)]
    barrier = context.Barrier(count + 1)
    pipes, children = [], []
    first = 0
    for share in shares:
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_client_process, args=(
            port, tokens[first:first + share], scenario, seconds, payload_bytes, barrier, send))
        first += share
        child.start()
        send.close()
        pipes.append(receive)
        children.append(child)
    syncs = _store_syncs(port)
    barrier.wait()
    server_cpu = _cpu_seconds(server)
    pooled = LatencyRecorder()
    done = errors = 0
    client_cpu = 0.0
    for receive in pipes:
        events, failed, encoded, cpu = receive.recv()
        done, errors, client_cpu = done + events, errors + failed, client_cpu + cpu
        pooled.merge(LatencyRecorder.decode(encoded))
    server_cpu = _cpu_seconds(server) - server_cpu
    for child in children:
        child.join()
    syncs = _store_syncs(port) - syncs
    written = checkpoints.since_last()  # counted once written: one ending after its scenario counts in the next
    served = max(1, pooled.count)
    return Row(scenario.name, scenario.connections, count, scenario.events_per_request, done / seconds,
               pooled.count / seconds, pooled.percentile(50) / 1e6, pooled.percentile(99) / 1e6,
               pooled.percentile(99.9) / 1e6, pooled.count, errors, server_cpu / served * 1e6,
               client_cpu / served * 1e6, done / syncs if syncs and scenario.path != NOOP_PATH else 0.0,
               written, round_, pooled.encode())


def _print_row(row: Row, label: str) -> None:
    print(f"{label:<14} {row.events_per_s:>10,.0f} {row.requests_per_s:>11,.0f} {row.p50_ms:>8.2f} "
          f"{row.p99_ms:>8.2f} {row.p999_ms:>9.2f} {row.errors:>6} {row.server_cpu_us_per_request:>13,.0f} "
          f"{row.client_cpu_us_per_request:>13,.0f} {row.events_per_sync:>7,.1f} "
          f"{'?' if row.checkpoints is None else row.checkpoints:>5}", flush=True)


def _shares_of_ceiling(rows: Sequence[Row]) -> dict[str, list[float]]:
    """Each single-append row's request rate over the no-op rate at the same concurrency in the same round."""
    ceiling = {(r.round, r.connections): r.requests_per_s for r in rows if r.scenario.startswith("noop")}
    shares: dict[str, list[float]] = {}
    for row in rows:
        noop = ceiling.get((row.round, row.connections))
        if row.scenario.startswith("single") and noop:
            shares.setdefault(row.scenario, []).append(row.requests_per_s / noop)
    return shares


def summarize(rows: Sequence[Row]) -> None:
    """Per scenario over the rounds: median rate and its range, percentiles of every round's requests pooled."""
    rounds = max(r.round for r in rows)
    print(f"summary of {rounds} rounds: rates are the median [lowest-highest] round; latency pooled over all rounds")
    print(f"{'scenario':<14} {'events/s':>10} {'range':>17} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
          f"{'server us/req':>13}")
    for name in dict.fromkeys(r.scenario for r in rows):
        mine = [r for r in rows if r.scenario == name]
        rates = sorted(r.events_per_s for r in mine)
        pooled = LatencyRecorder().merge(*(LatencyRecorder.decode(r.histogram) for r in mine))
        server_us = statistics.median(r.server_cpu_us_per_request for r in mine)
        print(f"{name:<14} {statistics.median(rates):>10,.0f} {f'{rates[0]:,.0f}-{rates[-1]:,.0f}':>17} "
              f"{pooled.percentile(50) / 1e6:>8.2f} {pooled.percentile(99) / 1e6:>8.2f} "
              f"{pooled.percentile(99.9) / 1e6:>9.2f} {server_us:>13,.0f}")


def _stack() -> str:
    found = [name for name in ("uvloop", "httptools") if _importable(name)]
    return ", ".join(found) if found else "neither uvloop nor httptools installed"


def _importable(name: str) -> bool:
    import importlib
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    parser.add_argument("--durability", default="fsync", choices=("fsync", "batch", "none"))
    parser.add_argument("--payload-bytes", type=int, default=200)
    parser.add_argument("--client-processes", type=int, default=2, help="load-generating processes (at most one per connection)")
    parser.add_argument("--only", help="run only scenarios whose name starts with one of these, comma-separated "
                                       "(noop, single, batch100, 'noop c=8,single c=8')")
    parser.add_argument("--rounds", type=int, default=1, help="run every scenario this many times, in turn")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    prefixes = tuple(p.strip() for p in args.only.split(",")) if args.only else ("",)
    chosen = [s for s in scenarios() if s.name.startswith(prefixes)]
    if not chosen:
        parser.error(f"--only {args.only!r} names no scenario")
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        process, port, secret = start_server(Path(tmp), args.durability)
        authority = TokenAuthority(secret)
        tokens = [authority.issue(f"bench-{i}", Role.AGENT, ttl_seconds=3600) for i in range(max(CONCURRENCIES))]
        server = psutil.Process(process.pid)
        rows: list[Row] = []
        try:
            print(f"lighthouse HTTP benchmark: durability={args.durability}, payload={args.payload_bytes} B, "
                  f"{args.seconds:g} s per scenario, up to {args.client_processes} client processes, "
                  f"{os.cpu_count()} CPUs shared by clients and server; server stack: {_stack()}; "
                  f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print(f"{'scenario':<14} {'events/s':>10} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'p99.9 ms':>9} {'errors':>6} {'server us/req':>13} {'client us/req':>13} {'ev/sync':>7} "
                  f"{'ckpts':>5}")
            checkpoints = CheckpointCount(port, authority.issue("bench-admin", Role.ADMIN, ttl_seconds=24 * 3600))
            run_scenario(server, port, tokens, checkpoints, Scenario("warm-up", "/events", 4, 1), 1.0,
                         args.payload_bytes, 1)
            for round_ in range(1, args.rounds + 1):
                for scenario in chosen:
                    row = run_scenario(server, port, tokens, checkpoints, scenario, args.seconds, args.payload_bytes,
                                       args.client_processes, round_)
                    rows.append(row)
                    _print_row(row, row.scenario if args.rounds == 1 else f"{row.scenario} #{round_}")
            for name, shares in _shares_of_ceiling(rows).items():
                each = "" if len(shares) == 1 else f" (rounds: {', '.join(f'{x:.0%}' for x in shares)})"
                print(f"{name}: {statistics.median(shares):.0%} of the no-op ceiling{each}")
            if args.rounds > 1:
                summarize(rows)
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
