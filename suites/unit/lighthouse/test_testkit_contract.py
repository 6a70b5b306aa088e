"""lighthouse speaks the same language as the testkit: event types, limits and bad-input codes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lighthouse import BatchTooLarge, Event, EventStore, EventTooLarge, EventType, InvalidEvent, LighthouseError
from lighthouse.models import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES
from testkit.data import EVENT_TYPES, InvalidEventGenerator
from testkit.data import MAX_BATCH_BYTES as TK_BATCH_BYTES
from testkit.data import MAX_BATCH_EVENTS as TK_BATCH_EVENTS
from testkit.data import MAX_EVENT_BYTES as TK_EVENT_BYTES


_FAMILIES = {"invalid_event": InvalidEvent, "event_too_large": EventTooLarge, "batch_too_large": BatchTooLarge}


def test_event_types_and_limits_match_the_generators() -> None:
    assert tuple(t.value for t in EventType) == tuple(EVENT_TYPES)
    assert (MAX_EVENT_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_BYTES) == (TK_EVENT_BYTES, TK_BATCH_EVENTS, TK_BATCH_BYTES)


def test_every_generated_bad_input_gets_its_typed_error_and_loses_nothing(tmp_path: Path) -> None:
    cases = list(InvalidEventGenerator(seed=11).cases())
    assert len({case.kind for case in cases}) >= 10

    async def scenario() -> None:
        async with EventStore(tmp_path / "s") as store:
            kept = await store.append(Event(EventType.CUSTOM, aggregate_id="keep:1", data={"v": 1}))
            for case in cases:
                kind, payload, expected_code = case
                if case.target == "raw":
                    continue  # raw bytes are the HTTP layer's input, tested in suites/integration
                try:
                    if case.target == "batch":
                        await store.append_batch(payload)
                    else:
                        await store.append(payload)
                except LighthouseError as exc:
                    # The generator names the category; the store may answer with a narrower error of it
                    # (an empty batch is a BatchTooLarge, which is an InvalidEvent).
                    family = _FAMILIES[expected_code]
                    assert isinstance(exc, family), f"{kind}: got {exc.code}, expected {expected_code}"
                else:
                    raise AssertionError(f"{kind}: bad input was accepted")
            assert store.head_sequence == 1
            assert await store.get(1) == kept

    asyncio.run(scenario())
