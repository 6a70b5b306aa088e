"""The ``eventsourcing`` package's SQLite application recorder behind the kit's protocol.

Each event is recorded as version 1 of an originator named by its ``event_id`` (so a reused id is
the recorder's own ``IntegrityError``), its topic is the event type, and its notification id (the
application sequence the recorder assigns in the insert's transaction) is the sequence. The recorder
opens SQLite in WAL mode at the default ``synchronous=FULL``: every committed insert is durable, so
nothing acknowledged may be lost under any fault.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from testkit.adapters.base import AdapterError
from testkit.adapters.serial_log import Row, SerialLogAdapter
from testkit.adapters.validation import decode_event
from testkit.chaos.capabilities import Capabilities, declaring

__all__ = ["EventsourcingSqliteAdapter", "eventsourcing_sqlite"]

_VERSION = 1
_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


class EventsourcingSqliteAdapter(SerialLogAdapter):
    """Events in ``events.db`` through ``SQLiteApplicationRecorder.insert_events`` and ``select_notifications``."""

    #: SQLite in WAL mode must create its -shm file to open (no read-only or full filesystem); it keeps no
    #: page checksums, so damaged bytes can be served as an event nobody wrote (known unsafe under corruption).
    testkit_capabilities = Capabilities(io_target="events.db", opens_read_only=False,
                                        expected_loss=frozenset({"corruption"}))

    name = "eventsourcing-sqlite"
    _duplicate_errors = (IntegrityError,)

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        super().__init__(data_dir)
        self._datastore: SQLiteDatastore | None = None
        self._recorder: SQLiteApplicationRecorder | None = None
        self.synchronous = "FULL"  # SQLite's default, which the recorder keeps; checked again on open

    def _open_store(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        datastore = SQLiteDatastore(str(self.data_dir / "events.db"), originator_id_type="text", pool_size=1)
        recorder = SQLiteApplicationRecorder(datastore)
        recorder.create_table()
        self._datastore, self._recorder = datastore, recorder
        with datastore.transaction(commit=False) as cursor:  # the contract follows what the recorder really set
            cursor.execute("PRAGMA synchronous")
            self.synchronous = _SYNCHRONOUS_NAMES.get(int(cursor.fetchone()[0]), "unknown")
        durable = self.synchronous in ("FULL", "EXTRA")
        self.expected_loss = frozenset() if durable else frozenset({"power_cut", "posix_crash"})

    def _close_store(self) -> None:
        if self._datastore is not None:
            datastore, self._datastore, self._recorder = self._datastore, None, None
            datastore.close()

    def _store(self) -> SQLiteApplicationRecorder:
        if self._recorder is None:
            raise AdapterError("adapter is not open", code="store_closed")
        return self._recorder

    def _lookup(self, event_ids: Sequence[str]) -> dict[str, Row]:
        recorder = self._store()
        found = {}
        for event_id in event_ids:
            for stored in recorder.select_events(event_id, lte=_VERSION, limit=1):
                found[event_id] = self._sequence_of(event_id, stored.state)
        return found

    def _sequence_of(self, event_id: str, state: bytes) -> Row:
        """The notification id of a stored event (the recorder's aggregate read does not return it)."""
        assert self._datastore is not None
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT rowid FROM stored_events WHERE originator_id=? AND originator_version=?",
                           (event_id, _VERSION))
            return int(cursor.fetchone()[0]), bytes(state)

    def _insert(self, events: Sequence[Mapping[str, Any]], payloads: Sequence[bytes]) -> list[int]:
        records = [StoredEvent(originator_id=event["event_id"], originator_version=_VERSION,
                               topic=str(event["event_type"]), state=payload)
                   for event, payload in zip(events, payloads, strict=True)]
        sequences = self._store().insert_events(records)
        if sequences is None or len(sequences) != len(records):
            raise AdapterError(f"the recorder returned {sequences!r} for {len(records)} events", code="write_failed")
        return [int(s) for s in sequences]

    def _page(self, after: int, limit: int, event_types: Sequence[str] | None,
              aggregate_ids: Sequence[str] | None) -> list[Row]:
        rows: list[Row] = []
        start = after
        while len(rows) < limit:
            notes = self._store().select_notifications(start, limit, topics=event_types or (),
                                                        inclusive_of_start=False)
            for note in notes:
                if aggregate_ids and decode_event(note.state)["aggregate_id"] not in aggregate_ids:
                    continue
                rows.append((note.id, bytes(note.state)))
                if len(rows) >= limit:
                    break
            if len(notes) < limit:
                break
            start = notes[-1].id
        return rows

    def _translate(self, exc: Exception) -> AdapterError | None:
        if isinstance(exc, OperationalError):
            return AdapterError(str(exc), code="write_failed", retryable=True)
        if isinstance(exc, PersistenceError):
            return AdapterError(str(exc), code="store_corrupted")
        # The recorder lets sqlite3's own errors through where it opens and reads (a full, read-only or damaged file).
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return AdapterError(str(exc), code="store_corrupted")
        if isinstance(exc, sqlite3.OperationalError):
            return AdapterError(str(exc), code="write_failed", retryable=True)
        return None


@declaring(EventsourcingSqliteAdapter.testkit_capabilities)
def eventsourcing_sqlite(data_dir: str | os.PathLike[str], **options: Any) -> EventsourcingSqliteAdapter:
    """The recorder as the package ships it (WAL, synchronous=FULL)."""
    return EventsourcingSqliteAdapter(data_dir, **options)
