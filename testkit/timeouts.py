"""Per-test timeouts that grow with ``--testkit-duration``.

pytest-timeout's limit (``timeout = 600`` in a project's ini, ``--timeout``, or a ``timeout`` marker) is sized
for a test's short default run. A test scaled to run for an hour, a day or three days must not be killed at
minute ten, so every limit is multiplied by the run's scale factor (never shrunk below the configured one).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

__all__ = ["configured_timeout", "scale_timeouts"]


def configured_timeout(config: pytest.Config) -> float | None:
    """The session-wide limit in seconds as pytest-timeout resolves it (command line, then ini), if any."""
    value = config.getoption("timeout", None)
    if value is None:
        try:
            value = config.getini("timeout")
        except ValueError:  # pytest-timeout is not installed: no ini key
            return None
    if value in (None, ""):
        return None
    seconds = float(value)
    return seconds if seconds > 0 else None


def scale_timeouts(config: pytest.Config, items: Iterable[pytest.Item], scale: float) -> float | None:
    """Give every item a ``timeout`` marker of its current limit times ``scale`` (when ``scale > 1``).

    Returns the scaled session-wide limit (``None`` when there is none or nothing to scale).
    """
    if scale <= 1 or not config.pluginmanager.hasplugin("timeout"):
        return None
    default = configured_timeout(config)
    for item in items:
        marker = item.get_closest_marker("timeout")
        args: tuple[object, ...] = marker.args if marker is not None else ()
        kwargs = dict(marker.kwargs) if marker is not None else {}
        own = args[0] if args else kwargs.pop("timeout", None)
        limit = float(own) if own is not None else default  # type: ignore[arg-type]
        if limit is not None and limit > 0:
            item.add_marker(pytest.mark.timeout(limit * scale, *args[1:], **kwargs), append=False)
    return None if default is None else default * scale
