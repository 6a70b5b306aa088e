"""The store's recovery path: what ``open`` does to a directory before the first append.

Load the index checkpoint if it is valid and scan only the frames after it (or scan every
segment); truncate a torn tail (a crash); quarantine corruption in the middle (never
truncate committed data silently); rebuild the index and the aggregate versions; record each
damaged range once as a ``corruption_detected`` event.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from lighthouse.errors import LighthouseError
from lighthouse.checkpoint import IndexCheckpoint
from lighthouse.framing import SEGMENT_HEADER, encode_segment_header
from lighthouse.health import HealthState
from lighthouse.event_ids import EventIds
from lighthouse.index import EventIndex
from lighthouse.models import Event, EventType
from lighthouse.recovery import Damage
from lighthouse.segments import WindowReader, scan_directory
from lighthouse.snapshots import fsync_directory
from lighthouse.store_checkpoints import CheckpointPath
from lighthouse.heap import release_free_memory
from lighthouse.store_state import Segment, write_all

__all__ = ["RecoveryPath"]

_DAMAGE_NAMESPACE = uuid.UUID("5b470d10-ad5f-4bb8-a000-000000000001")


class RecoveryPath(CheckpointPath):
    """Checkpoint, scan, truncate, quarantine, rebuild (a mixin of ``EventStore``)."""

    def _recover(self) -> None:
        """Continue from the index checkpoint (or scan everything), truncate a torn tail, quarantine
        corruption, rebuild the index."""
        checkpoint = self._usable_checkpoint()
        first_segment, resume_at, expected = 0, SEGMENT_HEADER, 1
        if checkpoint is not None:
            first_segment, resume_at, expected = self._restore_checkpoint(checkpoint)
        reports = scan_directory(self.path, first_segment=first_segment, resume_at=resume_at, expected=expected)
        for number, report in enumerate(reports, start=first_segment):
            for damage in report.scan.damage:
                self._handle_damage(report.path, damage)
            torn = report.scan.truncate_at
            if torn is not None and self._may_repair():
                self._truncate_torn_tail(report.path, torn)
            size = report.path.stat().st_size if torn is None or self._may_repair() else torn  # cut by the claim
            scan_start = checkpoint.segments[-1].start_seq if checkpoint and number == first_segment else expected
            segment = Segment(number, report.first_seq_from_name, report.path, size, scan_start)
            self._segments.append(segment)
            fd = os.open(report.path, os.O_RDONLY)
            self._reader.add_segment(number, fd)
            self._index_frames(segment, fd, report.scan.frames)
            if report.scan.frames:
                last_offset, last_header = report.scan.frames[-1]
                self._last_frame = (last_offset, last_header.crc)
            elif not (checkpoint and number == first_segment):
                self._last_frame = None
            expected = report.scan.next_sequence
        self._next_seq = expected
        self._versions.compact()
        if self._fence.deferred:  # what a later claim must find unchanged (see HealthPath._claim_deferred)
            self._unclaimed_view = self._directory_view()
        self._prepare_tail_segment()
        release_free_memory()  # recovery's transient decoding: ~100 bytes per recovered event kept resident otherwise
        self._report_damage()

    def _restore_checkpoint(self, checkpoint: IndexCheckpoint) -> tuple[int, int, int]:
        """Take the index and records from ``checkpoint``; returns where the scan continues."""
        ids = checkpoint.ids.sorted_arrays()
        self._index = EventIndex.restore(checkpoint.columns, EventIds(*ids))
        self._checkpoint_map = checkpoint.mapping  # the index's columns and ids are views of it: closed on close
        self._versions.base = checkpoint.versions
        self._voided = list(checkpoint.voided)
        self._damage = [Damage(**d) for d in checkpoint.damage]
        self._quarantined_bytes = checkpoint.quarantined_bytes
        self._last_recorded_at = checkpoint.last_recorded_at
        self._last_frame = checkpoint.last_frame
        self._checkpoint_rows = checkpoint.rows
        for number, covered in enumerate(checkpoint.segments[:-1]):
            path = self.path / covered.name
            self._segments.append(Segment(number, int(path.stem), path, covered.size, covered.start_seq))
            self._reader.add_segment(number, os.open(path, os.O_RDONLY))
        return len(checkpoint.segments) - 1, checkpoint.segments[-1].size, checkpoint.next_seq

    def _prepare_tail_segment(self) -> None:
        """Open the newest segment for writing (creating the first one), or enter read-only on a read-only fs."""
        if self._segments and self._segments[-1].size == 0 and self._may_repair():
            # An empty last segment (its header never reached the disk): rewrite the header.
            self._write_segment_header(self._segments[-1])
        if self._read_only_fs:
            self._health.raise_condition(
                "read_only_filesystem",
                HealthState.READ_ONLY,
                "the filesystem is read-only: serving reads; reopen after it is writable again",
            )
        elif not self._segments:
            _segment, self._write_fd = self._create_segment(self._next_seq)
        else:
            self._write_fd = os.open(self._segments[-1].path, os.O_WRONLY)

    def _report_damage(self) -> None:
        damaged = [d for d in self._damage if d.kind != "torn_tail"]
        if damaged:
            self._health.raise_condition(
                "corruption",
                HealthState.DEGRADED,
                f"{len(damaged)} damaged range(s) quarantined; lost sequences {self.lost_sequences()}",
            )

    def _index_frames(self, segment: Segment, fd: int, frames: list[tuple[int, Any]]) -> None:
        reader = WindowReader(fd, window=4 << 20)
        versions = self._versions.recent
        for offset, header in frames:
            if header.kind != 1:
                self._voided.append((header.first_seq, header.last_seq))
                continue
            _, events, record_offsets = reader.frame_with_offsets(offset, name=segment.path.name)
            if not events:
                continue
            self._index_events(
                header.first_seq, segment.number, offset, record_offsets, events[0][12], events, [e[13] for e in events]
            )
            for event in events:
                versions[event[2]] = (event[13], event[11])
            self._last_recorded_at = events[0][12]

    def _handle_damage(self, path: Path, damage: Damage) -> None:
        self._damage.append(damage)
        if damage.end > damage.start and self._may_repair():
            self._quarantine(path, damage)

    def _may_repair(self) -> bool:
        """Recovery changes files only as the directory's claimed writer: never on a read-only filesystem, and
        not while the claim is deferred (a restart on a full disk; another writer may still be appending)."""
        return not self._read_only_fs and not self._fence.deferred

    def _directory_view(self) -> tuple[list[str], int, int]:
        """The segment files and the newest one's size and modification time, as they are on disk (the time
        too: a writer appending into space it allocated ahead changes the file without changing its size)."""
        names = sorted(p.name for p in self.path.glob("*.seg"))
        if not names:
            return names, 0, 0
        stat = (self.path / names[-1]).stat()
        return names, stat.st_size, stat.st_mtime_ns

    def _quarantine(self, path: Path, damage: Damage) -> None:
        """Copy damaged bytes aside (once) with a description, so nothing is thrown away unseen."""
        folder = self.path / "quarantine"
        folder.mkdir(exist_ok=True)
        base = folder / f"{path.stem}@{damage.start}-{damage.end}.{damage.kind}"
        if not base.with_suffix(base.suffix + ".bad").exists():
            with open(path, "rb") as src:
                src.seek(damage.start)
                raw = src.read(damage.end - damage.start)
            tmp = base.with_suffix(base.suffix + ".tmp")
            with open(tmp, "wb") as out:
                out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, base.with_suffix(base.suffix + ".bad"))
            info = dict(damage.to_dict(), quarantined_at=time.time())
            base.with_suffix(base.suffix + ".json").write_text(json.dumps(info, indent=2))
            fsync_directory(folder)
        if damage.kind == "torn_tail":
            self._torn_bytes += damage.end - damage.start
        else:
            self._quarantined_bytes += damage.end - damage.start

    def _truncate_torn_tail(self, path: Path, at: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, at)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_segment_header(self, segment: Segment) -> None:
        header = encode_segment_header(segment.first_seq)
        fd = os.open(segment.path, os.O_WRONLY)
        try:
            write_all(fd, header, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        segment.size = len(header)

    def _is_store_record(self, event_id: str) -> bool:
        """An integrity record written under its pre-namespace id by this store (not forged by a client)."""
        event = self._find_by_id(event_id)
        return event is not None and event.source_agent == "lighthouse" and event.event_type == EventType.CORRUPTION_DETECTED

    async def _record_damage_events(self) -> None:
        """Each damaged range found on open becomes one ``corruption_detected`` event (once, ever)."""
        for damage in self._damage:
            if damage.kind == "torn_tail":
                continue
            key = f"{damage.segment}@{damage.start}-{damage.end}:{damage.kind}"
            legacy_id = str(uuid.uuid5(_DAMAGE_NAMESPACE, key))
            event_id = f"lh:corruption:{legacy_id}"  # the reserved "lh:" namespace: no client can pre-write it
            if self._find_by_id(event_id) is not None or self._is_store_record(legacy_id):
                continue
            event = Event(
                EventType.CORRUPTION_DETECTED,
                aggregate_id="store:integrity",
                event_id=event_id,
                source_agent="lighthouse",
                data=damage.to_dict(),
            )
            try:
                await self.append(event)
            except LighthouseError as exc:  # read-only or failing disk: health still reports the damage
                self._health.last_error = f"could not record corruption event: {exc}"
