"""Adapters named by import path, so a child process can build the same adapter as its parent."""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

from testkit.adapters.base import EventStoreAdapter

__all__ = ["AdapterSpec", "available_adapters"]


@dataclass(frozen=True)
class AdapterSpec:
    """``factory`` is ``"module:callable"`` taking ``(data_dir, **options)``; picklable and printable."""

    name: str
    factory: str
    options: dict[str, Any] = field(default_factory=dict)

    def create(self, data_dir: str | os.PathLike[str]) -> EventStoreAdapter:
        module_name, _, attr = self.factory.partition(":")
        factory: Any = importlib.import_module(module_name)
        for part in attr.split("."):  # "module:Class.method" as well as "module:factory"
            factory = getattr(factory, part)
        return factory(data_dir, **self.options)  # type: ignore[no-any-return]


def available_adapters() -> list[AdapterSpec]:
    """The adapters this installation can build: sqlite always, lighthouse when it is importable."""
    specs = [AdapterSpec("sqlite", "testkit.adapters.sqlite:SqliteAdapter")]
    if importlib.util.find_spec("lighthouse") is not None:
        specs.insert(0, AdapterSpec("lighthouse", "testkit.adapters.lighthouse:LighthouseAdapter"))
    return specs
