"""When the bridge stops folding the log, writes that wait for a fold hear it at once, not at their timeout.

A handler's bug raising out of a fold ends the feed: the events of that run are stored, but no fold
will ever answer whoever waits for them. Such a write must fail with ``StoreClosed`` right away (the
timeout here is ten minutes), the failure must be logged, and later writes must be refused before
anything is stored.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from lighthouse import EventStore, EventType, StoreClosed
from lighthouse.bridge import projection as projection_module
from lighthouse.bridge.bridge import BridgeSettings, ValidationBridge

pytestmark = pytest.mark.ci

LONG_TIMEOUT_S = 600.0  # what the writes would wait without the fix
ANSWERED_WITHIN_S = 30.0  # generous for a busy machine, far below LONG_TIMEOUT_S


def test_a_fold_that_raises_answers_the_waiting_write_and_refuses_the_next(
    store_dir: Path, run, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("handler bug")

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            bridge = ValidationBridge(store, settings=BridgeSettings(apply_timeout_seconds=LONG_TIMEOUT_S))
            await bridge.start()
            try:
                await bridge.submit("agent-1", tool="Read", tool_input={"path": "a"})  # folds while it works
                monkeypatch.setitem(projection_module._HANDLERS, EventType.COMMAND_RECEIVED, broken)
                stored = store.head_sequence
                with pytest.raises(StoreClosed, match="stopped following"):
                    await asyncio.wait_for(
                        bridge.submit("agent-1", tool="Read", tool_input={"path": "b"}), ANSWERED_WITHIN_S
                    )
                assert store.head_sequence > stored, "the events were stored before the fold failed"
                stored = store.head_sequence
                with pytest.raises(StoreClosed, match="stopped following"):
                    await bridge.submit("agent-1", tool="Read", tool_input={"path": "c"})
                assert store.head_sequence == stored, "a write the bridge cannot fold is refused before it is stored"
            finally:
                await bridge.stop(snapshot=False)

    with caplog.at_level(logging.ERROR, logger="lighthouse.bridge"):
        run(scenario(), timeout=120)
    assert any("stopped following" in r.getMessage() and r.exc_info for r in caplog.records)
