"""One shape for every error the HTTP API returns, and the status each error earns.

Clients branch on ``error`` (a stable code) and ``retryable``, never on message text. Store errors
keep the code the store gave them; errors born in the HTTP layer (bad body, bad parameters, auth)
get codes of their own. Only an exception nobody anticipated becomes a 500, and the fuzzing suite
fails on any 500.
"""

from __future__ import annotations

from typing import Any, Final

from lighthouse.errors import (
    ConcurrencyConflict,
    DuplicateEvent,
    EventNotFound,
    EventTooLarge,
    BatchTooLarge,
    InvalidCursor,
    InvalidEvent,
    InvalidQuery,
    LighthouseError,
    ResourceExhausted,
    StoreClosed,
    StoreCorrupted,
    StoreLocked,
    StoreReadOnly,
)
from lighthouse.fencing import WriterFenced

__all__ = ["ApiError", "status_for"]

#: Most specific class first: ``isinstance`` decides.
_STATUS: Final[tuple[tuple[type[LighthouseError], int], ...]] = (
    (EventTooLarge, 413),
    (BatchTooLarge, 413),
    (DuplicateEvent, 409),
    (InvalidCursor, 400),
    (InvalidEvent, 400),
    (InvalidQuery, 400),
    (EventNotFound, 404),
    (ConcurrencyConflict, 409),
    (StoreReadOnly, 503),
    (ResourceExhausted, 503),
    (StoreLocked, 503),
    (WriterFenced, 503),
    (StoreClosed, 503),
    (StoreCorrupted, 500),
)


def status_for(error: LighthouseError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


class ApiError(Exception):
    """An error the API answers with ``status`` and the JSON body ``{error, message, retryable, details}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
        self.headers = headers or {}
        self.details = details

    @classmethod
    def from_store(cls, error: LighthouseError, *, retry_after: float | None = None) -> ApiError:
        status = status_for(error)
        headers = {}
        if status == 503 and retry_after is not None:
            headers["Retry-After"] = str(max(1, int(round(retry_after))))
        return cls(status, error.code, error.message, retryable=error.retryable, headers=headers).with_details(
            error.details
        )

    def with_details(self, details: dict[str, Any]) -> ApiError:
        """Attach details whatever their keys (a detail may well be called ``status`` or ``code``)."""
        self.details = dict(details)
        return self

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "retryable": self.retryable, "details": self.details}
