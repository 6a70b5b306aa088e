"""The third-party store configurations the kit ships, by the names they are registered under.

The same names are the ``testkit.adapters`` entry points in ``pyproject.toml`` (a test keeps the two
in step). Each needs the extra that installs its package; :func:`missing_requirement` says which, so
a run on an installation without it skips with that reason instead of failing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["SHIPPED", "ShippedAdapter", "missing_requirement"]


@dataclass(frozen=True)
class ShippedAdapter:
    """``factory`` is ``module:callable`` taking ``(data_dir, **options)``; ``needs`` the importable modules."""

    name: str
    factory: str
    needs: tuple[str, ...]
    extra: str

    def missing(self) -> str | None:
        return missing_requirement(self.needs, self.extra)

    def load(self) -> Callable[..., Any]:
        """The factory itself (imports the store's package)."""
        from testkit.chaos.sut import load_factory

        return load_factory(self.factory)


def missing_requirement(modules: tuple[str, ...], extra: str) -> str | None:
    """Why these modules cannot be used here, or None when all are importable."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return f"needs {', '.join(absent)} (pip install 'lighthouse-testkit[{extra}]')"


def _shipped(*adapters: ShippedAdapter) -> Mapping[str, ShippedAdapter]:
    return MappingProxyType({a.name: a for a in adapters})


_PG = ("pgserver", "psycopg")
SHIPPED: Mapping[str, ShippedAdapter] = _shipped(
    ShippedAdapter("postgres", "testkit.adapters.postgres:postgres_default", _PG, "postgres"),
    ShippedAdapter("postgres-sync-off", "testkit.adapters.postgres:postgres_sync_off", _PG, "postgres"),
    ShippedAdapter("postgres-fsync-off", "testkit.adapters.postgres:postgres_fsync_off", _PG, "postgres"),
    ShippedAdapter("lmdb", "testkit.adapters.lmdb_log:lmdb_default", ("lmdb",), "lmdb"),
    ShippedAdapter("lmdb-nosync", "testkit.adapters.lmdb_log:lmdb_nosync", ("lmdb",), "lmdb"),
    ShippedAdapter("eventsourcing-sqlite", "testkit.adapters.eventsourcing_sqlite:eventsourcing_sqlite",
                   ("eventsourcing",), "eventsourcing"),
    ShippedAdapter("sqlite-full", "testkit.adapters.sqlite:sqlite_full", (), ""),
    ShippedAdapter("sqlite-normal", "testkit.adapters.sqlite:sqlite_normal", (), ""),
    ShippedAdapter("sqlite-off", "testkit.adapters.sqlite:sqlite_off", (), ""),
)
