"""The time a server says it spent on a request, from its W3C ``Server-Timing`` response header.

Beside the latency a client measures from the intended start, the server's own account of each request
splits a slow percentile in two: time inside the server (its parsing, storage, answer) and everything
else (the client's queue, its CPU, the network, the server's accept and parse before its timer starts).
A load generator records it when the system under test sends the header and leaves it out when not.
"""

from __future__ import annotations

import math
import re
from typing import Final

__all__ = ["server_time_ns"]

_DURATION: Final = re.compile(r";\s*dur\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)\"?", re.IGNORECASE)


def server_time_ns(header: str | None) -> int | None:
    """The longest ``dur`` (milliseconds) among the header's metrics, in nanoseconds: a server's total is at
    least any of its parts. ``None`` when the header is absent or names no duration."""
    if not header:
        return None
    durations = [float(match) for match in _DURATION.findall(header)]
    longest = max(durations, default=None)
    if longest is None or not math.isfinite(longest):
        return None
    return max(1, round(longest * 1e6))
