"""The store's health path: entering read-only, probing back to healthy, disk space, and reports.

A write error or low disk space moves the store to read-only (appends refused, reads continue);
a probe retries a small durable write and returns the store to healthy by itself once one works.
``health()`` and ``stats()`` report what the other paths recorded.
"""

from __future__ import annotations

import asyncio
import errno
import os
from dataclasses import dataclass
from typing import Any

from lighthouse.errors import LighthouseError, StoreCorrupted
from lighthouse.health import HealthState, StoreHealth
from lighthouse.store_state import StoreState, merge_ranges

__all__ = ["HealthPath", "StoreStats"]

_PROBE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class StoreStats:
    events: int
    head_sequence: int
    segments: int
    bytes_on_disk: int
    index_bytes: int
    appends: int
    batches: int
    groups: int
    fsyncs: int
    write_seconds: float
    subscribers: int
    quarantined_bytes: int
    torn_tail_bytes_truncated: int
    lost_sequences: list[tuple[int, int]]
    open_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class HealthPath(StoreState):
    """Degradation and reporting (a mixin of ``EventStore``)."""

    def _enter_read_only(self, exc: OSError, doing: str) -> None:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        reason = f"{name} while {doing}: {exc.strerror or exc}"
        self._health.last_error = reason
        self._health.raise_condition("write_error", HealthState.READ_ONLY, reason)
        self._start_probe()

    def _start_probe(self) -> None:
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe_loop(), name="lighthouse-probe")

    async def _probe_loop(self) -> None:
        """While read-only, retry a small durable write; return to healthy when one succeeds."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self.probe_interval)
            if self._closing:
                return
            ok = await loop.run_in_executor(self._io, self._probe_write)
            if ok:
                self._health.clear_condition("write_error")
                if self.min_free_bytes:
                    self._check_free_space()
                if not self._health.has("low_disk_space"):
                    if self._wake is not None:
                        self._wake.set()  # record a pending void range now, not at the next append
                    return

    def _read_failed_checksum(self, error: StoreCorrupted) -> None:
        """Bytes damaged while open: the read was refused; health says where (degraded, reads elsewhere go on)."""
        self._read_corruptions += 1
        self._health.raise_condition(
            "read_checksum", HealthState.DEGRADED, f"{self._read_corruptions} read(s) refused, latest: {error}")

    def _fence_lost(self) -> bool:
        try:
            self._fence.check()
        except LighthouseError:
            return True
        return False

    def _claim_deferred(self) -> bool:
        """Opened on a full disk: claim the directory before anything is written, then make sure nobody wrote
        while it was unclaimed (else this store's view is stale: it fails and must be reopened), then do the
        repair recovery left undone (an empty tail's header; the probe itself cuts a torn tail)."""
        try:
            self._fence.claim()
        except OSError:
            return False
        if self._unclaimed_view is not None and self._directory_view() != self._unclaimed_view:
            self._health.raise_condition(
                "directory_changed_unclaimed", HealthState.FAILED,
                "another writer changed the directory while this store could not claim it: reopen the store")
            return False
        self._unclaimed_view = None
        if self._segments and self._segments[-1].size == 0:
            try:
                self._write_segment_header(self._segments[-1])
            except OSError:
                return False
        return True

    def _probe_write(self) -> bool:
        fd = self._write_fd
        if self._health.state is HealthState.FAILED:
            return False  # fenced, or a stale view of a directory another writer changed: only a reopen helps
        if self._fence.deferred and not self._claim_deferred():
            return False
        if fd is None or self._fence_lost():  # a probe truncates: never on another writer's file
            return False
        size = self._segments[-1].size
        try:
            self._allocated_end = size  # the probe's cuts drop any space allocated ahead
            if self._tail_dirty:
                os.ftruncate(fd, size)
                os.fdatasync(fd)
                self._tail_dirty = False
            if os.pwrite(fd, bytes(_PROBE_BYTES), size) != _PROBE_BYTES:
                raise OSError(errno.ENOSPC, "probe write was short")
            os.fdatasync(fd)
            os.ftruncate(fd, size)
            os.fdatasync(fd)
            return True
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                self._tail_dirty = True
            return False

    def _check_free_space(self) -> None:
        stat = os.statvfs(self.path)
        free = stat.f_bavail * stat.f_frsize
        if self.min_free_bytes and free < self.min_free_bytes:
            if not self._health.has("low_disk_space"):
                self._health.raise_condition(
                    "low_disk_space", HealthState.READ_ONLY, f"{free} bytes free, minimum {self.min_free_bytes}"
                )
                self._start_probe()
        elif self._health.has("low_disk_space") and free >= self.min_free_bytes * 1.25:
            self._health.clear_condition("low_disk_space")
        if self.warn_free_bytes and free < self.warn_free_bytes:
            self._health.raise_condition(
                "disk_space_warning", HealthState.DEGRADED, f"{free} bytes free, warning at {self.warn_free_bytes}"
            )
        else:
            self._health.clear_condition("disk_space_warning")

    # ------------------------------------------------------------------ reports

    def lost_sequences(self) -> list[tuple[int, int]]:
        out = []
        for damage in self._damage:
            if damage.lost_first is not None and damage.lost_last is not None and damage.lost_last >= damage.lost_first:
                out.append((damage.lost_first, damage.lost_last))
        return out

    def health(self) -> StoreHealth:
        details = {
            "head_sequence": self.head_sequence,
            "open": self._opened and not self._closed,
            "damaged_snapshots": list(self._snapshots.damaged),
            "checkpoint": dict(self._checkpoint_status),
        }
        return StoreHealth(
            state=self._health.state,
            reasons=self._health.conditions(),
            durability=self.durability,
            durable_acks=self.durability == "fsync",
            transitions=self._health.transition_count,
            recent_transitions=self._health.recent(),
            damage=[d.to_dict() for d in self._damage],
            lost_sequences=self.lost_sequences(),
            voided_sequences=merge_ranges(
                self._voided + ([(self._void[0], self._void[0] + self._void[1] - 1)] if self._void else [])
            ),
            last_error=self._health.last_error,
            details=details,
        )

    def stats(self) -> StoreStats:
        return StoreStats(
            events=len(self._index),
            head_sequence=self.head_sequence,
            segments=len(self._segments),
            bytes_on_disk=sum(s.size for s in self._segments),
            index_bytes=self._index.nbytes() + self._versions.nbytes(),
            appends=self._counters["appends"],
            batches=self._counters["batches"],
            groups=self._counters["groups"],
            fsyncs=self._counters["fsyncs"],
            write_seconds=self._write_ns / 1e9,
            subscribers=len(self._subscribers),
            quarantined_bytes=self._quarantined_bytes,
            torn_tail_bytes_truncated=self._torn_bytes,
            lost_sequences=self.lost_sequences(),
            open_seconds=self._open_seconds,
        )
