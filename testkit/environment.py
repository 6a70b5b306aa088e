"""A machine fingerprint, so that performance figures are only compared between like machines.

Baselines are keyed by :attr:`MachineFingerprint.key`: a hash of the parts that change what a benchmark
measures (CPU model and count, memory size, kernel series, Python, file system). Host names and exact
memory byte counts are kept for the record but left out of the key, because CI gives every identical VM
a new host name and the kernel reserves a slightly different amount of memory on each boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import psutil

__all__ = ["KEY_FIELDS", "FingerprintError", "MachineFingerprint", "machine_fingerprint"]

#: The fields whose values go into :attr:`MachineFingerprint.key`.
KEY_FIELDS: tuple[str, ...] = (
    "cpu_model",
    "logical_cores",
    "physical_cores",
    "memory_gib",
    "architecture",
    "os",
    "kernel_series",
    "python_implementation",
    "python_series",
    "filesystem",
)

_GIB = 1024**3


class FingerprintError(ValueError):
    """A fingerprint document is missing fields or has fields of the wrong type."""


@dataclass(frozen=True, slots=True)
class MachineFingerprint:
    """What a machine is, as far as performance is concerned."""

    cpu_model: str
    logical_cores: int
    physical_cores: int | None
    memory_bytes: int
    architecture: str
    os: str
    kernel: str
    python_implementation: str
    python_version: str
    filesystem: str
    filesystem_path: str
    hostname: str

    @property
    def memory_gib(self) -> int:
        """Memory rounded to whole GiB: the exact total varies by a few MB between boots of one VM type."""
        return round(self.memory_bytes / _GIB)

    @property
    def kernel_series(self) -> str:
        """Kernel major.minor: patch releases rarely move a benchmark, a new series can."""
        return ".".join(self.kernel.split("-")[0].split(".")[:2])

    @property
    def python_series(self) -> str:
        return ".".join(self.python_version.split(".")[:2])

    def key_parts(self) -> dict[str, Any]:
        """The values that go into :attr:`key`."""
        return {name: getattr(self, name) for name in KEY_FIELDS}

    @property
    def key(self) -> str:
        """A short stable hash of :meth:`key_parts`; equal keys mean comparable machines."""
        canonical = json.dumps(self.key_parts(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def differences(self, other: MachineFingerprint) -> dict[str, tuple[Any, Any]]:
        """The key parts that differ, as ``{part: (self_value, other_value)}``."""
        mine, theirs = self.key_parts(), other.key_parts()
        return {name: (mine[name], theirs[name]) for name in KEY_FIELDS if mine[name] != theirs[name]}

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["key"] = self.key
        return document

    @classmethod
    def from_dict(cls, document: Any) -> MachineFingerprint:
        if not isinstance(document, Mapping):
            raise FingerprintError(f"a fingerprint must be an object, got {type(document).__name__}")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in document:
                raise FingerprintError(f"fingerprint is missing {spec.name!r}")
            values[spec.name] = document[spec.name]
        for name in ("logical_cores", "memory_bytes"):
            if not isinstance(values[name], int) or isinstance(values[name], bool):
                raise FingerprintError(f"fingerprint {name!r} must be an integer, got {values[name]!r}")
        physical = values["physical_cores"]
        if physical is not None and (not isinstance(physical, int) or isinstance(physical, bool)):
            raise FingerprintError(f"fingerprint 'physical_cores' must be an integer or null, got {physical!r}")
        for spec in fields(cls):
            if spec.type == "str" and not isinstance(values[spec.name], str):
                raise FingerprintError(f"fingerprint {spec.name!r} must be a string, got {values[spec.name]!r}")
        return cls(**values)


def machine_fingerprint(path: str | os.PathLike[str] = ".") -> MachineFingerprint:
    """Fingerprint this machine; ``path`` names where the data under test lives (its file system matters)."""
    resolved = Path(path).resolve()
    return MachineFingerprint(
        cpu_model=_cpu_model(),
        logical_cores=os.cpu_count() or 1,
        physical_cores=psutil.cpu_count(logical=False),
        memory_bytes=psutil.virtual_memory().total,
        architecture=platform.machine(),
        os=platform.system(),
        kernel=platform.release(),
        python_implementation=platform.python_implementation(),
        python_version=".".join(str(part) for part in sys.version_info[:3]),
        filesystem=_filesystem_of(resolved),
        filesystem_path=str(resolved),
        hostname=platform.node(),
    )


def _cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux, platform's guess elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() in ("model name", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _filesystem_of(path: Path) -> str:
    """The file system type of the mount that holds ``path`` (the longest matching mount point)."""
    best_mount, best_type = "", "unknown"
    for partition in psutil.disk_partitions(all=True):
        mount = partition.mountpoint
        inside = str(path) == mount or str(path).startswith(mount.rstrip(os.sep) + os.sep)
        if inside and len(mount) > len(best_mount):
            best_mount, best_type = mount, partition.fstype or "unknown"
    return best_type
