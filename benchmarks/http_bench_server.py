"""The lighthouse server as ``lighthouse serve`` runs it, plus one benchmark-only no-op route.

``POST /bench/noop`` reads the body and answers a fixed 201 JSON: what uvicorn and Starlette cost per
request on this machine, the ceiling any endpoint of this server can reach. The route exists only in
this launcher (never in the server itself); everything else is the real ``serve()`` path, so the
event loop and HTTP parser are whatever the server selects.

    python benchmarks/http_bench_server.py DATA_DIR SECRET_FILE READY_FILE DURABILITY
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lighthouse.server import serve as serve_module
from lighthouse.server.settings import ServerSettings

__all__ = ["NOOP_PATH", "main"]

NOOP_PATH = "/bench/noop"


async def _noop(request: Request) -> Response:
    await request.body()
    return Response(b'{"ok":true}', status_code=201, media_type="application/json")


def _with_noop_route(create_app: Any) -> Any:
    def create(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.router.routes.insert(0, Route(NOOP_PATH, _noop, methods=["POST"]))
        return app
    return create


def main(argv: list[str]) -> None:
    data_dir, secret_file, ready_file, durability = argv
    serve_module.create_app = _with_noop_route(serve_module.create_app)  # type: ignore[attr-defined]
    serve_module.run_server(
        data_dir, secret=Path(secret_file).read_bytes(), port=0, ready_file=ready_file, log_level="error",
        settings=ServerSettings(store_options={"durability": durability}),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
