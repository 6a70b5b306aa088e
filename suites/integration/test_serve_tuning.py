"""serve() tunes the interpreter for serving (collector, GIL hand-over) and puts it back when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import sys
from pathlib import Path

import pytest

from lighthouse.server.serve import GIL_SWITCH_INTERVAL_S, YOUNG_COLLECTION_THRESHOLD, serve


def test_serve_tunes_the_interpreter_while_serving_and_restores_it_after(tmp_path: Path) -> None:
    before = (sys.getswitchinterval(), gc.get_threshold())
    ready = tmp_path / "ready.json"

    async def scenario() -> tuple[float, int, int]:
        task = asyncio.get_running_loop().create_task(
            serve(tmp_path / "data", secret=secrets.token_bytes(32), port=0, ready_file=ready, log_level="error"))
        async with asyncio.timeout(60):
            while not ready.exists():  # written once the server is started and tuned
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        during = (sys.getswitchinterval(), gc.get_threshold()[0], gc.get_freeze_count())
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return during

    interval, young, frozen = asyncio.run(scenario())
    assert interval == pytest.approx(GIL_SWITCH_INTERVAL_S) and young == YOUNG_COLLECTION_THRESHOLD and frozen > 0
    assert (sys.getswitchinterval(), gc.get_threshold()) == before
    assert gc.get_freeze_count() == 0
