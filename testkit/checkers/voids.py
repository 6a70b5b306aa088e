"""Voids required: the numbers of a refused write are reported as voided once a later write succeeds.

A store that hands out sequence numbers before a write is durable (lighthouse does: a group is
numbered, written, synced) must never hand them out again after the write failed, or a client that
saw the refusal and a reader that saw the gap disagree about what the numbers mean. When the store
says which numbers a refused write had (``AdapterError.sequences``, journalled in the reason as
``[sequences first..last]``), this rule holds it to them: after a later acknowledged write of the
same incarnation, they lie inside the voided ranges the store reports, and no recovered event uses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from testkit.checkers.history import History, OpStatus

__all__ = ["SEQUENCES_TAG", "check_voids_required", "format_sequences"]

SEQUENCES_TAG = "[sequences "
_NUMBERED = re.compile(re.escape(SEQUENCES_TAG) + r"(\d+)\.\.(\d+)\]")


def format_sequences(first: int, last: int) -> str:
    """The tag a workload appends to a refused write's reason."""
    return f"{SEQUENCES_TAG}{first}..{last}]"


def _incarnation(client_id: str) -> str:
    return client_id.split("-", 1)[0]


def check_voids_required(history: History, voided: Iterable[Sequence[int]], recovered: Iterable[Any]) -> list[str]:
    """Each refused-and-numbered write followed by an acknowledged one whose numbers are not voided, or reused."""
    spans = [(int(r[0]), int(r[1])) for r in voided]
    used = {event.sequence for event in recovered}
    ops = list(history)
    problems: list[str] = []
    for op in ops:
        match = _NUMBERED.search(op.error or "") if op.status != OpStatus.OK else None
        if match is None or op.completed_at is None:
            continue
        first, last = int(match.group(1)), int(match.group(2))
        later_ack = any(other.status == OpStatus.OK and other.invoked_at > op.completed_at
                        and _incarnation(other.client_id) == _incarnation(op.client_id) for other in ops)
        if not later_ack:
            continue
        missing = [n for n in range(first, last + 1) if not any(lo <= n <= hi for lo, hi in spans)]
        if missing:
            problems.append(f"write {list(op.event_ids)[:2]} was refused with sequences {first}..{last} and a later "
                            f"write succeeded, yet {missing[:5]} are not reported as voided")
        reused = sorted(n for n in range(first, last + 1) if n in used)
        if reused:
            problems.append(f"sequences {reused[:5]} of a refused write were handed out again")
    return problems
