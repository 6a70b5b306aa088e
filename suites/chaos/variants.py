"""Test-only subclasses of the lighthouse store: deliberately broken variants (expected-unsafe configurations).

The broken variants exist to prove the chaos suite can fail: each breaks one durability rule the
way real stores have broken it, through the hooks the store keeps for this purpose, and a
sensitivity test passes only when the checker reports the damage. (The crash-point store, which is
not broken, ships with the kit: :mod:`testkit.adapters.lighthouse_crash_points`.)

They are reached from child processes through their import path (``AdapterSpec`` options carry the
class), so this module must stay importable on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from lighthouse import EventStore
from lighthouse.segments import scan_directory

__all__ = [
    "BROKEN_VARIANTS",
    "AckBeforeFsync",
    "SkipDirectoryFsync",
    "TruncateAtFirstBadChecksum",
    "TrustUnverifiedFrames",
]


class AckBeforeFsync(EventStore):
    """Acknowledges a group once it is written and fsyncs it only when the next group comes.

    The classic lagging-sync bug: under steady load it looks durable (everything is synced a moment
    later), but a power cut loses the last acknowledged group.
    """

    def _sync_after_write(self, fd: int) -> None:
        self._unsynced = True

    def _write_durably(self, offset: int, data: bytes) -> None:
        if self._unsynced and self._write_fd is not None:
            self._sync_file(self._write_fd)  # the previous group, acknowledged long ago
            self._unsynced = False
        super()._write_durably(offset, data)


class SkipDirectoryFsync(EventStore):
    """Never fsyncs the directory after creating a segment: the new file's name may not be durable.

    On ext4 the file's own fsync happens to commit its directory entry too, so a real power cut
    rarely shows it; the POSIX persistence model (a crash state built from a syscall trace) does.
    """

    def _sync_directory(self) -> None:
        return None


class TruncateAtFirstBadChecksum(EventStore):
    """Naive recovery: cut the log at the first bad frame, wherever it is, and drop what follows.

    Right for a torn tail, wrong for a flipped bit in the middle: committed events after the damage
    are deleted and nothing reports it (the CORDS/PAR finding).
    """

    def _recover(self) -> None:
        reports = scan_directory(self.path)
        for number, report in enumerate(reports):
            damage = [d for d in report.scan.damage if d.kind != "torn_tail"]
            if not damage:
                continue
            cut = min(d.start for d in damage)
            fd = os.open(report.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, cut)
                os.fsync(fd)
            finally:
                os.close(fd)
            for later in reports[number + 1 :]:
                later.path.unlink()
            self._sync_directory()
            break
        super()._recover()


class TrustUnverifiedFrames(EventStore):
    """Does not verify checksums: a frame that still parses is served whatever its bytes say.

    Modelled by re-stamping every frame's CRC before the store's own recovery runs, which is what
    skipping verification amounts to: a flipped bit in an event is then served as if written so.
    """

    def _recover(self) -> None:
        for path in sorted(Path(self.path).glob("*.seg")):
            _restamp_crcs(path)
        super()._recover()


def _restamp_crcs(path: Path) -> None:
    import struct

    import crc32c

    from lighthouse.framing import FRAME_HEADER, FRAME_MAGIC, MAX_FRAME_PAYLOAD, SEGMENT_HEADER

    data = bytearray(path.read_bytes())
    offset = SEGMENT_HEADER
    changed = False
    while offset + FRAME_HEADER <= len(data):
        magic, length, crc = struct.unpack_from("<4sII", data, offset)
        end = offset + FRAME_HEADER + length
        if magic != FRAME_MAGIC or length > MAX_FRAME_PAYLOAD or end > len(data):
            break
        real = crc32c.crc32c(bytes(data[offset + FRAME_HEADER : end]), crc32c.crc32c(bytes(data[offset + 12 : offset + FRAME_HEADER])))
        if real != crc:
            struct.pack_into("<I", data, offset + 8, real)
            changed = True
        offset = end
    if changed:
        path.write_bytes(bytes(data))


BROKEN_VARIANTS: tuple[type[EventStore], ...] = (
    AckBeforeFsync,
    SkipDirectoryFsync,
    TruncateAtFirstBadChecksum,
    TrustUnverifiedFrames,
)
