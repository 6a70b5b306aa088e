"""LMDB after a failed meta page write: the commit is refused (typed), MDB_PANIC reopens the environment, writes resume."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from testkit.adapters import AdapterError
from testkit.faults import ChildProcess, IoFault
from testkit.faults.probe import probe_gcc

pytestmark = [pytest.mark.ci,
              pytest.mark.skipif(importlib.util.find_spec("lmdb") is None, reason="lmdb is not installed (extra [lmdb])")]


def _event(number: int) -> dict[str, Any]:
    return {"event_id": f"e-{number}", "event_type": "t", "aggregate_id": "a", "data": {"n": number}}


async def _append_through_a_failed_meta_write(directory: str) -> dict[str, Any]:
    from testkit.adapters.lmdb_log import lmdb_default

    store = lmdb_default(directory)
    await store.open()
    acked, refused = [], []
    try:
        for number in range(40):
            try:
                await store.append(_event(number))
                acked.append(f"e-{number}")
            except AdapterError as exc:
                refused.append(exc.code)
        read = [event.event_id async for event in store.read_all()]
        return {"acked": acked, "refused": refused, "read": read, "reopened": store.reopened_after_panic}
    finally:
        await store.close()


def append_through_a_failed_meta_write(directory: str) -> dict[str, Any]:
    return asyncio.run(_append_through_a_failed_meta_write(directory))


def test_a_panicked_environment_is_reopened_and_takes_writes_again(tmp_path: Path) -> None:
    available = probe_gcc()
    if not available:
        pytest.skip(f"LD_PRELOAD shim (gcc) unavailable: {available.reason}")
    # The 11th pwrite of data.mdb is the meta page write of the fifth commit (a new environment writes its meta
    # pages once, then each of these commits a data page and its meta page); only a failed meta write panics.
    with IoFault("data.mdb", op="pwrite", errno="EIO", after_calls=10, times=1) as fault:
        with ChildProcess.python(append_through_a_failed_meta_write, (str(tmp_path / "db"),),
                                 env=fault.child_env()) as child:
            outcome = child.outcome(timeout=60.0)
        record = fault.prove()
    assert outcome.error is None, outcome.error
    result = outcome.value
    assert record.proven and record.evidence["by_op"] == {"pwrite": 1}, record.detail
    assert result["refused"] == ["write_failed"]  # the commit whose meta write failed, typed
    assert result["reopened"] == 1  # MDB_PANIC on the next transaction: closed and opened again
    assert len(result["acked"]) == 39 and result["read"] == result["acked"]  # writes resumed, nothing lost
