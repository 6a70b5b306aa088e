"""What a load runner drives: an operation, and how worker processes find it by name.

An operation is any zero-argument callable; if it returns an awaitable the runner awaits it. Synchronous
operations are accepted too, but they block the event loop while they run, which is exactly how an in-process
blocking store behaves (and the open-loop runner then charges the delay to the operations kept waiting).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from testkit.load.errors import OperationFactoryError

__all__ = ["Operation", "OperationFactory", "resolve_factory"]

Operation = Callable[[], Awaitable[Any] | Any]
OperationFactory = Callable[..., Operation]


def resolve_factory(reference: str | OperationFactory) -> OperationFactory:
    """Turn ``"package.module:function"`` into the function (callables pass through unchanged).

    Worker processes start with ``spawn``, so they cannot receive a closure; they import the factory by name
    and build their own operation (their own connection, their own store handle).
    """
    if callable(reference):
        return reference
    if not isinstance(reference, str) or reference.count(":") != 1:
        raise OperationFactoryError(f"expected 'module:function', got {reference!r}")
    module_name, _, attribute_path = reference.partition(":")
    if not module_name or not attribute_path:
        raise OperationFactoryError(f"expected 'module:function', got {reference!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise OperationFactoryError(f"cannot import {module_name!r} for {reference!r}: {exc}") from exc
    for part in attribute_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise OperationFactoryError(f"{module_name!r} has no attribute {attribute_path!r}") from exc
    if not callable(target):
        raise OperationFactoryError(f"{reference!r} is a {type(target).__name__}, not a callable")
    factory: OperationFactory = target
    return factory
