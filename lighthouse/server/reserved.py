"""The server's own namespace: agent names, event types and event ids no client may write.

The server records alert transitions as ``degradation_*`` events under ``lighthouse-server``; the
store records damage as ``corruption_detected`` events under ``lighthouse`` with ids in the ``lh:``
namespace. If a client could write any of these, it could forge an incident, or pre-write the id of a
future integrity record and so suppress the log's record of real damage. Tokens are therefore never
issued for the reserved agents, the reserved types are refused from the API (for every role: only the
server and the store write them), and client event ids use a documented character set that keeps every
id addressable as ``GET /events/{id}``: 1..256 of ``A-Z a-z 0-9 _ - : @ + = ~ .``, starting with a letter
or digit (so no ``/``, no ``.`` or ``..``), and never starting with ``lh:``.
"""

from __future__ import annotations

import re
from typing import Final

from lighthouse.errors import InvalidEvent
from lighthouse.models import EventType

__all__ = ["RESERVED_AGENTS", "RESERVED_ID_PREFIX", "SERVER_EVENT_TYPES", "check_client_event_id"]

#: Agent names the server and the store write under; no token names them.
RESERVED_AGENTS: Final[frozenset[str]] = frozenset({"lighthouse-server", "lighthouse", "system"})
#: Event types only the server or the store writes.
SERVER_EVENT_TYPES: Final[frozenset[EventType]] = frozenset({
    EventType.DEGRADATION_ENTERED, EventType.DEGRADATION_CLEARED, EventType.CORRUPTION_DETECTED,
    EventType.SYSTEM_STARTED, EventType.SYSTEM_SHUTDOWN,
})
#: Ids the store gives its own records (integrity records): clients cannot choose them.
RESERVED_ID_PREFIX: Final[str] = "lh:"
#: The documented character set of client event ids (1..256 characters).
CLIENT_EVENT_ID: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-:@+=~.]{0,255}")


def check_client_event_id(event_id: str) -> None:
    """``InvalidEvent`` unless a client may use ``event_id`` (documented set, outside the reserved prefix)."""
    if not CLIENT_EVENT_ID.fullmatch(event_id):
        raise InvalidEvent("event_id must be 1..256 characters of A-Z a-z 0-9 _ - : @ + = ~ . starting with a "
                           "letter or digit", field="event_id")
    if event_id.lower().startswith(RESERVED_ID_PREFIX):
        raise InvalidEvent(f"event ids starting with {RESERVED_ID_PREFIX!r} are reserved for the store",
                           field="event_id")
