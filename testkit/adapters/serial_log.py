"""The shared half of the third-party adapters: one writer thread, checked input, retries by event id.

A store plugged in this way only says how to open, close, look events up by id, insert a batch
atomically with gapless sequences, and read a page in sequence order; validation, idempotent retry,
``read_all`` paging and typed errors are the same for every such store (and are what
:mod:`testkit.conformance` checks).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from testkit.adapters.base import AdapterError, StoredEvent, check_query_limit, read_pages
from testkit.adapters.validation import already_stored, decode_event, encode_event, stored_copy, validate_batch

__all__ = ["Row", "SerialLogAdapter"]

#: What the store keeps per event: its sequence and the :func:`encode_event` bytes.
Row = tuple[int, bytes]
_T = TypeVar("_T")
_PAGE = 2000


def _stored(row: Row) -> StoredEvent:
    sequence, payload = row
    return stored_copy(decode_event(payload), sequence)


class SerialLogAdapter:
    """Base of an adapter whose store calls are blocking: every call runs on one dedicated thread.

    ``expected_loss`` names the fault kinds under which the store's *documented* contract allows
    acknowledged writes to vanish (``{"power_cut"}`` for a store that does not sync on commit);
    chaos runs expect such losses to be caught, and every other loss is a finding.
    """

    name: str = "serial-log"
    expected_loss: frozenset[str] = frozenset()
    #: Exceptions of the store that mean "this id is taken" (the retry check lost a race, or a bug).
    _duplicate_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self._thread: ThreadPoolExecutor | None = None

    # -- what a store implements (all called on the adapter's thread) --------------------------------
    def _open_store(self) -> None:
        raise NotImplementedError

    def _close_store(self) -> None:
        raise NotImplementedError

    def _lookup(self, event_ids: Sequence[str]) -> dict[str, Row]:
        """The stored rows of those ids that are stored."""
        raise NotImplementedError

    def _insert(self, events: Sequence[Mapping[str, Any]], payloads: Sequence[bytes]) -> list[int]:
        """Store all or none, durably as configured; return the sequences (the next gapless numbers)."""
        raise NotImplementedError

    def _page(self, after: int, limit: int, event_types: Sequence[str] | None,
              aggregate_ids: Sequence[str] | None) -> list[Row]:
        """Up to ``limit`` rows with sequence > ``after``, ascending, matching the filters (None: any)."""
        raise NotImplementedError

    def _translate(self, exc: Exception) -> AdapterError | None:
        """The typed error for a store exception, or None to let it through (a bug worth a traceback)."""
        return None

    # -- the protocol ---------------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._thread is None:
            raise AdapterError("adapter is not open", code="store_closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except AdapterError:
            raise
        except MemoryError:
            raise AdapterError("out of memory", code="resource_exhausted", retryable=True) from None
        except self._duplicate_errors as exc:
            raise AdapterError(f"event id already stored: {exc}", code="duplicate_event") from exc
        except Exception as exc:
            typed = self._translate(exc)
            if typed is None:
                raise
            raise typed from exc

    async def open(self) -> None:
        if self._thread is not None:
            raise AdapterError("adapter is already open", code="store_open")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{type(self).__name__}")
        try:
            await self._call(self._open_store)
        except BaseException:
            self._thread.shutdown(wait=True)
            self._thread = None
            raise

    async def close(self) -> None:
        if self._thread is None:
            return
        try:
            await self._call(self._close_store)
        finally:
            self._thread.shutdown(wait=True)
            self._thread = None

    async def append(self, event: Mapping[str, Any]) -> StoredEvent:
        return (await self.append_batch([event]))[0]

    def _append_checked(self, checked: list[dict[str, Any]]) -> list[StoredEvent]:
        retry = already_stored(checked, self._lookup([e["event_id"] for e in checked]))
        if retry is not None:
            return retry
        payloads = [encode_event(e) for e in checked]
        sequences = self._insert(checked, payloads)
        return [stored_copy(e, seq) for e, seq in zip(checked, sequences, strict=True)]

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
        checked = validate_batch(events)
        return await self._call(self._append_checked, checked)

    async def read_all(self) -> AsyncIterator[StoredEvent]:
        async for event in read_pages(lambda after: self._call(self._page, after, _PAGE, None, None), _PAGE,
                                      lambda row: row[0], _stored):
            yield event

    async def query(
        self,
        *,
        event_types: Sequence[str] | None = None,
        aggregate_ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        check_query_limit(limit)
        types = [str(t) for t in event_types] if event_types else None
        aggregates = list(aggregate_ids) if aggregate_ids else None
        rows = await self._call(self._page, 0, limit, types, aggregates)
        return [_stored(row) for row in rows]
