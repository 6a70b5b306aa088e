"""HTTP append throughput and latency of a lighthouse server over loopback.

Starts ``python -m lighthouse.server`` on a fresh data directory (port 0, durability as asked,
fsync by default), then runs closed-loop clients for a fixed time per scenario: single appends at
several concurrencies, and batches. Latency is per request (client side, HdrHistogram via
testkit.percentiles); throughput is acknowledged events per second. The client and the server
share this machine's cores, so the figures are a floor for a server with cores of its own.

    .venv/bin/python benchmarks/http_bench.py [--seconds 5] [--durability fsync] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from lighthouse.server.auth import Role, TokenAuthority
from testkit.percentiles import LatencyRecorder

SCENARIOS: tuple[tuple[str, int, int], ...] = (
    # name, concurrency, events per request (1: POST /events, more: POST /events/batch)
    ("single c=1", 1, 1),
    ("single c=8", 8, 1),
    ("single c=32", 32, 1),
    ("batch100 c=1", 1, 100),
    ("batch100 c=4", 4, 100),
)


def start(workdir: Path, durability: str) -> tuple[subprocess.Popen[bytes], str, bytes]:
    secret = secrets.token_urlsafe(32).encode()
    (workdir / "secret").write_bytes(secret)
    ready = workdir / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "lighthouse.server", "--data-dir", str(workdir / "data"), "--port", "0",
         "--secret-file", str(workdir / "secret"), "--ready-file", str(ready), "--durability", durability,
         "--log-level", "error"],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.02)
    port = json.loads(ready.read_text())["port"]
    return process, f"http://127.0.0.1:{port}", secret


def event(payload: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": f"bench:{uuid.uuid4().hex[:8]}",
            "timestamp": time.time(), "data": {"payload": payload}}


class Connection:
    """A minimal keep-alive HTTP/1.1 client: a general client (httpx) costs the shared CPUs more than
    the server does per request, and would measure itself."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> int:
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def run(base_url: str, token: str, concurrency: int, per_request: int, seconds: float,
              payload_bytes: int) -> tuple[int, LatencyRecorder, int]:
    payload = "x" * payload_bytes
    recorder = LatencyRecorder()
    done = 0
    errors = 0
    stop_at = time.monotonic() + seconds
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    assert port is not None

    async def worker() -> None:
        nonlocal done, errors
        connection = Connection(host, port, token)
        await connection.open()
        try:
            while time.monotonic() < stop_at:
                if per_request == 1:
                    body, path = json.dumps(event(payload)).encode(), "/events"
                else:
                    body = json.dumps({"events": [event(payload) for _ in range(per_request)]}).encode()
                    path = "/events/batch"
                started = time.perf_counter_ns()
                status = await connection.post(path, body)
                recorder.record(time.perf_counter_ns() - started)
                if status == 201:
                    done += per_request
                else:
                    errors += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, recorder, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    parser.add_argument("--durability", default="fsync", choices=("fsync", "batch", "none"))
    parser.add_argument("--payload-bytes", type=int, default=200)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        process, base_url, secret = start(Path(tmp), args.durability)
        token = TokenAuthority(secret).issue("bench", Role.AGENT, ttl_seconds=3600)
        rows = []
        try:
            print(f"lighthouse HTTP append benchmark: durability={args.durability}, payload={args.payload_bytes} B, "
                  f"{args.seconds:.0f} s per scenario, {os.cpu_count()} CPUs shared by client and server")
            print(f"{'scenario':<14} {'events/s':>10} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
                  f"{'errors':>6}")
            asyncio.run(run(base_url, token, 4, 1, 1.0, args.payload_bytes))  # warm-up
            for name, concurrency, per_request in SCENARIOS:
                started = time.perf_counter()
                events, recorder, errors = asyncio.run(
                    run(base_url, token, concurrency, per_request, args.seconds, args.payload_bytes))
                elapsed = time.perf_counter() - started
                row = {
                    "scenario": name, "concurrency": concurrency, "events_per_request": per_request,
                    "events_per_s": events / elapsed, "requests_per_s": recorder.count / elapsed,
                    "p50_ms": recorder.percentile(50) / 1e6, "p99_ms": recorder.percentile(99) / 1e6,
                    "p999_ms": recorder.percentile(99.9) / 1e6, "errors": errors, "durability": args.durability,
                }
                rows.append(row)
                print(f"{name:<14} {row['events_per_s']:>10,.0f} {row['requests_per_s']:>11,.0f} {row['p50_ms']:>8.2f} "
                      f"{row['p99_ms']:>8.2f} {row['p999_ms']:>9.2f} {errors:>6}")
        finally:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
