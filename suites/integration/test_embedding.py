"""create_app with a store the caller opened: the app serves it and leaves it open for its owner."""

from __future__ import annotations

import asyncio
import secrets
import socket
import uuid
from pathlib import Path

import httpx
import uvicorn

from lighthouse import EventStore
from lighthouse.server import Role, TokenAuthority, create_app


def test_an_embedded_app_serves_the_callers_store_and_leaves_it_open(tmp_path: Path) -> None:
    secret = secrets.token_bytes(32)

    async def scenario() -> tuple[int, int, int]:
        store = await EventStore.open(tmp_path / "data")
        server = uvicorn.Server(uvicorn.Config(create_app(store, secret=secret), log_level="error", lifespan="on"))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        token = TokenAuthority(secret).issue("embedder", Role.AGENT)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            response = await client.post("/events", json={"event_type": "custom", "aggregate_id": f"e:{uuid.uuid4()}"})
        server.should_exit = True
        await task
        sock.close()
        after = await store.append({"event_type": "custom", "aggregate_id": "e:after"})  # still open: the caller owns it
        head = store.head_sequence
        await store.close()
        return response.status_code, after.sequence, head

    status, after, head = asyncio.run(scenario())
    assert status == 201 and after == head == 2
