"""Projection snapshots: atomic, checksummed, full or incremental.

A snapshot file is written to a temporary name, fsynced, renamed into place and the directory is
fsynced, so a crash leaves either the old set of snapshots or the new one, never a half file. An
incremental snapshot stores only the keys that changed since its base; loading walks the chain.
A damaged snapshot is skipped (and reported) in favour of the newest intact one.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import msgpack

from lighthouse.errors import InvalidSnapshot, SnapshotNotFound
from lighthouse.models import Snapshot

__all__ = ["SnapshotStore"]

_MAGIC = b"LHSNAP01"
_HEADER = struct.Struct("<8sIQ")  # magic, crc32c of payload, payload length
_MAX_CHAIN = 16


@dataclass(frozen=True, slots=True)
class _SnapshotFile:
    path: Path
    at_sequence: int


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotStore:
    """Snapshots under ``root/<name>/<at_sequence>.snap``; ``keep`` full chains are retained per name."""

    def __init__(self, root: Path, *, keep: int = 3) -> None:
        self.root = root
        self.keep = keep
        self.damaged: list[str] = []

    def _dir(self, name: str) -> Path:
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or name.startswith("."):
            raise InvalidSnapshot(f"snapshot name must be letters, digits, '-', '_' or '.', got {name!r}")
        return self.root / name

    def _files(self, name: str) -> list[_SnapshotFile]:
        folder = self._dir(name)
        if not folder.is_dir():
            return []
        out = []
        for path in folder.glob("*.snap"):
            try:
                out.append(_SnapshotFile(path, int(path.stem)))
            except ValueError:
                continue
        return sorted(out, key=lambda f: f.at_sequence)

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        if len(raw) < _HEADER.size:
            return None
        magic, crc, length = _HEADER.unpack_from(raw)
        payload = raw[_HEADER.size :]
        if magic != _MAGIC or length != len(payload) or crc32c.crc32c(payload) != crc:
            return None
        try:
            record = msgpack.unpackb(payload, strict_map_key=False)
        except (TypeError, ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            return None
        return record if isinstance(record, dict) else None

    def save(self, name: str, state: Any, at_sequence: int, *, incremental: bool = False) -> Snapshot:
        folder = self._dir(name)
        created_at = time.time()
        record: dict[str, Any] = {"name": name, "at_sequence": at_sequence, "created_at": created_at}
        chain = 0
        if incremental:
            if not isinstance(state, dict):
                raise InvalidSnapshot("an incremental snapshot needs a dict state")
            base = self.load(name) if self._files(name) else None
            if base is None or not isinstance(base.state, dict) or base.incremental_chain >= _MAX_CHAIN:
                incremental = False
            elif base.at_sequence >= at_sequence:
                raise InvalidSnapshot(f"base snapshot is at {base.at_sequence}, not before {at_sequence}")
            else:
                changed = {k: v for k, v in state.items() if k not in base.state or base.state[k] != v}
                removed = [k for k in base.state if k not in state]
                record.update(kind="delta", base=base.at_sequence, set=changed, delete=removed)
                chain = base.incremental_chain + 1
        if not incremental:
            record.update(kind="full", state=state)
        try:
            payload = msgpack.packb(record, use_bin_type=True)
            msgpack.unpackb(payload, strict_map_key=False)  # never write what could not be read back
        except (TypeError, ValueError, OverflowError, msgpack.ExtraData, msgpack.StackError) as exc:
            raise InvalidSnapshot(f"snapshot state is not serialisable: {exc}") from None
        self._make_durable_dir(folder)
        final = folder / f"{at_sequence:020d}.snap"
        tmp = folder / f".{at_sequence:020d}.snap.tmp"
        with open(tmp, "wb") as handle:
            handle.write(_HEADER.pack(_MAGIC, crc32c.crc32c(payload), len(payload)))
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        fsync_directory(folder)
        self._retain(name)
        return Snapshot(name, at_sequence, state, created_at, chain)

    def _make_durable_dir(self, folder: Path) -> None:
        """Create ``folder`` (and the snapshots root) with their names durable: a rename into a directory
        whose own entry a crash can lose is not durable either."""
        if folder.is_dir():
            return
        for directory in (self.root, folder):
            if not directory.is_dir():
                directory.mkdir(exist_ok=True)
                fsync_directory(directory.parent)

    def load(self, name: str, *, at_or_before: int | None = None) -> Snapshot:
        files = [f for f in self._files(name) if at_or_before is None or f.at_sequence <= at_or_before]
        for candidate in reversed(files):
            snapshot = self._materialise(name, candidate, files)
            if snapshot is not None:
                return snapshot
        raise SnapshotNotFound(f"no intact snapshot named {name!r}", name=name)

    def _materialise(self, name: str, target: _SnapshotFile, files: list[_SnapshotFile]) -> Snapshot | None:
        by_seq = {f.at_sequence: f for f in files}
        chain: list[dict[str, Any]] = []
        current: _SnapshotFile | None = target
        while current is not None:
            record = self._read(current.path)
            if record is None:
                self.damaged.append(str(current.path))
                return None
            chain.append(record)
            if record.get("kind") == "full":
                break
            current = by_seq.get(record.get("base", -1))
            if current is None:
                return None
        state = chain[-1]["state"]
        for delta in reversed(chain[:-1]):
            state = {k: v for k, v in state.items() if k not in set(delta["delete"])}
            state.update(delta["set"])
        head = chain[0]
        return Snapshot(name, head["at_sequence"], state, head["created_at"], len(chain) - 1)

    def _retain(self, name: str) -> None:
        """Keep the newest ``keep`` full snapshots and every delta that depends on them."""
        files = self._files(name)
        fulls = [f for f in files if (self._read(f.path) or {}).get("kind") == "full"]
        if len(fulls) <= self.keep:
            return
        cutoff = fulls[-self.keep].at_sequence
        for f in files:
            if f.at_sequence < cutoff:
                f.path.unlink(missing_ok=True)
        fsync_directory(self._dir(name))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())
