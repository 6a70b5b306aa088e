"""An asyncio TCP fault proxy: put it between clients and a server and break the network on demand.

Works for any TCP protocol (HTTP, WebSocket, a database wire protocol): it never parses what it
forwards. Faults are set per direction (``upstream``: client to server, ``downstream``: server to
client) and can change while connections are open:

* ``latency_s`` and ``jitter_s``: one-way delay of every chunk (order is kept, as TCP would);
* ``bandwidth_bps``: a byte rate limit (token bucket);
* ``drop_probability``: per forwarded chunk, the chance that the connection is dropped (closed
  cleanly, both sides, the rest of the chunk lost);
* ``reset_probability``: per chunk, the chance of an abortive close (TCP RST to both sides);
* ``blackhole``: bytes are read and discarded; the peer sees a silent, stalled connection. A
  connection that lost bytes this way can never be trusted again (its byte stream has a hole), so
  it is reset as soon as it carries data after the blackhole is lifted.

Proxy-wide: :meth:`FaultProxy.partition` stalls every connection, old and new, in both directions:
nothing is read or delivered, so bytes wait in the kernel's buffers as they would wait for TCP
retransmission; :meth:`FaultProxy.heal` lets them flow again, intact, unless the peers gave up
meanwhile. ``partition(refuse=True)`` also resets new connections at once (a down host rather than
an unreachable one). :meth:`FaultProxy.reset_all` sends RST on every open connection. Counters in
:attr:`FaultProxy.stats` are the proof that a fault happened (bytes discarded, resets sent);
:meth:`FaultProxy.record` turns them into a :class:`~testkit.faults.records.FaultRecord`.

Use it in async code (``async with FaultProxy(host, port) as proxy``) or from synchronous tests
with :class:`BackgroundFaultProxy`, which runs the proxy on its own thread and event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeVar

from testkit.faults.errors import InvalidFaultSpec
from testkit.faults.records import FaultClock, FaultRecord

__all__ = ["BackgroundFaultProxy", "Direction", "FaultProxy", "LinkFaults", "ProxyStats"]

_CHUNK: Final[int] = 64 * 1024
_QUEUE_CHUNKS: Final[int] = 64  # per direction: bounds memory when delivery is slower than arrival
_T = TypeVar("_T")


class Direction(StrEnum):
    UPSTREAM = "upstream"  # client -> server
    DOWNSTREAM = "downstream"  # server -> client


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """Faults of one direction. The default is a clean link."""

    latency_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth_bps: float | None = None
    drop_probability: float = 0.0
    reset_probability: float = 0.0
    blackhole: bool = False

    def __post_init__(self) -> None:
        for name in ("latency_s", "jitter_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidFaultSpec(f"{name} must be a finite number >= 0, got {value!r}")
        if self.jitter_s > self.latency_s:
            raise InvalidFaultSpec("jitter_s must not exceed latency_s (delays cannot be negative)")
        if self.bandwidth_bps is not None and (not math.isfinite(self.bandwidth_bps) or self.bandwidth_bps <= 0):
            raise InvalidFaultSpec(f"bandwidth_bps must be positive, got {self.bandwidth_bps!r}")
        for name in ("drop_probability", "reset_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidFaultSpec(f"{name} must be within 0..1, got {value!r}")

    @property
    def clean(self) -> bool:
        return self == LinkFaults()


@dataclass(slots=True)
class ProxyStats:
    """What the proxy did; the evidence a fault test checks before judging."""

    connections: int = 0
    refused: int = 0
    open_connections: int = 0
    bytes_forwarded: dict[str, int] = field(default_factory=lambda: {d.value: 0 for d in Direction})
    bytes_blackholed: dict[str, int] = field(default_factory=lambda: {d.value: 0 for d in Direction})
    delayed_chunks: dict[str, int] = field(default_factory=lambda: {d.value: 0 for d in Direction})
    drops: int = 0
    resets: int = 0
    stalls: int = 0
    upstream_failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    """One proxied connection: two pumps (one per direction), each with a delivery queue."""

    def __init__(self, proxy: FaultProxy, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 server: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.closed = asyncio.Event()
        self.poisoned = False  # bytes were discarded: the stream has a hole
        self._finished: set[Direction] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump(Direction.UPSTREAM, self.client_reader, self.server_writer)),
            loop.create_task(self._pump(Direction.DOWNSTREAM, self.server_reader, self.client_writer)),
        ]
        try:
            await self.closed.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(BaseException):
                    await task
            for writer in (self.client_writer, self.server_writer):
                writer.close()

    def drop(self) -> None:
        """Close both sides cleanly (FIN)."""
        self.proxy.stats.drops += 1
        for writer in (self.client_writer, self.server_writer):
            with contextlib.suppress(Exception):
                writer.close()
        self.closed.set()

    def reset(self) -> None:
        """Abort both sides (RST)."""
        self.proxy.stats.resets += 1
        for writer in (self.client_writer, self.server_writer):
            _abort_with_rst(writer)
        self.closed.set()

    async def _pump(self, direction: Direction, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
        deliverer = asyncio.get_running_loop().create_task(self._deliver(direction, queue, writer))
        proxy, stats, rng = self.proxy, self.proxy.stats, self.proxy.rng
        last_due = 0.0
        try:
            while True:
                await proxy.wait_link()
                try:
                    chunk = await reader.read(_CHUNK)
                except (ConnectionError, OSError):
                    chunk = b""
                if not chunk:
                    await queue.put(None)  # end of stream: deliver what is queued, then half-close
                    await deliverer
                    return
                faults = proxy.faults(direction)
                if faults.blackhole:
                    stats.bytes_blackholed[direction.value] += len(chunk)
                    self.poisoned = True
                    continue
                if self.poisoned:
                    self.reset()
                    return
                if faults.reset_probability and rng.random() < faults.reset_probability:
                    self.reset()
                    return
                if faults.drop_probability and rng.random() < faults.drop_probability:
                    self.drop()
                    return
                due = time.monotonic()
                if faults.latency_s:
                    delay = faults.latency_s + (rng.uniform(-faults.jitter_s, faults.jitter_s) if faults.jitter_s else 0.0)
                    due += delay
                    stats.delayed_chunks[direction.value] += 1
                last_due = due = max(due, last_due)  # TCP never reorders
                await queue.put((due, chunk))
        finally:
            if not deliverer.done():
                deliverer.cancel()
                with contextlib.suppress(BaseException):
                    await deliverer

    async def _deliver(
        self, direction: Direction, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        stats = self.proxy.stats
        try:
            while True:
                item = await queue.get()
                if item is None:  # the sender half-closed: pass the EOF on, keep the other direction open
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    self._finished.add(direction)
                    if len(self._finished) == len(Direction):
                        self.closed.set()
                    return
                due, chunk = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.proxy.wait_link()
                faults = self.proxy.faults(direction)
                if faults.blackhole:
                    stats.bytes_blackholed[direction.value] += len(chunk)
                    self.poisoned = True
                    continue
                writer.write(chunk)
                await writer.drain()
                stats.bytes_forwarded[direction.value] += len(chunk)
                if faults.bandwidth_bps:
                    await asyncio.sleep(len(chunk) / faults.bandwidth_bps)
        except (ConnectionError, OSError):
            self.closed.set()


class FaultProxy:
    """A TCP proxy from ``listen_host:listen_port`` (0: any free port) to ``upstream_host:upstream_port``."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int = 0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if listen_host not in ("127.0.0.1", "::1", "localhost"):
            raise InvalidFaultSpec("the fault proxy listens on loopback only")
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.rng = random.Random(seed)
        self.connect_timeout_s = connect_timeout_s
        self.stats = ProxyStats()
        self.partitioned = False
        self.refusing = False
        self._link = asyncio.Event()
        self._link.set()
        self._faults = {Direction.UPSTREAM: LinkFaults(), Direction.DOWNSTREAM: LinkFaults()}
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._clock: FaultClock | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for connection in list(self._connections):
            connection.drop()
        if self._handlers:  # dropped connections end their handlers; cancel only those that do not
            await asyncio.wait(list(self._handlers), timeout=1.0)
        for task in list(self._handlers):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ faults

    def faults(self, direction: Direction) -> LinkFaults:
        return self._faults[direction]

    def set_faults(
        self, *, upstream: LinkFaults | None = None, downstream: LinkFaults | None = None, both: LinkFaults | None = None
    ) -> None:
        """Change faults now (open connections included). ``both`` sets the two directions alike."""
        if both is not None:
            upstream = downstream = both
        if upstream is not None:
            self._faults[Direction.UPSTREAM] = upstream
        if downstream is not None:
            self._faults[Direction.DOWNSTREAM] = downstream
        self._clock = FaultClock()

    def clear(self) -> None:
        """Back to a clean link (does not heal a partition)."""
        self.set_faults(both=LinkFaults())

    def partition(self, *, refuse: bool = False) -> None:
        """Cut the link: every connection, old and new, stalls in both directions. ``refuse``: new
        connections are also reset at once (a down service rather than an unreachable one)."""
        self.partitioned = True
        self.refusing = refuse
        self._link.clear()
        self._clock = FaultClock()

    def heal(self) -> None:
        self.partitioned = False
        self.refusing = False
        self._link.set()

    async def wait_link(self) -> None:
        """Return at once while the link is up; during a partition, wait for it to heal."""
        if not self._link.is_set():
            self.stats.stalls += 1
            await self._link.wait()

    def reset_all(self) -> int:
        """Send RST on every open connection; the number reset."""
        victims = list(self._connections)
        for connection in victims:
            connection.reset()
        return len(victims)

    def record(self, kind: str) -> FaultRecord:
        """A record of the faults since the last change, proven by what the counters show."""
        stats = self.stats
        evidence = stats.to_dict()
        proven = {
            "latency": sum(stats.delayed_chunks.values()) > 0,
            "blackhole": sum(stats.bytes_blackholed.values()) > 0,
            "partition": stats.stalls > 0 or stats.refused > 0,
            "drop": stats.drops > 0,
            "reset": stats.resets > 0,
            "bandwidth": sum(stats.bytes_forwarded.values()) > 0,
        }.get(kind, False)
        clock = self._clock or FaultClock()
        return clock.record(f"network_{kind}", proven, f"{kind} through proxy {self.address}", **evidence)

    # ------------------------------------------------------------------ plumbing

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if self.refusing:
            self.stats.refused += 1
            _abort_with_rst(writer)
            return
        await self.wait_link()
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.upstream), self.connect_timeout_s)
        except (OSError, asyncio.TimeoutError):
            self.stats.upstream_failures += 1
            _abort_with_rst(writer)
            return
        connection = _Connection(self, (reader, writer), upstream)
        self._connections.add(connection)
        self.stats.open_connections += 1
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            self.stats.open_connections -= 1


class BackgroundFaultProxy:
    """A :class:`FaultProxy` on its own thread and event loop, controlled from synchronous code.

    ``with BackgroundFaultProxy(host, port) as proxy: httpx.get(f"http://{proxy.address}/...")``.
    Every control method is thread-safe (it runs on the proxy's loop and waits for it).
    """

    def __init__(self, upstream_host: str, upstream_port: int, **options: Any) -> None:
        self._options = options
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self.proxy: FaultProxy | None = None

    def _call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        async def run() -> _T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def _do(self, action: Callable[[FaultProxy], _T]) -> _T:
        async def run() -> _T:
            assert self.proxy is not None
            return action(self.proxy)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def start(self) -> BackgroundFaultProxy:
        self._thread.start()
        self.proxy = FaultProxy(*self._upstream, **self._options)
        proxy = self.proxy
        self._call(proxy.start)
        return self

    def stop(self) -> None:
        if self.proxy is not None and self._thread.is_alive():
            proxy = self.proxy
            self._call(proxy.stop)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> BackgroundFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._do(lambda p: p.port)

    @property
    def address(self) -> str:
        return self._do(lambda p: p.address)

    @property
    def stats(self) -> ProxyStats:
        return self._do(lambda p: dataclasses.replace(
            p.stats, bytes_forwarded=dict(p.stats.bytes_forwarded), bytes_blackholed=dict(p.stats.bytes_blackholed),
            delayed_chunks=dict(p.stats.delayed_chunks),
        ))

    def set_faults(self, **kwargs: Any) -> None:
        self._do(lambda p: p.set_faults(**kwargs))

    def clear(self) -> None:
        self._do(lambda p: p.clear())

    def partition(self, *, refuse: bool = False) -> None:
        self._do(lambda p: p.partition(refuse=refuse))

    def heal(self) -> None:
        self._do(lambda p: p.heal())

    def reset_all(self) -> int:
        return self._do(lambda p: p.reset_all())

    def record(self, kind: str) -> FaultRecord:
        return self._do(lambda p: p.record(kind))
