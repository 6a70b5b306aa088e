"""Signed, expiring bearer tokens: who an agent is and what it may do.

The server never trusts what a request body says about its author: ``source_agent`` comes from a
token the operator issued. A token is ``lh1.<payload>.<mac>`` where the payload (base64url JSON)
names the agent, its role and an expiry, and the MAC is HMAC-SHA256 over the first two parts with
a server secret. The secret is required configuration (``LIGHTHOUSE_SECRET`` or a secret file),
never a built-in or random default: a per-process random secret silently invalidates every token
on restart, and a built-in one is public.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from lighthouse.server.reserved import RESERVED_AGENTS

__all__ = [
    "MIN_SECRET_BYTES",
    "SECRET_ENV",
    "AuthError",
    "Forbidden",
    "Principal",
    "Role",
    "SecretMissing",
    "TokenAuthority",
    "load_secret",
]

SECRET_ENV: Final[str] = "LIGHTHOUSE_SECRET"
MIN_SECRET_BYTES: Final[int] = 16
MAX_TTL_SECONDS: Final[int] = 90 * 24 * 3600
_PREFIX: Final[str] = "lh1"
_AGENT_ID: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_MAX_TOKEN_CHARS: Final[int] = 2048
_CACHE_SIZE: Final[int] = 4096


class Role(StrEnum):
    """What a principal may do; each role includes the powers of the ones before it."""

    AGENT = "agent"  # append and read events, propose commands, pair
    EXPERT = "expert"  # + decide escalated commands
    ADMIN = "admin"  # + health details, alert configuration, reserved event types

    def includes(self, other: Role) -> bool:
        return _RANK[self] >= _RANK[other]


_RANK: Final[dict[Role, int]] = {Role.AGENT: 0, Role.EXPERT: 1, Role.ADMIN: 2}


class SecretMissing(Exception):
    """The server or the token command was started without a usable secret."""


class AuthError(Exception):
    """The request is not authenticated (HTTP 401). ``code`` is machine readable."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Forbidden(AuthError):
    """Authenticated, but the role does not allow this (HTTP 403)."""

    status = 403

    def __init__(self, message: str, *, code: str = "forbidden") -> None:
        super().__init__(code, message)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    agent_id: str
    role: Role
    expires_at: int

    def require(self, role: Role) -> None:
        if not self.role.includes(role):
            raise Forbidden(f"this operation needs role {role.value}; the token has role {self.role.value}")


def load_secret(secret_file: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> bytes:
    """The server secret from ``secret_file`` (preferred when given) or ``$LIGHTHOUSE_SECRET``."""
    env = os.environ if env is None else env
    if secret_file is not None:
        path = Path(secret_file)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SecretMissing(f"cannot read secret file {path}: {exc.strerror or exc}") from None
        secret = raw.strip()
        source = f"secret file {path}"
    elif env.get(SECRET_ENV):
        secret = env[SECRET_ENV].encode()
        source = f"${SECRET_ENV}"
    else:
        raise SecretMissing(
            f"no secret configured: set ${SECRET_ENV} or pass --secret-file PATH (there is deliberately no default)"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretMissing(f"the secret from {source} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Issues and verifies tokens with one secret. ``clock`` is injectable for expiry tests."""

    def __init__(self, secret: bytes, *, clock: Any = time.time) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise SecretMissing(f"the secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._clock = clock
        self._verified: dict[str, Principal] = {}  # token -> principal: skip HMAC and JSON on repeat use

    def _mac(self, signed_part: str) -> str:
        return _b64encode(hmac.new(self._secret, signed_part.encode("ascii"), hashlib.sha256).digest())

    def issue(self, agent_id: str, role: Role | str, *, ttl_seconds: int = 3600) -> str:
        """A token for ``agent_id`` with ``role``, valid for ``ttl_seconds`` from now."""
        if not isinstance(agent_id, str) or not _AGENT_ID.fullmatch(agent_id):
            raise ValueError("agent id must be 1..128 characters of letters, digits and ._:@- (starting alphanumeric)")
        if agent_id in RESERVED_AGENTS:
            raise ValueError(f"{agent_id!r} is reserved for the server itself; no token names it")
        role = Role(role)
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"ttl must be an integer number of seconds in 1..{MAX_TTL_SECONDS}")
        now = int(self._clock())
        payload = {"sub": agent_id, "role": role.value, "iat": now, "exp": now + ttl_seconds}
        body = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        signed = f"{_PREFIX}.{body}"
        return f"{signed}.{self._mac(signed)}"

    def verify(self, token: str) -> Principal:
        """The principal a token names; ``AuthError`` if it is malformed, forged or expired."""
        known = self._verified.get(token) if isinstance(token, str) else None
        if known is not None:
            if known.expires_at <= self._clock():
                raise AuthError("token_expired", "the token has expired")
            return known
        principal = self._verify_signed(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = principal
        return principal

    def _verify_signed(self, token: str) -> Principal:
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            raise AuthError("invalid_token", "the token is malformed")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise AuthError("invalid_token", "the token is malformed")
        signed = f"{parts[0]}.{parts[1]}"
        try:
            expected = self._mac(signed)
        except UnicodeEncodeError:
            raise AuthError("invalid_token", "the token is malformed") from None
        if not hmac.compare_digest(expected.encode("ascii"), parts[2].encode("utf-8", "replace")):
            raise AuthError("invalid_token", "the token signature does not verify")
        try:
            payload = json.loads(_b64decode(parts[1]))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise AuthError("invalid_token", "the token payload is malformed") from None
        if not isinstance(payload, dict):
            raise AuthError("invalid_token", "the token payload is malformed")
        agent, role, expires = payload.get("sub"), payload.get("role"), payload.get("exp")
        if not isinstance(agent, str) or not _AGENT_ID.fullmatch(agent):
            raise AuthError("invalid_token", "the token names no valid agent")
        if role not in Role.__members__.values():
            raise AuthError("invalid_token", "the token names no valid role")
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise AuthError("invalid_token", "the token has no expiry")
        if expires <= self._clock():
            raise AuthError("token_expired", "the token has expired")
        return Principal(agent, Role(role), expires)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` header value."""
        if not authorization:
            raise AuthError("missing_token", "an Authorization: Bearer <token> header is required")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("invalid_token", "use the Bearer scheme: Authorization: Bearer <token>")
        return self.verify(token.strip())
