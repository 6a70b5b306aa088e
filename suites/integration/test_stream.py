"""WS /stream against a real server: catch-up then live, filters, resume without gap or duplicate,
and a slow client closed with 4408 instead of growing the server's memory."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import uuid
from urllib.parse import urlsplit
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from lighthouse.server.routes.stream import CLOSE_SLOW_CONSUMER

from .support import RunningServer, poll_until, read_all, start_server

#: How long to wait for a frame the server owes: generous enough for a load average of 8 on 2 cores.
WAIT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Small per-client buffers so that a slow client is detected quickly."""
    running = start_server(tmp_path_factory.mktemp("stream"), config={
        "server": {"stream_buffer_events": 200, "stream_send_timeout_seconds": SEND_TIMEOUT_S,
                   "stream_max_backlog_bytes": SLOW_CLIENT_MAX_BACKLOG},
        # The slow client reads the queued events and the close frame only once the server has given up on it:
        # on a busy machine that takes longer than the default 5 s close handshake.
        "limits": {"websocket_close_timeout_seconds": SLOW_CLIENT_DEADLINE_S}})
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log()


def events(n: int, aggregate: str | None = None, event_type: str = "custom", size: int = 0) -> list[dict[str, Any]]:
    """``n`` events with ``size`` characters of incompressible padding: the stream is deflate-compressed, and a
    repeated character would shrink a 12 MB backlog to well under a megabyte on the wire."""
    aggregate = aggregate or f"stream:{uuid.uuid4()}"
    return [{"event_id": str(uuid.uuid4()), "event_type": event_type, "aggregate_id": aggregate, "timestamp": 1.0,
             "data": {"i": i, "pad": base64.b64encode(os.urandom(size * 3 // 4)).decode()}} for i in range(n)]


def append(client: httpx.Client, batch: list[dict[str, Any]]) -> list[int]:
    response = client.post("/events/batch", json={"events": batch})
    assert response.status_code == 201, response.text
    return [e["sequence"] for e in response.json()["events"]]


def connect(server: RunningServer, **params: Any) -> websockets.sync.client.ClientConnection:
    query = httpx.QueryParams(params)
    return websockets.sync.client.connect(
        f"{server.ws_url}/stream?{query}", additional_headers=server.headers("reader"), open_timeout=30,
        max_size=None,
    )


def receive(ws: websockets.sync.client.ClientConnection, count: int, timeout: float = WAIT_S) -> list[dict[str, Any]]:
    out = []
    while len(out) < count:
        message = json.loads(ws.recv(timeout=timeout))
        assert message["type"] == "event", message
        out.append(message["event"])
    return out


def test_catch_up_then_live(server: RunningServer) -> None:
    writer = server.client("writer")
    aggregate = f"stream:{uuid.uuid4()}"
    history = append(writer, events(30, aggregate))
    with connect(server, from_sequence=history[0], aggregate_ids=aggregate) as ws:
        hello = json.loads(ws.recv(timeout=WAIT_S))
        assert hello["type"] == "subscribed" and hello["head_sequence"] >= history[-1]
        caught_up = receive(ws, 30)
        assert [e["sequence"] for e in caught_up] == history
        live = append(writer, events(10, aggregate))
        assert [e["sequence"] for e in receive(ws, 10)] == live


def test_only_new_events_without_from_sequence(server: RunningServer) -> None:
    writer = server.client("writer")
    aggregate = f"stream:{uuid.uuid4()}"
    append(writer, events(5, aggregate))
    with connect(server, aggregate_ids=aggregate) as ws:
        hello = json.loads(ws.recv(timeout=WAIT_S))
        fresh = append(writer, events(3, aggregate))
        assert hello["from_sequence"] <= fresh[0]
        assert [e["sequence"] for e in receive(ws, 3)] == fresh


def test_filters_select_by_type_and_aggregate(server: RunningServer) -> None:
    writer = server.client("writer")
    wanted, other = f"stream:{uuid.uuid4()}", f"stream:{uuid.uuid4()}"
    start = append(writer, events(1, other))[0]
    expected = []
    for _ in range(5):
        expected += append(writer, events(2, wanted, "file_created"))
        append(writer, events(2, wanted, "file_deleted"))
        append(writer, events(2, other, "file_created"))
    with connect(server, from_sequence=start, aggregate_ids=wanted, event_types="file_created") as ws:
        json.loads(ws.recv(timeout=WAIT_S))
        got = receive(ws, len(expected))
        assert [e["sequence"] for e in got] == expected
        assert {(e["aggregate_id"], e["event_type"]) for e in got} == {(wanted, "file_created")}
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # nothing else matches


def test_bad_parameters_refuse_the_handshake(server: RunningServer) -> None:
    from websockets.exceptions import InvalidStatus

    for params in ({"from_sequence": "-3"}, {"event_types": "nope"}, {"colour": "red"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(server, **params)
        assert refused.value.response.status_code == 400
        assert json.loads(refused.value.response.body)["error"] == "invalid_query"


def test_reconnecting_from_the_last_sequence_loses_and_repeats_nothing(server: RunningServer) -> None:
    writer = server.client("writer")
    aggregate = f"stream:{uuid.uuid4()}"
    start = append(writer, events(1, aggregate))[0]
    stop = threading.Event()
    appended: list[int] = [start]

    def keep_writing() -> None:
        with httpx.Client(base_url=server.base_url, headers=server.headers("writer")) as client:
            while not stop.is_set() and len(appended) < 600:
                appended.extend(append(client, events(5, aggregate)))

    thread = threading.Thread(target=keep_writing)
    thread.start()
    seen: list[int] = []
    resume = start
    try:
        for _ in range(6):  # disconnect and resume while events keep arriving
            with connect(server, from_sequence=resume, aggregate_ids=aggregate) as ws:
                json.loads(ws.recv(timeout=WAIT_S))
                batch = receive(ws, 40)
            seen += [e["sequence"] for e in batch]
            resume = seen[-1] + 1
    finally:
        stop.set()
        thread.join(timeout=30)
    with connect(server, from_sequence=resume, aggregate_ids=aggregate) as ws:
        json.loads(ws.recv(timeout=WAIT_S))
        remaining = len([s for s in appended if s >= resume])
        seen += [e["sequence"] for e in receive(ws, remaining)]
    assert seen == sorted(appended), "resumed stream must equal the log: no gap, no duplicate"
    assert seen == [e["sequence"] for e in read_all(writer, aggregate_ids=aggregate)]


#: A client socket's fixed receive buffer. Left to autotuning, loopback grows it to tcp_rmem's maximum (32 MB
#: here), which swallows the whole backlog: the server never blocks and never closes the client.
SLOW_CLIENT_RCVBUF = 64 * 1024
#: Generous enough for a load average of 8 on 2 cores: the close arrives behind megabytes of queued events.
SLOW_CLIENT_DEADLINE_S = 120.0
#: Bytes the server may hold queued for one subscriber: far below what an autotuned kernel send buffer holds
#: (tcp_wmem: 4 MB), so only the server's own bound makes the sends to a client that does not read wait.
SLOW_CLIENT_MAX_BACKLOG = 256 * 1024
#: How long one send may wait: a client that reads (the resumed one) keeps up with that even at load 8.
SEND_TIMEOUT_S = 5.0


def _small_window_socket(server: RunningServer) -> socket.socket:
    address = urlsplit(server.ws_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_CLIENT_RCVBUF)  # before connect: fixes the window
    sock.settimeout(30)
    sock.connect((address.hostname, address.port))
    sock.settimeout(None)
    return sock


def _slow_consumer_closes(client: httpx.Client) -> float:
    """Subscribers the server closed for being slow (overflow or send timeout), from its /metrics."""
    closes = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("lighthouse_stream_closed_total{") and (
                'reason="slow_consumer"' in line or 'reason="send_timeout"' in line):
            closes += float(line.rsplit(" ", 1)[1])
    return closes


def test_a_slow_client_is_closed_with_4408_and_can_resume(server: RunningServer) -> None:
    writer = server.client("writer")
    aggregate = f"stream:{uuid.uuid4()}"
    start = append(writer, events(1, aggregate))[0]
    closes_before = _slow_consumer_closes(writer)
    with websockets.sync.client.connect(
        f"{server.ws_url}/stream?from_sequence={start}&aggregate_ids={aggregate}", sock=_small_window_socket(server),
        additional_headers=server.headers("slow"), open_timeout=30, max_queue=1, max_size=None,
    ) as ws:
        total = [start]
        # ~2.4 MB the client does not read (~1.8 MB on the wire): well over its 64 KB window and the server's
        # backlog limit, but less than the kernel's send buffer would swallow: a server that relies on a send
        # blocking (or on its 200-event buffer overflowing, which depends on relative CPU speed) never closes it.
        for _ in range(6):
            total += append(writer, events(100, aggregate, size=4000))
        # The client has read nothing yet: wait, on the server's own counter, until the server gave up on it, so
        # that on a busy machine the client cannot drain the backlog before the server notices it is slow.
        poll_until(lambda: _slow_consumer_closes(writer) > closes_before, timeout=SLOW_CLIENT_DEADLINE_S,
                   interval=0.2, what="the server closing the subscriber that does not read")
        received = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = json.loads(ws.recv(timeout=SLOW_CLIENT_DEADLINE_S))
                if message["type"] == "event":
                    received.append(message["event"]["sequence"])
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_SLOW_CONSUMER, closed.value
    reason = json.loads(closed.value.rcvd.reason)
    assert reason["error"] in ("slow_consumer", "send_timeout")
    assert len(received) < len(total), "the server gave up before sending everything"
    assert received == total[: len(received)], "what was delivered has no gap"
    resume = received[-1] + 1 if received else start
    assert reason["resume_from"] <= resume
    with connect(server, from_sequence=resume, aggregate_ids=aggregate) as again:
        json.loads(again.recv(timeout=SLOW_CLIENT_DEADLINE_S))
        rest = receive(again, len(total) - len(received), timeout=SLOW_CLIENT_DEADLINE_S)
    assert received + [e["sequence"] for e in rest] == total
    metrics = writer.get("/metrics").text
    assert 'lighthouse_stream_closed_total{reason="slow_consumer"}' in metrics or \
        'lighthouse_stream_closed_total{reason="send_timeout"}' in metrics


def test_messagepack_frames_on_request(server: RunningServer) -> None:
    import msgpack

    writer = server.client("writer")
    aggregate = f"stream:{uuid.uuid4()}"
    sequences = append(writer, events(3, aggregate))
    with connect(server, from_sequence=sequences[0], aggregate_ids=aggregate, encoding="msgpack") as ws:
        frames = [ws.recv(timeout=WAIT_S) for _ in range(4)]
    assert all(isinstance(frame, bytes) for frame in frames)
    decoded = [msgpack.unpackb(frame) for frame in frames]
    assert decoded[0]["type"] == "subscribed"
    assert [m["event"]["sequence"] for m in decoded[1:]] == sequences
