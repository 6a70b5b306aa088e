"""``from_wire``: what the server's body decoders produce is stored without the read-back, and reads back.

The read-back refuses records that would not read back; its one catch is a container used as a map key.
A JSON decoder gives only string keys and the server's MessagePack decoder only string or bytes keys,
so the server skips it (``from_wire=True``). These tests hold the store to that: any value either
decoder gives is stored and comes back equal after a reopen, and the flag skips the read-back and
nothing else.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lighthouse.store_writer as store_writer
from lighthouse import Event, EventStore, EventType, InvalidEvent
from lighthouse.server.codec import decode_body

_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text() | st.text(min_size=250, max_size=300))
_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
_msgpack_keys = st.text() | st.binary(max_size=8)
_msgpack = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_msgpack_keys, inner, max_size=4),
    max_leaves=20)


def _decoded(value: Any, codec: str) -> dict[str, Any]:
    """``value`` as the server decodes it from a request body (wrapped in an object, as event data is)."""
    if codec == "json":
        return decode_body(json.dumps({"v": value}).encode(), "application/json")  # type: ignore[no-any-return]
    packed = msgpack.packb({"v": value}, use_bin_type=True)
    return decode_body(packed, "application/msgpack")  # type: ignore[no-any-return]


async def _store_and_reopen(path: Path, datas: list[dict[str, Any]]) -> tuple[list[Event], list[Event]]:
    async with EventStore(path) as store:
        first = await store.append(Event(EventType.CUSTOM, aggregate_id="wire:1", data=datas[0]), from_wire=True)
        rest = await store.append_batch(
            [Event(EventType.CUSTOM, aggregate_id="wire:2", data=d, metadata=d) for d in datas[1:]], from_wire=True)
    async with EventStore(path) as store:
        return [first, *rest], [e async for e in store.replay()]


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_whatever_the_server_decodes_is_stored_without_the_read_back_and_reads_back(run, codec: str,
                                                                                    data: st.DataObject) -> None:
    values = data.draw(st.lists(_json if codec == "json" else _msgpack, min_size=2, max_size=6))
    datas = [_decoded(v, codec) for v in values]
    with tempfile.TemporaryDirectory() as tmp:
        stored, replayed = run(_store_and_reopen(Path(tmp) / "store", datas))
    assert replayed == stored
    assert [e.data for e in replayed] == datas


def test_from_wire_skips_the_read_back_and_only_that(store_dir: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = store_writer._read_back

    def counted(packed: bytes) -> None:
        calls.append(len(packed))
        real(packed)

    monkeypatch.setattr(store_writer, "_read_back", counted)

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(Event(EventType.CUSTOM, aggregate_id="a", data={"n": 1}), from_wire=True)
            await store.append_batch([Event(EventType.CUSTOM, aggregate_id="a", data={"n": i}) for i in range(3)],
                                     from_wire=True)
            assert calls == []
            await store.append(Event(EventType.CUSTOM, aggregate_id="a", data={"n": 1}))
            await store.append_batch([Event(EventType.CUSTOM, aggregate_id="a", data={"n": i}) for i in range(3)])
            assert len(calls) == 2
            # The read-back's catch, without the flag: a tuple key would be written as an array and not read back.
            with pytest.raises(InvalidEvent):
                await store.append(Event(EventType.CUSTOM, aggregate_id="a", data={(1, 2): "cell"}))
            assert store.head_sequence == 8

    run(scenario())


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_a_wire_record_is_the_packers_record_byte_for_byte(codec: str, data: st.DataObject) -> None:
    """A batch from the wire is packed by msgspec: its records must be the bytes the packer writes (readers,
    and a retry's comparison with the stored copy, depend on it), and what the packer refuses msgspec must
    refuse too; a length at each size class's edge (fixstr/str8/str16, bin8/bin16, fixarray/array16...)."""
    edge = st.sampled_from([31, 32, 255, 256, 65_535, 65_536])
    sized = st.one_of(edge.map(lambda n: "s" * n), edge.map(lambda n: b"b" * n), edge.map(lambda n: [1] * n),
                      st.integers(), st.floats())
    if data.draw(st.booleans()):
        body = _decoded(data.draw(_json if codec == "json" else _msgpack), codec)
    else:  # a value a decoder gives, at a size edge, or an integer beyond 64 bits (JSON has no limit)
        body = {"v": data.draw(sized)}
    event = Event(EventType.CUSTOM, aggregate_id="wire:1", data=body)
    fields = event[:11]
    try:
        expected: bytes | None = msgpack.Packer(use_bin_type=True).pack(fields)
    except (TypeError, ValueError, OverflowError):
        expected = None
    try:
        got: bytes | None = store_writer._encode_wire_record(fields)
    except (TypeError, ValueError, OverflowError):
        got = None
    assert got == expected


def test_a_retry_from_the_wire_of_events_stored_from_python_gets_the_stored_copies(store_dir: Path, run) -> None:
    """A retry is recognised by comparing records byte for byte: events stored through the packer (appends from
    Python) and retried through the wire encoder (a request body) are the same append, not a conflict."""
    data = {"text": "x" * 300, "n": 2**40, "neg": -5, "f": 0.1, "list": [None, True, "é"], "nested": {"k": []}}

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            events = [Event(EventType.CUSTOM, event_id=f"wire-retry-{i}", aggregate_id="a", data=data)
                      for i in range(3)]
            stored = await store.append_batch(events)
            single = await store.append(Event(EventType.CUSTOM, event_id="wire-retry-one", aggregate_id="a",
                                              data=data))
            again = await store.append_batch([e.replace() for e in events], from_wire=True)
            assert again == stored and store.head_sequence == 4
            assert await store.append(single.replace(sequence=None, recorded_at=None, aggregate_version=None),
                                      from_wire=True) == single
            assert store.head_sequence == 4

    run(scenario())
