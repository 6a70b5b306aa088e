"""Each answer leaves the server in one TCP segment (lighthouse/server/coalescing.py).

The client side counts the data-carrying segments it received (Linux ``TCP_INFO``'s
``tcpi_data_segs_in``) across one request: uvicorn on its own sends a small answer's head and body as
two. Runs against both HTTP implementations uvicorn can use, on a real ``lighthouse serve``.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import struct
import uuid
from collections.abc import Iterator

import pytest

from suites.integration.support import RunningServer, start_server

pytestmark = [pytest.mark.ci]

#: offset of ``tcpi_data_segs_in`` in Linux's ``struct tcp_info`` (include/uapi/linux/tcp.h, since 4.6)
_DATA_SEGS_IN = 152


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _DATA_SEGS_IN + 4:
        pytest.skip("this kernel's TCP_INFO has no tcpi_data_segs_in (Linux 4.6+)")
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


def _read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer with a content-length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if importlib.util.find_spec(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    running = start_server(tmp_path_factory.mktemp(f"writes-{request.param}"), extra_args=["--http", request.param])
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log()


def _requests(server: RunningServer) -> list[bytes]:
    token = server.token("segments-agent")
    event = json.dumps({"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": "segments:1",
                        "timestamp": 1_700_000_000.0, "data": {"n": 1}}).encode()
    return [
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (token.encode(), len(event), event),
        b"GET /events?limit=5 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % token.encode(),
    ]


def test_each_answer_arrives_as_one_segment(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port)) as sock:
        sock.settimeout(10)
        for request in _requests(server):
            before = _data_segments_in(sock)
            sock.sendall(request)
            answer = _read_answer(sock)
            assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 201")), answer[:200]
            head, _, body = answer.partition(b"\r\n\r\n")
            assert body, "the answer has a body, so head and body were two writes for the server to join"
            assert _data_segments_in(sock) - before == 1, (request.split(b"\r\n")[0], answer[:200])
