"""Adapters named on a command line: ``PKG.MODULE:FACTORY`` plus ``--option key=value`` pairs.

A factory is any callable ``factory(data_dir, **options) -> EventStoreAdapter`` (an adapter class
is one). Option values are read as JSON when they parse (``3``, ``true``, ``"x"``), else as text, so
``--option synchronous=OFF --option map_size=1048576`` needs no quoting.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["AdapterReferenceError", "bind_factory", "load_factory", "parse_options"]


class AdapterReferenceError(ValueError):
    """An adapter reference or option that cannot be used; the message says what to write instead."""


def load_factory(reference: str) -> Callable[..., Any]:
    """The callable ``reference`` (``"package.module:callable"``) names."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise AdapterReferenceError(f"expected PKG.MODULE:FACTORY (for example "
                                    f"testkit.adapters.sqlite:SqliteAdapter), got {reference!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterReferenceError(f"cannot import {module_name!r} for adapter {reference!r}: {exc}") from exc
    try:
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError as exc:
        raise AdapterReferenceError(f"{module_name!r} has no {attr!r} (adapter {reference!r})") from exc
    if not callable(target):
        raise AdapterReferenceError(f"{reference!r} is a {type(target).__name__}, not a callable factory")
    return target  # type: ignore[no-any-return]


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``["a=1", "b=OFF"]`` -> ``{"a": 1, "b": "OFF"}``."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise AdapterReferenceError(f"expected --option key=value with an identifier key, got {pair!r}")
        try:
            options[key] = json.loads(text)
        except ValueError:
            options[key] = text
    return options


def bind_factory(reference: str, pairs: Iterable[str] = ()) -> Callable[..., Any]:
    """The factory with its options bound: call it with a data directory."""
    factory = load_factory(reference)
    options = parse_options(pairs)
    return functools.partial(factory, **options) if options else factory
