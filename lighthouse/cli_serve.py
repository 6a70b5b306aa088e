"""``lighthouse serve`` and ``lighthouse token``: argparse wiring the main CLI plugs in.

``add_serve_parser(subparsers)`` and ``add_token_parser(subparsers)`` add the sub-commands and set
``func`` on the parsed namespace; ``func(args)`` runs the command and returns an exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

__all__ = ["add_serve_parser", "add_token_parser", "main"]


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve a data directory over HTTP and WebSocket",
        description="Serve DIR over HTTP/WebSocket. The token secret comes from $LIGHTHOUSE_SECRET or "
        "--secret-file; there is no default.",
    )
    parser.add_argument("--data-dir", required=True, help="the store's directory (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port; see --ready-file)")
    parser.add_argument("--secret-file", help="file holding the token secret (else $LIGHTHOUSE_SECRET)")
    parser.add_argument("--config", help="JSON file: server, alerts, bridge, store and policy settings")
    parser.add_argument("--durability", choices=("fsync", "batch", "none"),
                        help="store durability (default fsync; the others are for benchmarks only)")
    parser.add_argument("--ready-file", help="write {host, port, pid} as JSON here once serving")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"),
                        help="uvicorn's HTTP implementation (default auto: httptools if installed)")
    parser.set_defaults(func=_serve)
    return parser


def add_token_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "token",
        help="print a bearer token signed with the server's secret",
        description="Print a token for AGENT with ROLE, signed with $LIGHTHOUSE_SECRET or --secret-file.",
    )
    parser.add_argument("--agent", required=True, help="the agent id the token names")
    parser.add_argument("--role", required=True, choices=("agent", "expert", "admin"))
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    parser.add_argument("--secret-file", help="file holding the token secret (else $LIGHTHOUSE_SECRET)")
    parser.set_defaults(func=_token)
    return parser


def _fail(message: str) -> int:
    print(f"lighthouse: {message}", file=sys.stderr)
    return 2


def _serve(args: argparse.Namespace) -> int:
    from lighthouse.server.auth import SecretMissing, load_secret
    from lighthouse.server.serve import run_server
    from lighthouse.server.settings import ServerSettings, settings_from_config

    try:
        secret = load_secret(args.secret_file)
    except SecretMissing as exc:
        return _fail(str(exc))
    settings, policy = ServerSettings(), None
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as handle:
                settings, policy = settings_from_config(json.load(handle))
        except (OSError, ValueError) as exc:
            return _fail(f"bad --config {args.config}: {exc}")
    if args.durability:
        settings = dataclasses.replace(settings, store_options={**settings.store_options, "durability": args.durability})
    if not 0 <= args.port <= 65535:
        return _fail("--port must be in 0..65535")
    from lighthouse.errors import LighthouseError

    try:
        run_server(args.data_dir, secret=secret, host=args.host, port=args.port, settings=settings, policy=policy,
                   ready_file=args.ready_file, log_level=args.log_level, http=args.http)
    except (LighthouseError, OSError, RuntimeError) as exc:
        return _fail(str(exc))
    return 0


def _token(args: argparse.Namespace) -> int:
    from lighthouse.server.auth import SecretMissing, TokenAuthority, load_secret

    try:
        authority = TokenAuthority(load_secret(args.secret_file))
        print(authority.issue(args.agent, args.role, ttl_seconds=args.ttl))
    except SecretMissing as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m lighthouse.cli_serve serve ...``) until the main CLI wires these in."""
    parser = argparse.ArgumentParser(prog="lighthouse")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(subparsers)
    add_token_parser(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
