"""Schema evolution: upcasters turn events written under an old schema into the current one on read.

The log is never rewritten; an event keeps the ``schema_version`` it was written with, and readers
see it through the chain of registered upcasters (v1 -> v2 -> ... -> current).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lighthouse.errors import InvalidEvent
from lighthouse.models import Event, EventType

__all__ = ["Upcaster", "UpcasterRegistry"]

Upcaster = Callable[[dict[str, Any]], Mapping[str, Any]]


class UpcasterRegistry:
    """Per event type, functions from version N data to version N+1 data."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._current: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._steps)

    def register(self, event_type: EventType | str, from_version: int, upcaster: Upcaster) -> None:
        kind = EventType.parse(event_type).value
        if from_version < 1:
            raise ValueError("from_version must be >= 1")
        if (kind, from_version) in self._steps:
            raise ValueError(f"an upcaster for {kind} v{from_version} is already registered")
        self._steps[(kind, from_version)] = upcaster
        self._current[kind] = max(self._current.get(kind, 1), from_version + 1)

    def current_version(self, event_type: EventType | str) -> int:
        return self._current.get(EventType.parse(event_type).value, 1)

    def upcast(self, event: Event) -> Event:
        kind = str(event[1])
        target = self._current.get(kind)
        if target is None or event.schema_version >= target:
            return event
        data = dict(event.data)
        version = event.schema_version
        while version < target:
            step = self._steps.get((kind, version))
            if step is None:
                raise InvalidEvent(f"no upcaster from {kind} v{version}", event_id=event.event_id)
            data = dict(step(data))
            version += 1
        return event.replace(data=data, schema_version=version)
