"""Errors of the ValidationBridge, each with a stable code and the HTTP status it maps to."""

from __future__ import annotations

from typing import Any

__all__ = ["BridgeError", "BridgeConflict", "BridgeForbidden", "BridgeInvalid", "BridgeNotFound"]


class BridgeError(Exception):
    code = "bridge_error"
    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BridgeInvalid(BridgeError):
    """The request is malformed (bad decision name, bad mode, missing field)."""

    code = "invalid_request"
    status = 400


class BridgeNotFound(BridgeError):
    code = "not_found"
    status = 404


class BridgeConflict(BridgeError):
    """The request does not fit the current state (already decided, expired, not pending)."""

    code = "conflict"
    status = 409


class BridgeForbidden(BridgeError):
    """The caller is not the one who may take this step (not the assigned expert, not a participant)."""

    code = "forbidden"
    status = 403
