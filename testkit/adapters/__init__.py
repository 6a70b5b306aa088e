"""Adapters: how testkit reaches a system under test.

``EventStoreAdapter`` is the protocol; ``SqliteAdapter`` ships with the kit; the lighthouse
adapter is imported lazily (``testkit.adapters.lighthouse``) so the kit installs and runs in a
project that has no lighthouse; ``HttpEventStoreAdapter`` needs ``httpx`` (the ``[server]`` extra) and is
imported on first use.
"""

from typing import Any

from testkit.adapters.base import EVENT_FIELDS, AdapterError, EventStoreAdapter, StoredEvent, content_digest
from testkit.adapters.factory import AdapterSpec, available_adapters
from testkit.adapters.sqlite import SqliteAdapter

__all__ = [
    "EVENT_FIELDS",
    "AdapterError",
    "AdapterSpec",
    "EventStoreAdapter",
    "HttpEventStoreAdapter",
    "SqliteAdapter",
    "StoredEvent",
    "available_adapters",
    "content_digest",
]


def __getattr__(name: str) -> Any:
    if name == "HttpEventStoreAdapter":
        from testkit.adapters.http import HttpEventStoreAdapter

        return HttpEventStoreAdapter
    raise AttributeError(f"module 'testkit.adapters' has no attribute {name!r}")
