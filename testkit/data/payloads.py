"""Heavy-tailed payload sizes and cheap deterministic content to fill them.

Real coordination traffic is mostly small (a command line, a decision) with a long tail of large
bodies (file contents, command output). A lognormal body plus a Pareto tail reproduces that: the mean
stays small, so load tests stay fast, while the tail still reaches the store's 1 MiB limit.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from testkit.data.events import MAX_EVENT_BYTES

__all__ = ["ENVELOPE_ALLOWANCE", "PayloadSizes", "TextFiller"]

#: Bytes kept free for the rest of an event (ids, metadata) when a payload is sized near the limit.
ENVELOPE_ALLOWANCE: Final[int] = 16 * 1024


@dataclass(frozen=True, slots=True)
class PayloadSizes:
    """A size distribution in bytes: lognormal body (``median_bytes``, ``sigma``) and a Pareto tail.

    ``tail_share`` of draws come from a Pareto(``tail_alpha``) starting at ``tail_start_bytes``; every draw
    is clamped to ``min_bytes..max_bytes``. ``max_bytes`` is the knob that caps the tail; it may not exceed
    the event limit minus :data:`ENVELOPE_ALLOWANCE`, so a generated event always fits the store.
    """

    min_bytes: int = 100
    median_bytes: int = 320
    sigma: float = 0.9
    tail_share: float = 0.02
    tail_start_bytes: int = 4096
    tail_alpha: float = 1.1
    max_bytes: int = MAX_EVENT_BYTES - ENVELOPE_ALLOWANCE

    def __post_init__(self) -> None:
        ceiling = MAX_EVENT_BYTES - ENVELOPE_ALLOWANCE
        if not 1 <= self.min_bytes <= self.max_bytes <= ceiling:
            raise ValueError(f"need 1 <= min_bytes <= max_bytes <= {ceiling}, got {self.min_bytes}, {self.max_bytes}")
        if not self.min_bytes <= self.median_bytes <= self.max_bytes:
            raise ValueError("median_bytes must lie within min_bytes..max_bytes")
        if self.sigma < 0 or self.tail_alpha <= 0 or not 0 <= self.tail_share <= 1 or self.tail_start_bytes < 1:
            raise ValueError("need sigma >= 0, tail_alpha > 0, 0 <= tail_share <= 1, tail_start_bytes >= 1")

    def draw(self, rng: random.Random) -> int:
        if rng.random() < self.tail_share:
            size = self.tail_start_bytes * rng.paretovariate(self.tail_alpha)
        else:
            size = rng.lognormvariate(math.log(self.median_bytes), self.sigma)
        return max(self.min_bytes, min(self.max_bytes, int(size)))


_LINES: Final[tuple[str, ...]] = (
    "def handle(request):",
    "    return await store.append(event)",
    "    if not validator.allows(command):",
    "        raise PermissionError(command)",
    "import asyncio",
    "from dataclasses import dataclass",
    "class SessionState:",
    "    timeout_s: float = 30.0",
    "# TODO: retry with jitter",
    "    for attempt in range(5):",
    "        log.info('appended %s', event_id)",
    "export function route(req, res) {",
    "  const body = JSON.parse(req.body);",
    "}",
    "PASSED tests/test_bridge.py::test_escalation",
    "npm WARN deprecated package@1.0.0",
    "",
)


class TextFiller:
    """Deterministic, text-like content of an exact byte length (ASCII, so characters == bytes).

    One block of code-like lines is built per filler from its rng; each request slices it at an
    rng-chosen offset and prefixes a distinguishing header, which is fast even for 1 MiB and gives
    distinct content (and so distinct content hashes) per call.
    """

    __slots__ = ("_block", "_rng")

    def __init__(self, rng: random.Random, block_bytes: int = 64 * 1024) -> None:
        self._rng = rng
        lines: list[str] = []
        size = 0
        while size < block_bytes:
            line = rng.choice(_LINES)
            lines.append(line)
            size += len(line) + 1
        self._block = "\n".join(lines)

    def text(self, size: int, header: str = "") -> str:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        head = f"{header}\n" if header else ""
        need = size - len(head)
        if need <= 0:
            return head[:size]
        start = self._rng.randrange(len(self._block))
        body = (self._block[start:] + "\n" + self._block) * (need // (len(self._block) + 1) + 1)
        return head + body[:need]
