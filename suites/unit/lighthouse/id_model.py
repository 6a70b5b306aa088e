"""The step the id-table tests share: add keys to a table and to the plain multimap it must answer like."""

from __future__ import annotations

from typing import Protocol


class _Adds(Protocol):
    def add(self, key: int, sequence: int) -> None: ...
    def add_run(self, keys: list[int], first_sequence: int) -> None: ...


def add_keys(table: _Adds, keys: list[int], first_sequence: int, model: dict[int, list[int]]) -> int:
    """Add ``keys`` at consecutive sequences from ``first_sequence`` (one key through ``add``, more through
    ``add_run``) to ``table`` and to ``model``; returns the next sequence."""
    if len(keys) == 1:
        table.add(keys[0], first_sequence)
    else:
        table.add_run(keys, first_sequence)
    for offset, key in enumerate(keys):
        model[key].append(first_sequence + offset)
    return first_sequence + len(keys)
