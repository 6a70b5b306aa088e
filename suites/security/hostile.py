"""Hostile and careless clients for the security suite and benchmarks/hostile_clients.py.

Slowloris sockets (headers or bodies trickled a byte at a time), WebSocket subscribers that never
read, and good clients measured with HDR percentiles while the bad ones are connected. Everything
talks to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psutil

from testkit.percentiles import LatencyRecorder

__all__ = ["GoodClientFigures", "SlowSockets", "StuckReaders", "good_clients", "peak_rss_while"]

_TCP_ESTABLISHED = 1


def _tcp_state(sock: socket.socket) -> int:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


@dataclass
class SlowSockets:
    """``count`` sockets that send a request head (or a body) one byte every ``interval`` seconds, forever.

    A background thread trickles the bytes and notices when the server closes a socket; ``lifetimes``
    are the seconds each closed socket lived. With ``reconnect`` a closed socket is replaced at once,
    so ``count`` slow connections are kept up against the server, as an attacker would.
    """

    host: str
    port: int
    count: int
    interval: float = 4.0
    body: bool = False
    reconnect: bool = False
    opened: int = 0
    connect_failures: int = 0
    lifetimes: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _socks: dict[socket.socket, float] = field(default_factory=dict)

    def _prefix(self) -> bytes:
        if self.body:
            return (b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000000\r\n\r\n")
        return b"GET /health HTTP/1.1\r\nHost: x\r\n"

    def _open_one(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
            sock.setblocking(False)
            try:
                sock.send(self._prefix())
            except BlockingIOError:
                pass
        except OSError:
            self.connect_failures += 1
            return
        self.opened += 1
        self._socks[sock] = time.monotonic()

    def __enter__(self) -> SlowSockets:
        for _ in range(self.count):
            self._open_one()
        self._thread = threading.Thread(target=self._run, name="slow-sockets", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        byte = b"a" if self.body else b"X"
        while not self._stop.wait(self.interval):
            for sock, since in list(self._socks.items()):
                try:
                    if sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    self._retire(sock, since)
                    continue
                try:
                    sock.send(byte)
                except BlockingIOError:
                    pass
                except OSError:
                    self._retire(sock, since)
                    continue
                try:  # a server that answered (408/431/503) and closed
                    data = sock.recv(65536, socket.MSG_DONTWAIT)
                    if data == b"" or data.startswith(b"HTTP/1.1 4") or data.startswith(b"HTTP/1.1 5"):
                        self._retire(sock, since)
                except BlockingIOError:
                    pass
                except OSError:
                    self._retire(sock, since)

    def _retire(self, sock: socket.socket, since: float) -> None:
        self._socks.pop(sock, None)
        self.lifetimes.append(time.monotonic() - since)
        sock.close()
        if self.reconnect and not self._stop.is_set():
            self._open_one()

    @property
    def open_now(self) -> int:
        return len(self._socks)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for sock in list(self._socks):
            sock.close()
        self._socks.clear()


@dataclass
class GoodClientFigures:
    attempts: int
    successes: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


def good_clients(base_url: str, headers: dict[str, str], *, requests: int, timeout: float = 10.0,
                 path: str = "/events?limit=1") -> GoodClientFigures:
    """``requests`` sequential requests, each on a fresh connection (as a new client would come)."""
    recorder = LatencyRecorder()
    successes = 0
    for _ in range(requests):
        started = time.perf_counter_ns()
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client:
                ok = client.get(path).status_code == 200
        except httpx.HTTPError:
            ok = False
        recorder.record(time.perf_counter_ns() - started)
        successes += ok
    return GoodClientFigures(requests, successes, recorder.percentile(50) / 1e6, recorder.percentile(99) / 1e6,
                             recorder.max_ns / 1e6)


def peak_rss_while(pid: int, action: Callable[[], object], *, interval: float = 0.05) -> tuple[int, int, object]:
    """(RSS before, peak RSS during, result) of running ``action`` while sampling ``pid`` from outside."""
    process = psutil.Process(pid)
    before = process.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], process.memory_info().rss)
            except psutil.Error:
                return
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = action()
    finally:
        stop.set()
        sampler.join()
    return before, peak[0], result


@dataclass
class StuckReaders:
    """``count`` WebSocket subscribers that complete the handshake and then never read a byte.

    Handshakes the server refuses (a subscriber cap) are counted in ``refused``.

    Raw sockets with a tiny receive buffer: the server's writes pile up on its side until it gives up.
    ``closed_by_server`` counts the sockets the server has closed (EOF or reset seen on a final check).
    """

    host: str
    port: int
    token: str
    count: int
    refused: int = 0
    socks: list[socket.socket] = field(default_factory=list)

    def __enter__(self) -> StuckReaders:
        for _ in range(self.count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect((self.host, self.port))
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall((f"GET /stream?from_sequence=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"Authorization: Bearer {self.token}\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)
                if not chunk:
                    break
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                sock.close()
                self.refused += 1
                continue
            self.socks.append(sock)
        return self

    def closed_by_server(self) -> int:
        """Sockets the server has closed (FIN or reset), read from the kernel's TCP state without reading
        a byte, so the check itself never relieves a stuck reader."""
        return sum(1 for sock in self.socks if _tcp_state(sock) != _TCP_ESTABLISHED)

    def __exit__(self, *exc: object) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()
