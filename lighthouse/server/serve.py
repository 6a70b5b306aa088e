"""Serve an app with uvicorn, with a graceful shutdown.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets in-flight requests (appends included)
finish, closes WebSocket streams, and then the app's shutdown stops the bridge (saving its snapshot)
and closes the store, which writes and syncs every append still queued. The listening socket is
bound here, before uvicorn starts, so ``port=0`` works: the chosen port is written to ``ready_file``
(JSON, written atomically) once the app has started, which is how tests find the server.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import HTTP_PROTOCOLS, WS_PROTOCOLS
from uvicorn.importer import import_from_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from lighthouse.bridge.policy import Policy
from lighthouse.server.access_log import install_redaction
from lighthouse.server.app import create_app
from lighthouse.server.limits import guard_protocols, throttle_accept_errors
from lighthouse.server.settings import ServerSettings
from lighthouse.store import EventStore

__all__ = ["event_loop_factory", "run_server", "serve"]

_log = logging.getLogger("lighthouse.server")

#: Allocations (net of frees) of tracked objects between two young collections once the server runs (CPython's
#: default is 700). A batch append allocates several hundred (events, their dicts, the decoder's and the answer's
#: structs) that live until its answer is sent, so at 700 nearly every collection found the requests in flight
#: alive and promoted them, and the middle generation's collections walked them again: 7% of the server's CPU
#: under durable batches of 100 at 32 connections (0.69 s of 9.9 s; 0.02 s at 50,000). Whatever is in flight
#: when a collection runs is still walked once, so a young collection stays short (well under a millisecond).
#: The price: an object dropped inside a reference cycle waits longer for the collector, so what the server
#: drops steadily must not hold one (the alert window reuses its HdrHistograms for that reason).
YOUNG_COLLECTION_THRESHOLD = 50_000

#: How long the event loop's thread may hold the GIL while the store's I/O thread waits for it (CPython's
#: default is 5 ms). The I/O thread needs the GIL back after each of a group's system calls (the fencing
#: ``stat``, ``pwrite``, ``fdatasync``) and the loop releases it on its own only when it runs out of work,
#: so under load a group's write and sync waited for the loop to go idle instead of overlapping its work.
#: At 50 us (benchmarks/http_bench.py, 32 connections, fsync, this code against its parent interleaved, 3
#: rounds): batches of 100 +5-11% events/s (pooled p99 37.0-40.7 -> 32.8-38.2 ms), single appends +0-6% (p99
#: unchanged, 6-6.7 ms); the I/O thread's CPU 15% -> 20% of a core, the loop's per request unchanged (110-112 us).
GIL_SWITCH_INTERVAL_S = 50e-6


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every keep-alive response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (a faster selector loop and transports), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


async def serve(
    data_dir: str | os.PathLike[str],
    *,
    secret: bytes,
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: ServerSettings | None = None,
    policy: Policy | None = None,
    ready_file: str | os.PathLike[str] | None = None,
    log_level: str = "warning",
    http: str = "auto",
) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    settings = settings or ServerSettings()
    # Opened here, before uvicorn starts: a locked or unusable directory is one typed error (the CLI
    # prints one line and exits 2), not a lifespan traceback.
    store = await EventStore.open(data_dir, **settings.store_options)
    try:
        await _serve_store(store, data_dir, secret=secret, host=host, port=port, settings=settings, policy=policy,
                           ready_file=ready_file, log_level=log_level, http=http)
    finally:
        await store.close()


async def _serve_store(store: EventStore, data_dir: str | os.PathLike[str], *, secret: bytes, host: str, port: int,
                       settings: ServerSettings, policy: Policy | None, ready_file: str | os.PathLike[str] | None,
                       log_level: str, http: str) -> None:
    app = create_app(store, secret=secret, settings=settings, policy=policy)
    sock = _bind(host, port)
    throttle_accept_errors(asyncio.get_running_loop())
    http_class, ws_class, registry = _guarded_protocols(http, settings)
    app.state.ctx.connections = registry
    config = uvicorn.Config(
        app,
        http=http_class,
        ws=ws_class or "auto",
        log_level=log_level,
        log_config=None,  # records reach the root handlers, whose filter redacts credentials
        access_log=False,  # lighthouse.server.access_log writes one line per request instead
        server_header=False,
        # Nothing here sits behind a proxy, and nothing reads the client's address: X-Forwarded-For is not
        # trusted from anyone (uvicorn's default trusts it from 127.0.0.1), and no middleware runs for it.
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=int(max(1, settings.shutdown_grace_seconds)),
        timeout_keep_alive=max(1, int(settings.limits.keep_alive_timeout_seconds)),
        h11_max_incomplete_event_size=settings.limits.max_header_bytes + settings.limits.max_request_line_bytes,
        ws_max_size=settings.max_batch_body_bytes,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    thresholds, switch_interval = gc.get_threshold(), sys.getswitchinterval()
    tuned = bool(server.started)
    if tuned:
        # Everything alive now (modules, the store's index, the app) lives as long as the process:
        # moving it out of the collector's reach keeps full collections, and so request tails, short.
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        bound_host, bound_port = sock.getsockname()[:2]
        _log.warning("lighthouse serving %s on http://%s:%d", data_dir, bound_host, bound_port)
        if ready_file is not None:
            _write_ready(Path(ready_file), {"host": bound_host, "port": bound_port, "pid": os.getpid()})
    try:
        await task
    finally:
        # The process may go on without the server (serve() awaited in a test): as it was before.
        if tuned:
            gc.unfreeze()  # only what this froze: nothing when the server never started
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(switch_interval)
        sock.close()
    if server.started is False and task.exception() is None:
        raise RuntimeError("the server failed to start (see the log above)")


def _guarded_protocols(http: str, settings: ServerSettings) -> tuple[type, type | None, Any]:
    """uvicorn's protocol classes for ``http`` (h11, httptools, auto) wrapped in the connection limits."""
    http_class = import_from_string(HTTP_PROTOCOLS.get(http, http))  # "auto": httptools if installed, else h11
    ws_class = import_from_string(WS_PROTOCOLS["auto"])
    guarded_ws = ws_class if isinstance(ws_class, type) and issubclass(ws_class, WebSocketsSansIOProtocol) else None
    http_guarded, ws_guarded, registry = guard_protocols(http_class, guarded_ws, settings.limits)
    return http_guarded, ws_guarded, registry


def _already_handled(signum: int, frame: object) -> None:
    _log.info("signal %d: shutdown already done or under way", signum)


def run_server(
    data_dir: str | os.PathLike[str],
    *,
    secret: bytes,
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: ServerSettings | None = None,
    policy: Policy | None = None,
    ready_file: str | os.PathLike[str] | None = None,
    log_level: str = "warning",
    http: str = "auto",
) -> None:
    """Blocking entry point for the CLI; returns normally (exit status 0) after a graceful shutdown.

    uvicorn re-raises the signal that stopped it once it has shut down, so that the process dies of
    it; handlers installed here absorb that second delivery, because the shutdown was clean.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _already_handled)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_redaction(logging.getLogger())
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(data_dir, secret=secret, host=host, port=port, settings=settings, policy=policy,
                         ready_file=ready_file, log_level=log_level, http=http))
