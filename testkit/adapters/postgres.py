"""PostgreSQL (the ``pgserver`` wheel's server, driven with ``psycopg``) behind the kit's protocol.

The server runs on ``DATA_DIR/pgdata`` and dies with the thread that opened the adapter (see
:mod:`testkit.adapters.pgprocess`), so a SIGKILL of a chaos worker is a crash of the database too,
and a power cut of the filesystem holding ``DATA_DIR`` is a power cut of the database.

Events are rows of one table; a batch is one transaction that takes the next gapless sequences
under an exclusive table lock. PostgreSQL's documented contract is the expectation: with the
defaults a commit is acknowledged after its WAL is flushed, so nothing acknowledged is lost;
``synchronous_commit=off`` acknowledges before the flush ("the most recent transactions ... may be
lost" on "an operating system or database crash": the commit record may still sit in the server's
WAL buffers, in shared memory, which a SIGKILL of the server wipes) and ``fsync=off`` never flushes
(an OS crash "may result in unrecoverable data corruption"; a killed server's writes are already in
the kernel's page cache). So ``synchronous_commit=off`` expects losses under power cuts *and* SIGKILL,
``fsync=off`` under power cuts only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from testkit.adapters.base import AdapterError
from testkit.adapters.pgprocess import PgServer
from testkit.adapters.serial_log import Row, SerialLogAdapter
from testkit.chaos.capabilities import Capabilities, Footprint, declaring

__all__ = ["PostgresAdapter", "insert_rows", "lookup_rows", "page_rows", "postgres_default", "postgres_fsync_off",
           "postgres_sync_off"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT PRIMARY KEY,
    event_id TEXT UNIQUE NOT NULL,
    event_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events(event_type, seq);
CREATE INDEX IF NOT EXISTS events_by_aggregate ON events(aggregate_id, seq);
"""
#: One round trip per append for clients over the network (``testkit.adapters.postgres_network``): the
#: lookup by id and the gapless insert in one statement, so a lost answer almost always follows a commit.
_APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION testkit_append(p_id text, p_type text, p_aggregate text, p_payload bytea)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE stored bigint;
BEGIN
    LOCK TABLE events IN EXCLUSIVE MODE;
    SELECT seq INTO stored FROM events WHERE event_id = p_id;
    IF stored IS NULL THEN
        INSERT INTO events(seq, event_id, event_type, aggregate_id, payload)
        SELECT coalesce(max(seq), 0) + 1, p_id, p_type, p_aggregate, p_payload FROM events
        RETURNING seq INTO stored;
    END IF;
    RETURN stored;
END $$;
"""
_SWITCHES = ("on", "off")


def lookup_rows(conn: psycopg.Connection[Any], event_ids: Sequence[str]) -> dict[str, Row]:
    """The stored (sequence, payload) of those ids that are stored."""
    rows = conn.execute("SELECT event_id, seq, payload FROM events WHERE event_id = ANY(%s)",
                        (list(event_ids),)).fetchall()
    return {event_id: (int(seq), bytes(payload)) for event_id, seq, payload in rows}


def insert_rows(conn: psycopg.Connection[Any], events: Sequence[Mapping[str, Any]],
                payloads: Sequence[bytes]) -> list[int]:
    """One transaction: the next gapless sequences under an exclusive table lock, all rows or none."""
    with conn.transaction():
        conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        last = int(row[0]) if row else 0
        sequences = list(range(last + 1, last + 1 + len(events)))
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO events(seq, event_id, event_type, aggregate_id, payload) VALUES (%s,%s,%s,%s,%s)",
                [(seq, e["event_id"], str(e["event_type"]), e["aggregate_id"], payload)
                 for seq, e, payload in zip(sequences, events, payloads, strict=True)],
            )
    return sequences


def page_rows(conn: psycopg.Connection[Any], after: int, limit: int, event_types: Sequence[str] | None,
              aggregate_ids: Sequence[str] | None) -> list[Row]:
    """Up to ``limit`` rows with sequence > ``after``, ascending, matching the filters (None: any)."""
    where, params = ["seq > %s"], [after]
    if event_types:
        where.append("event_type = ANY(%s)")
        params.append(list(event_types))  # type: ignore[arg-type]
    if aggregate_ids:
        where.append("aggregate_id = ANY(%s)")
        params.append(list(aggregate_ids))  # type: ignore[arg-type]
    rows = conn.execute(
        f"SELECT seq, payload FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT %s",
        (*params, limit),
    ).fetchall()
    return [(int(seq), bytes(payload)) for seq, payload in rows]


class PostgresAdapter(SerialLogAdapter):
    """``synchronous_commit`` and ``fsync`` are the server settings of the same names (``"on"``/``"off"``).

    ``listen_port``: also accept TCP connections on 127.0.0.1 at that port (the network-chaos target,
    :mod:`testkit.adapters.postgres_network`); by default the server listens on its Unix socket only.
    """

    #: The server writes its pid file and WAL to open, so it cannot start on a read-only or full filesystem.
    #: It needs no new file for a few dozen writes (WAL segments are preallocated and recycled by rename, a table
    #: grows in place up to 1 GiB), so without inodes it must keep working, not refuse (``creates_files=False``;
    #: measured: 40 writes went through). Networked: clients over TCP through the proxy.
    #: Data checksums are off unless initdb ran with ``--data-checksums`` (off by default up to PostgreSQL 17):
    #: a damaged heap page can be served as it is, so it is known unsafe under corruption. Its files are written
    #: by the server (its own process, another account), which the worker's LD_PRELOAD shim never reaches.
    #: A fresh cluster (catalogs, WAL) takes 27 MiB in about 1,000 files before the first event. Its WAL is
    #: written into preallocated, recycled segments: ``fsync=off`` loses overwrites the POSIX crash model keeps
    #: (seed 20261202: 5 proven crashes, 0 caught; real power cuts: 10 of 10 caught).
    testkit_capabilities = Capabilities(opens_read_only=False, creates_files=False,
                                        network_target="testkit.adapters.postgres_network:postgres_network_target",
                                        expected_loss=frozenset({"corruption"}), io_preload=False,
                                        footprint=Footprint(mib=32, files=1100), unsynced_overwrites=True)

    _duplicate_errors = (pg_errors.UniqueViolation,)

    def __init__(self, data_dir: str | os.PathLike[str], *, synchronous_commit: str = "on",
                 fsync: str = "on", listen_port: int | None = None) -> None:
        super().__init__(data_dir)
        settings = {"synchronous_commit": str(synchronous_commit).lower(), "fsync": str(fsync).lower()}
        for key, value in settings.items():
            if value not in _SWITCHES:
                raise ValueError(f"{key} must be 'on' or 'off', got {value!r}")
        changed = [f"{k}={v}" for k, v in settings.items() if v != "on"]
        self.name = f"postgres[{','.join(changed)}]" if changed else "postgres"
        unflushed = frozenset({"power_cut", "posix_crash"}) if changed else frozenset()
        async_commit = frozenset({"sigkill"}) if settings["synchronous_commit"] == "off" else frozenset()
        self.expected_loss = unflushed | async_commit
        network = {"listen_addresses": "127.0.0.1", "port": str(int(listen_port)), "max_connections": "40"} \
            if listen_port is not None else {}
        self.listen_port = listen_port
        self._server = PgServer(self.data_dir / "pgdata", self.data_dir / "postgres.log", {**settings, **network})
        self._conn: psycopg.Connection[Any] | None = None

    def _open_store(self) -> None:
        # On the adapter's own thread: the server's life is bound to this thread (--pdeathsig).
        self._server.start()
        try:
            self._conn = self._connect()
            with self._conn.transaction():
                self._conn.execute(_SCHEMA)
                if self.listen_port is not None:
                    self._conn.execute(_APPEND_FUNCTION)
        except BaseException:
            self._server.stop()
            raise

    def _session(self) -> psycopg.Connection[Any]:
        return psycopg.connect(host=self._server.socket_dir, port=self._server.port, dbname="postgres",
                               user="postgres", autocommit=True, connect_timeout=10)

    def _connect(self) -> psycopg.Connection[Any]:
        """Connect once the server accepts connections (after its crash recovery, however long that takes)."""
        deadline = self._server.ready_deadline()
        pause = 0.005
        while True:
            try:
                return self._session()
            except psycopg.OperationalError as exc:
                code = self._server.exited()
                if code is not None or time.monotonic() > deadline:
                    raise self._server.start_failure(str(exc)) from exc
            time.sleep(pause)  # the server is still starting: poll its socket
            pause = min(pause * 2, 0.1)

    def _close_store(self) -> None:
        try:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()
        finally:
            self._server.stop()

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise AdapterError("adapter is not open", code="store_closed")
        if self._conn.closed:  # the server crashed (a PANIC restarts every session) or died
            self._conn = self._reconnect()
        return self._conn

    def _reconnect(self) -> psycopg.Connection[Any]:
        """A new session, as a client does after its connection broke. A postmaster that exited (it could not
        recover by itself) is started again, as its service manager would; until it accepts connections again
        every call fails with a retryable ``store_unavailable`` and the next call tries once more."""
        if not self._server.running():  # exited by itself, or a restart that failed (full or read-only disk)
            self._server.stop()  # reaps what is left of it
            self._server.start()
        try:
            return self._session()
        except psycopg.OperationalError as exc:
            raise AdapterError(f"the connection to postgres broke and it does not accept a new one yet: {exc}",
                               code="store_unavailable", retryable=True) from exc

    def _lookup(self, event_ids: Sequence[str]) -> dict[str, Row]:
        return lookup_rows(self._db(), event_ids)

    def _insert(self, events: Sequence[Mapping[str, Any]], payloads: Sequence[bytes]) -> list[int]:
        return insert_rows(self._db(), events, payloads)

    def _page(self, after: int, limit: int, event_types: Sequence[str] | None,
              aggregate_ids: Sequence[str] | None) -> list[Row]:
        return page_rows(self._db(), after, limit, event_types, aggregate_ids)

    def _translate(self, exc: Exception) -> AdapterError | None:
        if isinstance(exc, pg_errors.DataCorrupted | pg_errors.IndexCorrupted):
            return AdapterError(str(exc), code="store_corrupted")
        if isinstance(exc, pg_errors.DiskFull | pg_errors.OutOfMemory):
            return AdapterError(str(exc), code="resource_exhausted", retryable=True)
        if isinstance(exc, psycopg.OperationalError | pg_errors.InternalError_):
            return AdapterError(str(exc), code="write_failed", retryable=True)
        if isinstance(exc, psycopg.DataError):
            return AdapterError(str(exc), code="invalid_event")
        if isinstance(exc, psycopg.Error):
            return AdapterError(str(exc), code="write_failed")
        return None


@declaring(PostgresAdapter.testkit_capabilities)
def postgres_default(data_dir: str | os.PathLike[str], **options: Any) -> PostgresAdapter:
    """PostgreSQL as shipped: a commit returns after its WAL is flushed."""
    return PostgresAdapter(data_dir, **options)


@declaring(PostgresAdapter.testkit_capabilities)
def postgres_sync_off(data_dir: str | os.PathLike[str], **options: Any) -> PostgresAdapter:
    """``synchronous_commit=off``: commits acknowledged before the WAL flush (up to ~3 x wal_writer_delay)."""
    return PostgresAdapter(data_dir, **{"synchronous_commit": "off", **options})


@declaring(PostgresAdapter.testkit_capabilities)
def postgres_fsync_off(data_dir: str | os.PathLike[str], **options: Any) -> PostgresAdapter:
    """``fsync=off``: the server never flushes; an OS crash may lose or corrupt anything."""
    return PostgresAdapter(data_dir, **{"fsync": "off", **options})
