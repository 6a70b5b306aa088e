"""PostgreSQL as a network-chaos target: its server on 127.0.0.1, clients through the kit's TCP fault proxy.

:func:`postgres_network_target` opens the PostgreSQL adapter (any of its configurations) with the
server also listening on a free loopback port, and yields a :class:`~testkit.chaos.network.NetworkTarget`:
the campaign puts :class:`~testkit.faults.network.BackgroundFaultProxy` in front of that port and
drives :class:`PostgresTcpClient` through it, then reads the log back over the server's Unix socket
(never through the proxy). The client is a careful one: each event carries its id, so after a
timeout, reset or dropped connection it reconnects and sends the same event again, and the server
returns the stored copy's sequence if the id is there: a retry is idempotent when the commit landed
but its answer was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from testkit.adapters.base import AdapterError, StoredEvent
from testkit.adapters.factory import AdapterSpec
from testkit.adapters.postgres import PostgresAdapter
from testkit.adapters.validation import encode_event, validate_batch
from testkit.checkers import History

__all__ = ["PostgresNetworkTarget", "PostgresTcpClient", "free_loopback_port", "postgres_network_target"]

LOOPBACK = "127.0.0.1"


def free_loopback_port() -> int:
    """A port nothing listens on right now (the kernel's pick for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresTcpClient:
    """Appends one event per call over TCP at ``address`` (``host:port``), retrying transport failures by id.

    ``timeout_s`` bounds each attempt: a watchdog shuts the socket down when an answer does not come
    (a lost response), which surfaces as a connection error and a retry. Records every write in ``history``.
Each attempt is one statement (``testkit_append``: look the id up, insert it if new, under the table lock).
    """

    address: str
    history: History
    timeout_s: float = 0.5
    give_up_after_s: float = 20.0
    attempts: int = 0
    transport_errors: int = 0
    errors: list[str] = field(default_factory=list)
    _conn: psycopg.Connection[Any] | None = None

    def __post_init__(self) -> None:
        self._connection()  # a client holds its connection before traffic (and faults) start

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            host, _, port = self.address.rpartition(":")
            self._conn = psycopg.connect(host=host, port=int(port), dbname="postgres", user="postgres",
                                         autocommit=True, connect_timeout=2)
        return self._conn

    def _abort(self, conn: psycopg.Connection[Any]) -> None:
        """Watchdog: wake a call blocked on an answer that is not coming (shuts the socket, not the fd)."""
        with contextlib.suppress(OSError, psycopg.Error), socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)

    def _send(self, event: Mapping[str, Any], payload: bytes) -> int:
        """One round trip: the server returns the stored sequence of this id, inserting it if it is new."""
        row = self._connection().execute(
            "SELECT testkit_append(%s, %s, %s, %s)",
            (event["event_id"], str(event["event_type"]), event["aggregate_id"], payload)).fetchone()
        assert row is not None
        return int(row[0])

    def _attempt(self, event: Mapping[str, Any], payload: bytes) -> int:
        conn = self._connection()
        watchdog = threading.Timer(self.timeout_s, self._abort, (conn,))
        watchdog.start()
        try:
            return self._send(event, payload)
        finally:
            watchdog.cancel()

    def append(self, event: dict[str, Any]) -> bool:
        """True once acknowledged; records the outcome either way."""
        op = self.history.invoke("append", [event])
        try:
            checked = validate_batch([event])[0]
        except AdapterError as exc:
            self.history.fail(op, exc.code)
            return False
        payload = encode_event(checked)
        deadline = time.monotonic() + self.give_up_after_s
        while time.monotonic() < deadline:
            self.attempts += 1
            try:
                sequence = self._attempt(checked, payload)
            except pg_errors.UniqueViolation as exc:  # only a client that does not retry by id meets this
                self.history.fail(op, f"duplicate_event: {exc}"[:200])
                return False
            except psycopg.OperationalError as exc:  # timeout, reset, drop, refused: the outcome is unknown
                self.transport_errors += 1
                self.errors.append(type(exc).__name__)
                self._drop_connection()
                time.sleep(0.02)
                continue
            except psycopg.Error as exc:
                self.history.fail(op, f"{type(exc).__name__}: {exc}"[:200])
                return False
            self.history.ok(op, [sequence])
            return True
        self.history.unknown(op, "gave up retrying")
        return False

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._drop_connection()


@dataclass
class PostgresNetworkTarget:
    """The open adapter whose server also listens on ``host:port``, as a :class:`~testkit.chaos.network.NetworkTarget`."""

    adapter: PostgresAdapter
    host: str
    port: int

    def client(self, address: str, history: History) -> PostgresTcpClient:
        return PostgresTcpClient(address, history)

    def read_back(self, aggregate_id: str) -> Sequence[StoredEvent]:
        """The aggregate's events read over the server's Unix socket, not through the proxy."""
        return asyncio.run(self.adapter.query(aggregate_ids=[aggregate_id], limit=1_000_000))


@contextlib.contextmanager
def postgres_network_target(spec: AdapterSpec, root: Path) -> Iterator[PostgresNetworkTarget]:
    """Open ``spec`` (a PostgreSQL configuration) with its server on a free loopback port.

    The cluster lives in a private directory, not under ``root``: pytest resets its base temporary
    directory to 0700 whenever a session starts, which would lock the server's own account out of a
    cluster there (PostgreSQL refuses to run as root). ``root`` receives the server's log on exit.
    """
    port = free_loopback_port()
    cluster = Path(tempfile.mkdtemp(prefix="testkit-pg-net-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        adapter = AdapterSpec(spec.name, spec.factory, {**spec.options, "listen_port": port}).create(str(cluster))
        if not isinstance(adapter, PostgresAdapter):
            raise AdapterError(f"{spec.factory} is not a PostgreSQL adapter", code="invalid_configuration")
        asyncio.run(adapter.open())
        try:
            yield PostgresNetworkTarget(adapter, LOOPBACK, port)
        finally:
            asyncio.run(adapter.close())
            with contextlib.suppress(OSError):
                shutil.copy(cluster / "postgres.log", root / "postgres.log")
    finally:
        shutil.rmtree(cluster, ignore_errors=True)
