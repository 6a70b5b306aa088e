"""Graceful shutdown of a live server under load: SIGTERM stops new connections, lets in-flight
appends finish, closes streams, snapshots the bridge and closes the store; nothing acknowledged is
lost and the store reopens clean."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from lighthouse import EventStore
from testkit.checkers import History, check_durability

from .resilient_client import stored_events
from .support import start_server, strace_attached


def test_sigterm_under_load_loses_no_acknowledged_append(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    history = History()
    aggregate = f"shutdown:{uuid.uuid4()}"
    outcomes: list[str] = []
    spans: list[tuple[float, float]] = []  # (start, end) of acknowledged appends, monotonic
    started = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.base_url, headers=server.headers("loader"), timeout=10,
                          transport=httpx.HTTPTransport(retries=0)) as client:
            for i in range(10_000):
                event = {"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": aggregate,
                         "timestamp": 1.0, "data": {"i": i, "pad": "s" * 4000}}
                op = history.invoke("append", [event])
                began = time.monotonic()
                try:
                    response = client.post("/events", json=event)
                except httpx.TransportError as exc:  # the server went away mid-request: unknown outcome
                    history.unknown(op, type(exc).__name__)
                    outcomes.append(type(exc).__name__)
                    return
                if response.status_code == 201:
                    history.ok(op, [response.json()["sequence"]])
                    spans.append((began, time.monotonic()))
                    started.set()
                else:
                    history.fail(op, response.json()["error"])
                    outcomes.append(response.json()["error"])
                    return

    with websockets.sync.client.connect(f"{server.ws_url}/stream", additional_headers=server.headers("watcher"),
                                        open_timeout=30) as ws:
        ws.recv(timeout=5)
        workers = [threading.Thread(target=load) for _ in range(6)]
        for worker in workers:
            worker.start()
        assert started.wait(10)
        # Slow every fdatasync down so that appends are surely in flight when SIGTERM arrives.
        with strace_attached(server.pid, "fdatasync:delay_enter=300000", "fdatasync", tmp_path / "slow.log"):
            time.sleep(0.4)
            sigterm_at = time.monotonic()
            os.kill(server.pid, signal.SIGTERM)
            status = server.process.wait(timeout=30)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    for worker in workers:
        worker.join(timeout=30)
    assert status == 0, server.log()
    assert closed.value.rcvd is not None and closed.value.rcvd.code in (1001, 1012), closed.value
    assert len(outcomes) == 6, "every loader was stopped by the shutdown"
    assert set(outcomes) <= {"shutting_down", "ConnectError", "RemoteProtocolError", "ReadError", "store_closed"}
    finished_in_flight = [span for span in spans if span[0] < sigterm_at < span[1]]
    assert finished_in_flight, "appends in flight at SIGTERM must complete with 201"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/health", timeout=2)
    assert (server.data_dir / "snapshots" / "validation-bridge").is_dir(), "the bridge saved its state"

    async def reopen() -> tuple[list, dict]:
        async with EventStore(server.data_dir) as store:
            log = [e async for e in store.replay(1)]
            return log, store.health().to_dict()

    log, health = asyncio.run(reopen())
    assert health["state"] == "healthy" and not health["damage"], health
    mine = [dict(e.to_dict()) for e in log if e.aggregate_id == aggregate]
    verdict = check_durability(history, stored_events(mine), gapless=False)
    assert verdict.ok, verdict.summary()
