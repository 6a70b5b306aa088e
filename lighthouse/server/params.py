"""Strict parsing of query parameters: unknown, repeated or malformed parameters are a 400.

Strictness is deliberate: the original server silently dropped filters it did not understand, so a
typo (``event_type=`` for ``event_types=``) returned everything instead of an error. Numbers follow the JSON
grammar the OpenAPI document promises (ASCII digits only): Python's ``int``/``float`` would also take
``" 7"``, ``"7_0"``, ``"+7"`` or Unicode digits such as ``"٧"``, which the document calls invalid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import QueryParams

from lighthouse.server.problems import ApiError

__all__ = ["QueryReader"]

_MAX_INT = 2**63 - 1
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class QueryReader:
    """Reads typed values from a query string and checks, at the end, that nothing unknown was sent."""

    def __init__(self, params: QueryParams, *, lists: Iterable[str] = (), scalars: Iterable[str] = ()) -> None:
        self._params = params
        self._lists = frozenset(lists)
        self._scalars = frozenset(scalars)
        unknown = sorted(set(params.keys()) - self._lists - self._scalars)
        if unknown:
            raise ApiError(400, "invalid_query", f"unknown query parameters {unknown}", parameters=unknown)
        for name in self._scalars:
            if len(params.getlist(name)) > 1:
                raise ApiError(400, "invalid_query", f"query parameter {name!r} was given more than once", parameter=name)

    def _raw(self, name: str) -> str | None:
        assert name in self._scalars
        return self._params.get(name)

    def strings(self, name: str, *, max_length: int = 4096) -> list[str] | None:
        assert name in self._lists
        values = self._params.getlist(name)
        if not values:
            return None
        if any(not v or len(v) > max_length for v in values):
            raise ApiError(400, "invalid_query", f"{name} values must be 1..{max_length} characters", parameter=name)
        return values

    def string(self, name: str, *, max_length: int = 4096) -> str | None:
        value = self._raw(name)
        if value is None:
            return None
        if not value or len(value) > max_length:
            raise ApiError(400, "invalid_query", f"{name} must be 1..{max_length} characters", parameter=name)
        return value

    def integer(self, name: str, *, minimum: int = 0, maximum: int = _MAX_INT, default: int | None = None) -> int | None:
        value = self._raw(name)
        if value is None:
            return default
        if not _JSON_INTEGER.fullmatch(value):
            raise ApiError(400, "invalid_query", f"{name} must be an integer", parameter=name)
        number = int(value, 10) if len(value) <= 20 else _MAX_INT + 1  # longer is out of range (and slow to parse)
        if not minimum <= number <= maximum:
            raise ApiError(400, "invalid_query", f"{name} must be in {minimum}..{maximum}", parameter=name)
        return number

    def number(self, name: str, *, bound: float = 1e300, minimum: float | None = None) -> float | None:
        value = self._raw(name)
        if value is None:
            return None
        if not _JSON_NUMBER.fullmatch(value):
            raise ApiError(400, "invalid_query", f"{name} must be a number", parameter=name)
        number = float(value)
        low = -bound if minimum is None else minimum
        if not math.isfinite(number) or not low <= number <= bound:
            raise ApiError(400, "invalid_query", f"{name} must be a number in {low}..{bound}", parameter=name)
        return number

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self._raw(name)
        if value is None:
            return default
        if value not in options:
            raise ApiError(400, "invalid_query", f"{name} must be one of {list(options)}", parameter=name)
        return value

    def as_dict(self) -> dict[str, Any]:
        return dict(self._params.multi_items())
