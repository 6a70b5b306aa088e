"""Clients and subscribers behind a TCP fault proxy (testkit.faults.network): latency, jitter,
bandwidth, dropped and reset connections, one-way black holes and partitions.

Under every fault the clients see clean errors or retry, and afterwards the durability checker finds
no acknowledged event missing and none duplicated; subscribers resume without gap after a partition
heals. Each test first shows (from the proxy's counters) that its fault really happened.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from testkit.checkers import History, check_durability
from testkit.faults.network import BackgroundFaultProxy, Direction, LinkFaults

from .resilient_client import ResilientAppender, new_event, stored_events
from .support import RunningServer, read_all


@pytest.fixture()
def proxy(server: RunningServer) -> Iterator[BackgroundFaultProxy]:
    with BackgroundFaultProxy(server.host, server.port, seed=1) as running:
        yield running


def appender(server: RunningServer, proxy: BackgroundFaultProxy, history: History, **options: Any) -> ResilientAppender:
    return ResilientAppender(f"http://{proxy.address}", server.headers("net-agent"), history, **options)


def judge(server: RunningServer, history: History, aggregate: str) -> None:
    """No acknowledged event lost, none duplicated, nothing that was never written (read directly, no proxy)."""
    log = read_all(server.client("net-judge"), aggregate_ids=aggregate)
    verdict = check_durability(history, stored_events(log), gapless=False)
    assert verdict.ok, verdict.summary()
    ids = [e["event_id"] for e in log]
    assert len(ids) == len(set(ids))


def run_appends(server: RunningServer, proxy: BackgroundFaultProxy, n: int, **options: Any) -> tuple[ResilientAppender, History, str]:
    history = History()
    aggregate = f"net:{uuid.uuid4()}"
    client = appender(server, proxy, history, **options)
    try:
        for i in range(n):
            assert client.append(new_event(aggregate, i)), client.errors[-5:]
    finally:
        client.close()
    return client, history, aggregate


def heal_once(proxy: BackgroundFaultProxy, acted: Callable[[], bool]) -> threading.Thread:
    """Heal the partition as soon as ``acted()`` shows it hit the client (polled; at the latest after 30 s)."""
    def watch() -> None:
        deadline = time.monotonic() + 30
        while not acted() and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the proxy's counters and the client's errors
        proxy.heal()

    healer = threading.Thread(target=watch, daemon=True)
    healer.start()
    return healer


TIMEOUTS = {"ReadTimeout", "ConnectTimeout", "WriteTimeout", "PoolTimeout"}
REFUSALS = {"ConnectError", "RemoteProtocolError", "ReadError"}


def test_latency_and_jitter_slow_requests_but_lose_nothing(server: RunningServer, proxy: BackgroundFaultProxy) -> None:
    proxy.set_faults(both=LinkFaults(latency_s=0.03, jitter_s=0.01))
    started = time.perf_counter()
    client, history, aggregate = run_appends(server, proxy, 10, timeout_s=30)  # no timeout from a loaded machine
    elapsed = time.perf_counter() - started
    stats = proxy.stats
    assert stats.delayed_chunks[Direction.UPSTREAM.value] >= 10 and stats.delayed_chunks[Direction.DOWNSTREAM.value] >= 10
    assert proxy.record("latency").require().proven
    assert elapsed >= 10 * 2 * 0.02, "every request crossed the delayed link twice"
    assert client.transport_errors == 0
    judge(server, history, aggregate)


def test_bandwidth_limit_throttles_large_reads(server: RunningServer, proxy: BackgroundFaultProxy) -> None:
    writer = server.client("net-writer")
    aggregate = f"net:{uuid.uuid4()}"
    batch = [{**new_event(aggregate, i), "data": {"pad": "b" * 2000}} for i in range(100)]
    assert writer.post("/events/batch", json={"events": batch}).status_code == 201
    proxy.set_faults(downstream=LinkFaults(bandwidth_bps=200_000))
    with httpx.Client(base_url=f"http://{proxy.address}", headers=server.headers("net-reader"), timeout=30) as reader:
        started = time.perf_counter()
        page = reader.get("/events", params={"aggregate_ids": aggregate, "limit": 100})
        elapsed = time.perf_counter() - started
    assert page.status_code == 200 and len(page.json()["events"]) == 100
    size = len(page.content)
    assert size > 200_000
    assert elapsed >= 0.8 * size / 200_000, f"{size} bytes in {elapsed:.2f} s is faster than the 200 kB/s limit"
    assert proxy.record("bandwidth").proven


@pytest.mark.parametrize("fault", ["drop", "reset"])
def test_dropped_and_reset_connections_are_retried_without_loss_or_duplicates(
    server: RunningServer, proxy: BackgroundFaultProxy, fault: str
) -> None:
    faults = LinkFaults(drop_probability=0.15) if fault == "drop" else LinkFaults(reset_probability=0.15)
    proxy.set_faults(both=faults)
    client, history, aggregate = run_appends(server, proxy, 40)
    stats = proxy.stats
    assert (stats.drops if fault == "drop" else stats.resets) > 0
    assert proxy.record(fault).require().proven
    assert client.transport_errors > 0 and client.attempts > 40, "the fault must have hit some requests"
    judge(server, history, aggregate)


def test_lost_responses_are_recovered_by_idempotent_retry(server: RunningServer, proxy: BackgroundFaultProxy) -> None:
    """Downstream black hole: the server commits the append but the answer never arrives. The retry,
    once the link is back, gets the stored copy (200) instead of a second event."""
    history = History()
    aggregate = f"net:{uuid.uuid4()}"
    client = appender(server, proxy, history, timeout_s=0.5)
    direct = server.client("net-judge")
    try:
        assert client.append(new_event(aggregate, 0))
        proxy.set_faults(downstream=LinkFaults(blackhole=True))
        event = new_event(aggregate, 1)

        def heal_when_committed() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and direct.get(f"/events/{event['event_id']}").status_code != 200:
                time.sleep(0.02)
            time.sleep(0.6)  # let the client time out at least once more
            proxy.clear()

        healer = threading.Thread(target=heal_when_committed)
        healer.start()
        assert client.append(event)
        healer.join()
    finally:
        client.close()
    assert proxy.stats.bytes_blackholed[Direction.DOWNSTREAM.value] > 0
    assert proxy.record("blackhole").require().proven
    assert client.transport_errors >= 1 and client.replayed >= 1, (client.errors, client.replayed)
    judge(server, history, aggregate)


def test_requests_during_a_partition_fail_cleanly_and_succeed_after_it_heals(
    server: RunningServer, proxy: BackgroundFaultProxy
) -> None:
    history = History()
    aggregate = f"net:{uuid.uuid4()}"
    client = appender(server, proxy, history, timeout_s=0.3)
    try:
        assert client.append(new_event(aggregate, 0))
        proxy.partition()
        healer = heal_once(proxy, lambda: proxy.stats.stalls > 0 and bool(TIMEOUTS & set(client.errors[:])))
        assert client.append(new_event(aggregate, 1)), "retries carry it through once the link heals"
        healer.join()
        proxy.partition(refuse=True)
        healer = heal_once(proxy, lambda: proxy.stats.refused > 0 and bool(REFUSALS & set(client.errors[:])))
        assert client.append(new_event(aggregate, 2))
        healer.join()
    finally:
        client.close()
    stats = proxy.stats
    assert stats.stalls > 0 and stats.refused > 0
    assert proxy.record("partition").require().proven
    assert TIMEOUTS & set(client.errors)
    assert REFUSALS & set(client.errors), client.errors
    judge(server, history, aggregate)


def _subscribe(server: RunningServer, address: str, aggregate: str, start: int) -> Any:
    return websockets.sync.client.connect(
        f"ws://{address}/stream?from_sequence={start}&aggregate_ids={aggregate}",
        additional_headers=server.headers("net-subscriber"), open_timeout=30, ping_interval=None, close_timeout=1,
    )


def test_a_subscriber_resumes_without_gap_after_a_partition(server: RunningServer, proxy: BackgroundFaultProxy) -> None:
    writer = server.client("net-writer")  # writes go straight to the server; only the subscriber is cut off
    aggregate = f"net:{uuid.uuid4()}"

    def write(count: int) -> list[int]:
        out = []
        for _ in range(count):
            response = writer.post("/events", json=new_event(aggregate, 0))
            out.append(response.json()["sequence"])
        return out

    written = write(5)
    seen: list[int] = []
    with _subscribe(server, proxy.address, aggregate, written[0]) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "subscribed"
        while len(seen) < 5:
            seen.append(json.loads(ws.recv(timeout=30))["event"]["sequence"])
        proxy.partition()
        written += write(10)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # stalled: nothing crosses the partition
        proxy.heal()
        while len(seen) < 15:  # the stalled bytes arrive intact once it heals
            seen.append(json.loads(ws.recv(timeout=30))["event"]["sequence"])
    assert proxy.stats.stalls > 0
    assert seen == written

    # A longer partition: the subscriber gives up, then reconnects from its last sequence.
    with _subscribe(server, proxy.address, aggregate, seen[-1] + 1) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "subscribed"
        proxy.partition()
        written += write(10)
        with pytest.raises((TimeoutError, ConnectionClosed)):
            ws.recv(timeout=0.5)
        assert proxy.reset_all() >= 1  # the subscriber's connection dies while the link is down
    proxy.heal()
    with _subscribe(server, proxy.address, aggregate, seen[-1] + 1) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "subscribed"
        while len(seen) < len(written):
            seen.append(json.loads(ws.recv(timeout=30))["event"]["sequence"])
    assert seen == written, "no gap and no duplicate across the partition"
    assert [e["sequence"] for e in read_all(writer, aggregate_ids=aggregate)] == written


class _Echo:
    """A tiny TCP server that sends back what it reads, upper-cased, and closes after the client's EOF."""

    def __init__(self) -> None:
        import socketserver

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                data = self.rfile.read()  # until the client half-closes
                self.wfile.write(data.upper())

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> tuple[str, int]:
        self.thread.start()
        return self.server.server_address[:2]  # type: ignore[return-value]

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _exchange(address: str, payload: bytes, timeout: float = 5.0) -> bytes:
    import errno
    import socket

    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # the proxy already reset the connection (a busy machine lets it win the race)
            if exc.errno != errno.ENOTCONN:
                raise
            raise ConnectionResetError(errno.ECONNRESET, "the peer reset the connection") from exc
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_proxy_is_transparent_when_clean_and_keeps_half_close() -> None:
    payload = bytes(range(256)) * 2000
    with _Echo() as (host, port), BackgroundFaultProxy(host, port) as proxy:
        assert _exchange(proxy.address, payload) == payload.upper()
        stats = proxy.stats
    assert stats.bytes_forwarded == {"upstream": len(payload), "downstream": len(payload)}
    assert stats.drops == stats.resets == 0


def test_one_direction_faults_leave_the_other_alone() -> None:
    with _Echo() as (host, port), BackgroundFaultProxy(host, port) as proxy:
        proxy.set_faults(downstream=LinkFaults(latency_s=0.2))
        started = time.perf_counter()
        assert _exchange(proxy.address, b"ping") == b"PING"
        assert time.perf_counter() - started >= 0.2
        stats = proxy.stats
    assert stats.delayed_chunks == {"upstream": 0, "downstream": 1}


def test_unreachable_upstream_and_bad_specs_are_clean_errors() -> None:
    import socket

    from testkit.faults.errors import InvalidFaultSpec
    from testkit.faults.network import FaultProxy

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with BackgroundFaultProxy("127.0.0.1", dead_port) as proxy:
        with pytest.raises(ConnectionError):
            _exchange(proxy.address, b"x")
        assert proxy.stats.upstream_failures == 1
    for bad in ({"latency_s": -1}, {"latency_s": 0.1, "jitter_s": 0.2}, {"drop_probability": 1.5},
                {"bandwidth_bps": 0}):
        with pytest.raises(InvalidFaultSpec):
            LinkFaults(**bad)
    with pytest.raises(InvalidFaultSpec):
        FaultProxy("127.0.0.1", 1, listen_host="0.0.0.0")
