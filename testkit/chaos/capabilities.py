"""What a system under test offers the chaos suite, so that the suite runs exactly the campaigns that apply.

An adapter factory declares them as a ``testkit_capabilities`` attribute (a :class:`Capabilities`, or a
dict of its fields); without one the defaults describe an embedded store that keeps everything under
its data directory, which is what most stores are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

_Factory = TypeVar("_Factory")

__all__ = ["FAULTS", "Capabilities", "Footprint", "capabilities_of", "declaring"]

#: The fault names an expectation can name (``expected_loss={"power_cut"}``), one per campaign family.
FAULTS: tuple[str, ...] = (
    "sigkill", "crash_point", "power_cut", "posix_crash", "disk_full", "inodes_exhausted", "read_only",
    "rlimit", "io_error", "network", "corruption",
)


@dataclass(frozen=True)
class Footprint:
    """Disk space (MiB) and files a fresh store occupies once opened, before its first event.

    An embedded store starts from almost nothing; a server's cluster does not (PostgreSQL's catalogs and
    WAL: 27 MiB in about 1,000 files). The disk campaigns give their small private filesystems this much
    on top of their own room, so the fault lands on the store's writes and not on its creation."""

    mib: int = 0
    files: int = 0


@dataclass(frozen=True)
class Capabilities:
    """``file_based``: all state lives under the data directory (disk, power-cut, I/O and corruption faults apply).

    ``crash_points`` and ``crash_point_factory`` (``"module:callable"`` accepting ``crash_point``/``crash_at``)
    enable whitebox kills; ``io_target`` narrows LD_PRELOAD injections to files whose path contains it
    (``io_preload=False``: a server process writes the files, out of the shim's reach, so they do not apply);
    ``network_target`` (``"module:callable"``: a context manager yielding a
    :class:`~testkit.chaos.network.NetworkTarget`) enables network faults; ``corruption_oracle``
    (``"module:callable"`` with the signature of :func:`~testkit.chaos.corruption.run_generic_corruption`)
    adds a format-aware corruption campaign; ``creates_files``: the store opens new files as it grows (it
    must refuse cleanly without inodes); ``opens_read_only``: it can serve reads from a read-only filesystem
    and open on a full one; ``finishes_short_writes``: it completes a write the OS cut short (False: it fails
    the operation instead, so writes that are always short stop it); ``expected_loss``: faults this
    configuration is *documented* to lose acknowledged writes under (the run fails if such a loss is not caught);
    ``footprint``: what a fresh store occupies (see :class:`Footprint`).
    """

    file_based: bool = True
    crash_points: tuple[str, ...] = ()
    crash_point_factory: str | None = None
    io_target: str | None = None
    network_target: str | None = None
    corruption_oracle: str | None = None
    creates_files: bool = False
    opens_read_only: bool = True
    expected_loss: frozenset[str] = field(default_factory=frozenset)
    io_preload: bool = True  # False: its files are written by a server process an LD_PRELOAD shim cannot reach
    #: False: a write the OS cuts short (POSIX lets write() return less than asked) fails the store's operation
    #: instead of being finished, so under writes that are always short it takes no writes at all.
    finishes_short_writes: bool = True
    footprint: Footprint = field(default_factory=Footprint)
    #: True: its unsynced writes overwrite preallocated files (PostgreSQL's recycled WAL segments). The POSIX crash
    #: model keeps unsynced overwrites inside a file's durable size (a documented limit), so it cannot produce
    #: a loss only they would cause: such an expected loss is left to the real power cut.
    unsynced_overwrites: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.expected_loss) - set(FAULTS)
        if unknown:
            raise ValueError(f"expected_loss names unknown faults {sorted(unknown)}; known: {list(FAULTS)}")

    def expecting_loss(self, faults: Iterable[str]) -> Capabilities:
        return dataclasses.replace(self, expected_loss=frozenset(self.expected_loss) | frozenset(faults))

    def expects_loss(self, fault: str) -> bool:
        return fault in self.expected_loss


def capabilities_of(factory: Any) -> Capabilities:
    """The factory's declared capabilities (``testkit_capabilities``), or the defaults."""
    declared = getattr(factory, "testkit_capabilities", None)
    if declared is None:
        return Capabilities()
    if isinstance(declared, Capabilities):
        return declared
    if isinstance(declared, Mapping):
        values = dict(declared)
        if "expected_loss" in values:
            values["expected_loss"] = frozenset(values["expected_loss"])
        if "crash_points" in values:
            values["crash_points"] = tuple(values["crash_points"])
        if isinstance(values.get("footprint"), Mapping):
            values["footprint"] = Footprint(**values["footprint"])
        return Capabilities(**values)
    raise TypeError(f"testkit_capabilities of {factory!r} must be a Capabilities or a dict, not {type(declared)}")


def declaring(capabilities: Capabilities) -> Any:
    """Decorator: a factory function declares ``capabilities`` (the class it builds usually carries them)."""

    def declare(factory: _Factory) -> _Factory:
        factory.testkit_capabilities = capabilities  # type: ignore[attr-defined]
        return factory

    return declare
