"""The HTTP/WebSocket server of lighthouse: ``create_app`` builds it, ``run_server`` serves it."""

from lighthouse.server.alerts import AlertConfig, AlertRule
from lighthouse.server.app import create_app
from lighthouse.server.auth import Principal, Role, SecretMissing, TokenAuthority, load_secret
from lighthouse.server.serve import run_server
from lighthouse.server.settings import ServerSettings

__all__ = [
    "AlertConfig",
    "AlertRule",
    "Principal",
    "Role",
    "SecretMissing",
    "ServerSettings",
    "TokenAuthority",
    "create_app",
    "load_secret",
    "run_server",
]
