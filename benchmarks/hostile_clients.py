"""Issue 13's figures: a real ``lighthouse serve`` under slow, greedy and careless clients.

    PYTHONPATH=$PWD python benchmarks/hostile_clients.py --server-code /work/main   # before
    PYTHONPATH=$PWD python benchmarks/hostile_clients.py --server-code $PWD         # after

``--server-code`` is the checkout whose ``lighthouse`` the server subprocess imports (its PYTHONPATH;
the script runs the servers from a scratch directory so the cwd cannot shadow it); the clients and the
measuring always use this checkout. Prints one line per figure (and ``--json FILE`` writes them).
Scenarios: ``slowloris`` (2,000 slow heads), ``slowloris-fd`` (1,100 under a 1,024 descriptor limit),
``slowloris-churn`` (2,000 slow heads, each replaced at once when the server drops it: always 2,000 open),
``reads`` (4 concurrent ``limit=10000`` reads over ~1 MiB events), ``ws`` (500 WebSocket subscribers
that never read), ``fence`` (two servers on one directory after the LOCK file is deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from lighthouse import Event, EventStore
from suites.integration.support import RunningServer, start_server
from suites.security.hostile import SlowSockets, StuckReaders, good_clients, peak_rss_while

MIB = 1 << 20


def _raise_own_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _server(code: Path, workdir: Path, *, data_dir: Path | None = None, wrapper: tuple[str, ...] = ()) -> RunningServer:
    return start_server(workdir, data_dir=data_dir, env={"PYTHONPATH": str(code)}, wrapper=wrapper)


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MIB


def slowloris(code: Path, work: Path, *, slow: int, fd_limit: int | None, observe_s: float,
              reconnect: bool = False) -> dict[str, Any]:
    wrapper = ("prlimit", f"--nofile={fd_limit}:{fd_limit}") if fd_limit else ()
    server = _server(code, work / f"slowloris-{slow}-{fd_limit}-{reconnect}", wrapper=wrapper)
    try:
        with SlowSockets(server.host, server.port, count=slow, interval=4.0, reconnect=reconnect) as sockets:
            opened_at = time.monotonic()
            time.sleep(2.0)
            figures = good_clients(server.base_url, server.headers("good"), requests=40, timeout=10)
            time.sleep(max(0.0, observe_s - (time.monotonic() - opened_at)))
            lifetimes = sorted(sockets.lifetimes)
            return {
                "slow_connections": slow, "fd_limit": fd_limit, "attacker_reconnects": reconnect, "slow_opened": sockets.opened,
                "slow_connect_failures": sockets.connect_failures,
                "good_success": f"{figures.successes}/{figures.attempts}",
                "good_p50_ms": round(figures.p50_ms, 1), "good_p99_ms": round(figures.p99_ms, 1),
                "slow_still_open_after_s": round(time.monotonic() - opened_at, 1),
                "slow_still_open": sockets.open_now,
                "slow_lifetime_median_s": round(lifetimes[len(lifetimes) // 2], 1) if lifetimes else None,
                "slow_lifetime_max_s": round(lifetimes[-1], 1) if lifetimes else None,
                "server_log_mb": round(server.log_path.stat().st_size / MIB, 2),
                "server_alive": server.alive(),
            }
    finally:
        server.stop(timeout=30)


async def _fill(directory: Path, events: int, size: int) -> None:
    blob = "x" * size
    async with EventStore(directory) as store:
        for i in range(events):
            await store.append(Event("custom", aggregate_id=f"big:{i % 7}", data={"i": i, "blob": blob}))


def _template(work: Path, events: int, size: int) -> Path:
    template = work / "template"
    if not template.exists():
        asyncio.run(_fill(template, events, size))
        for name in ("LOCK", "OWNER"):
            (template / name).unlink(missing_ok=True)
    return template


def _copy(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


def big_reads(code: Path, work: Path, template: Path) -> dict[str, Any]:
    server = _server(code, work / "reads", data_dir=_copy(template, work / "reads-data"))
    try:
        headers = server.headers("reader")
        received: list[int] = []

        def read_one() -> None:
            total = 0
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=300) as client:
                with client.stream("GET", "/events", params={"limit": 10000}) as response:
                    for chunk in response.iter_bytes():
                        total += len(chunk)
            received.append(total)

        def four() -> None:
            threads = [threading.Thread(target=read_one) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        started = time.monotonic()
        before, peak, _ = peak_rss_while(server.pid, four)
        return {"rss_before_mb": round(before / MIB), "rss_peak_mb": round(peak / MIB),
                "bytes_per_response_mb": [round(r / MIB, 1) for r in received],
                "seconds": round(time.monotonic() - started, 1)}
    finally:
        server.stop(timeout=60)


def stuck_subscribers(code: Path, work: Path, template: Path, count: int, hold_s: float) -> dict[str, Any]:
    server = _server(code, work / "ws", data_dir=_copy(template, work / "ws-data"))
    try:
        baseline = _rss_mb(server.pid)
        token = server.token("stuck")
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_mb(server.pid))
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with StuckReaders(server.host, server.port, token, count) as readers:
            time.sleep(hold_s)
            closed = readers.closed_by_server()
            during = _rss_mb(server.pid)
            accepted = len(readers.socks)
            refused = readers.refused
        time.sleep(15)
        stop.set()
        sampler.join()
        after = _rss_mb(server.pid)
        health = httpx.get(f"{server.base_url}/health", timeout=30).status_code
        return {"subscribers": count, "accepted": accepted, "refused": refused,
                "closed_by_server_within_s": [closed, hold_s], "rss_baseline_mb": round(baseline),
                "rss_peak_mb": round(peak[0]), "rss_at_end_of_hold_mb": round(during),
                "rss_15s_after_clients_left_mb": round(after), "health_after": health}
    finally:
        server.stop(timeout=60)


def two_writers(code: Path, work: Path) -> dict[str, Any]:
    data = work / "fence-data"
    first = _server(code, work / "fence-a", data_dir=data)
    second: RunningServer | None = None
    acked: list[str] = []
    refused: dict[str, int] = {}

    def append(server: RunningServer, client: httpx.Client, i: int) -> None:
        response = client.post("/events", json={"event_type": "custom", "aggregate_id": f"fence:{i % 5}",
                                                "data": {"i": i, "pad": "p" * 200}})
        if response.status_code in (200, 201):
            acked.append(response.json()["event_id"])
        else:
            key = f"{response.status_code} {response.json().get('error')}"
            refused[key] = refused.get(key, 0) + 1

    try:
        a = first.client("writer-a", timeout=30)
        for i in range(150):
            append(first, a, i)
        (data / "LOCK").unlink()
        second = _server(code, work / "fence-b", data_dir=data)
        b = second.client("writer-b", timeout=30)
        for i in range(150, 350):
            append(second if i % 2 else first, b if i % 2 else a, i)
        health_a = first.client("root", "admin").get("/health/detailed").json()
        state_a = {"state": health_a.get("state"), "lost_sequences": health_a.get("store", {}).get("lost_sequences")}
    finally:
        first.stop(timeout=30)
        if second is not None:
            second.stop(timeout=30)

    async def present() -> set[str]:
        async with EventStore(data) as store:
            return {e.event_id async for e in store.replay(1)}

    stored = asyncio.run(present())
    lost = [event_id for event_id in acked if event_id not in stored]
    return {"acknowledged": len(acked), "refused": refused, "acknowledged_lost": len(lost),
            "first_server_health_after": state_a}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-code", type=Path, default=Path.cwd(), help="checkout the server imports")
    parser.add_argument("--scenarios", default="slowloris,slowloris-fd,reads,ws,fence")
    parser.add_argument("--events", type=int, default=190, help="~1 MiB events in the read/ws store")
    parser.add_argument("--ws-subscribers", type=int, default=500)
    parser.add_argument("--observe", type=float, default=30.0, help="seconds to watch the slow connections")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    _raise_own_descriptor_limit()
    wanted = args.scenarios.split(",")
    results: dict[str, Any] = {"server_code": str(args.server_code)}
    args.server_code = args.server_code.resolve()
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # ``python -m`` puts the cwd first on sys.path: only --server-code may provide lighthouse
        template = _template(work, args.events, 1_000_000) if {"reads", "ws"} & set(wanted) else None
        runs = {
            "slowloris": lambda: slowloris(args.server_code, work, slow=2000, fd_limit=None, observe_s=args.observe),
            "slowloris-fd": lambda: slowloris(args.server_code, work, slow=1100, fd_limit=1024, observe_s=args.observe),
            "slowloris-churn": lambda: slowloris(args.server_code, work, slow=2000, fd_limit=None,
                                                 observe_s=args.observe, reconnect=True),
            "reads": lambda: big_reads(args.server_code, work, template),  # type: ignore[arg-type]
            "ws": lambda: stuck_subscribers(args.server_code, work, template, args.ws_subscribers, 30.0),  # type: ignore[arg-type]
            "fence": lambda: two_writers(args.server_code, work),
        }
        for name in wanted:
            started = time.monotonic()
            try:
                results[name] = runs[name]()
            except Exception as exc:  # noqa: BLE001 - a scenario that breaks is a figure too
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            results[name]["wall_s"] = round(time.monotonic() - started, 1)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
