"""Slow and careless clients at the connection level, for each HTTP implementation uvicorn can use.

The limits live in protocol subclasses (lighthouse/server/limits.py), so each test runs against both
h11 and httptools. Each test first shows the hostile behaviour happened, then judges the server.
Deadlines are generous: the machine is a busy 2-core VM.
"""

from __future__ import annotations

import importlib.util
import socket
import time
from collections.abc import Iterator

import pytest

from suites.integration.support import RunningServer, poll_until, start_server
from suites.security.hostile import SlowSockets, good_clients

pytestmark = [pytest.mark.smoke, pytest.mark.ci]

LIMITS = {
    "header_timeout_seconds": 1.0,
    "keep_alive_timeout_seconds": 1.0,
    "min_body_rate_bytes_per_second": 1000.0,
    "body_rate_grace_seconds": 1.0,
    "max_connections": 120,
    "max_header_bytes": 8192,
    "max_header_count": 50,
}


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if importlib.util.find_spec(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    running = start_server(tmp_path_factory.mktemp(f"slow-{request.param}"), config={"limits": LIMITS},
                           extra_args=["--http", request.param])
    try:
        yield running
    finally:
        status = running.stop()
        assert status == 0, f"server exited with {status}:\n{running.log()}"


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> tuple[bool, bytes]:
    """(closed by the server within ``seconds``, what it answered), trickling ``trickle`` meanwhile."""
    sock.settimeout(0.25)
    deadline = time.monotonic() + seconds
    answer = b""
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.send(trickle)
            data = sock.recv(65536)
            if not data:
                return True, answer
            answer += data
        except TimeoutError:
            continue
        except OSError:
            return True, answer
    return False, answer


def test_a_head_that_never_ends_is_closed_after_the_header_timeout(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed, answer = closed_within(sock, 15, trickle=b"X")
        lived = time.monotonic() - started
    assert closed, "a trickled head must not keep a connection forever"
    assert lived < 10 and answer.startswith(b"HTTP/1.1 408"), (lived, answer[:80])


def test_a_silent_connection_is_closed(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port)) as sock:
        closed, answer = closed_within(sock, 15)
    assert closed and answer == b""


def test_a_trickled_body_is_closed_below_the_minimum_rate(server: RunningServer) -> None:
    token = server.token("trickler")
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(f"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{".encode())
        closed, _ = closed_within(sock, 20, trickle=b" ")
    assert closed, "a body slower than the minimum data rate must be cut off"
    assert server.client("trickler").get("/health").status_code == 200


@pytest.mark.parametrize("head", [
    b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(2000)) + b"\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 100_000 + b"\r\n\r\n",
], ids=["2000-headers", "100KB-header"])
def test_header_floods_in_one_read_are_refused(server: RunningServer, head: bytes) -> None:
    with socket.create_connection((server.host, server.port)) as sock:
        try:
            sock.sendall(head)
        except OSError:
            pass  # the server may close while we are still sending: that is a refusal too
        closed, answer = closed_within(sock, 10)
    assert closed and (answer == b"" or answer.startswith(b"HTTP/1.1 431")), answer[:80]


def test_a_refused_body_is_not_drained(server: RunningServer) -> None:
    """A 401 for a 1 GiB upload: the server answers and stops reading long before the body ends."""
    sent = 0
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1073741824\r\n\r\n")
        sock.settimeout(10)
        chunk = b"x" * 65536
        try:
            while sent < (1 << 30):
                sent += sock.send(chunk)
        except OSError:
            pass
    assert sent < 64 << 20, f"the server read {sent} bytes of a body it refused"


def test_slow_clients_at_the_connection_cap_do_not_lock_out_good_ones(server: RunningServer) -> None:
    with SlowSockets(server.host, server.port, count=150, interval=0.5) as slow:
        poll_until(lambda: slow.opened >= 150, timeout=10, what="slow sockets open")
        figures = good_clients(server.base_url, server.headers("good"), requests=10, timeout=20)
    assert figures.successes == figures.attempts, figures
