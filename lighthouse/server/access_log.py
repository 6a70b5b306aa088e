"""One access-log line per request, and a filter that keeps credentials out of every log line.

The line names the method, the path WITHOUT its query string (filters can carry ids a client would
rather not see logged), the status, the principal (the token's agent, never the token) and the
duration. The redaction filter sits on the root handlers and masks bearer tokens and ``lh1.`` tokens
in any record, whatever logger and level wrote it (uvicorn's debug output included).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Final

__all__ = [
    "AccessLog", "DropHandshakeChatter", "RedactCredentials", "access_logged", "install_redaction", "log_access",
    "principal_name",
]

_access: Final[logging.Logger] = logging.getLogger("lighthouse.access")
_TOKEN: Final[re.Pattern[str]] = re.compile(r"(?i)(bearer\s+)?\blh1\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+|(?i:bearer)\s+\S+")
_HANDSHAKE_CHATTER: Final[re.Pattern[str]] = re.compile(r'"WebSocket /|^connection (rejected|open|closed)')
_QUERY: Final[re.Pattern[str]] = re.compile(r"(/[^\s\"?]*)\?[^\s\"]*")


def principal_name(scope: dict[str, Any]) -> str:
    """The agent the request authenticated as (set by the admission middleware), or ``-``. (The lean
    append path, which runs without the middleware, names its principal itself.)"""
    return str(scope.get("state", {}).get("lighthouse_principal") or "-")


def access_logged() -> bool:
    """Whether access lines are written at all (checked per request: the level can change at run time)."""
    return _access.isEnabledFor(logging.INFO)


def log_access(method: str, path: str, status: int, principal: str, started: float) -> None:
    """The access line of one request that began at ``started`` (``time.perf_counter``)."""
    _access.info("%s %s %d %s %.3fms", method, path, status, principal, (time.perf_counter() - started) * 1000)


class RedactCredentials(logging.Filter):
    """Mask tokens and query strings in the rendered message (the record is rewritten, never dropped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's business
            return True
        cleaned = _QUERY.sub(r"\1", _TOKEN.sub("[redacted]", message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class DropHandshakeChatter(logging.Filter):
    """uvicorn's per-handshake INFO lines: the access log already has one line per handshake."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not _HANDSHAKE_CHATTER.search(record.getMessage())


def install_redaction(logger: logging.Logger) -> None:
    """Put the filter on every handler of ``logger`` (the root logger, after ``basicConfig``)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactCredentials) for f in handler.filters):
            handler.addFilter(RedactCredentials())
    chatter = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropHandshakeChatter) for f in chatter.filters):
        chatter.addFilter(DropHandshakeChatter())


class AccessLog:
    """ASGI middleware: ``METHOD /path STATUS principal 1.234ms`` at INFO on ``lighthouse.access``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not access_logged():
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def observe(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status[0] = message["status"]
            elif kind == "websocket.accept":
                status[0] = 101
            elif kind == "websocket.close" and not status[0]:
                status[0] = 403
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            log_access(scope.get("method", "WS"), scope.get("path", "?"), status[0] or 500, principal_name(scope),
                       started)
