"""Targeted I/O errors: an LD_PRELOAD shim fails write/fsync/fdatasync of the store's own files (EIO, ENOSPC)
or makes writes short, in a child running agent traffic.

The shim logs each injection, which proves the store really met the error; then the store must have
answered with typed errors, lost nothing it acknowledged, written nothing it refused, and taken writes
again once the injections stopped (``times``). The log is recovered in the test process, without the shim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testkit.adapters import AdapterSpec
from testkit.faults import ChildProcess, IoFault
from testkit.faults.probe import probe_gcc
from testkit.checkers.voids import check_voids_required
from testkit.faults.workload import Phase, WorkloadSpec, load_history, run_incarnation

from . import stores
from .judging import Tally, recover_and_judge

SCENARIOS: dict[str, dict[str, Any]] = {
    # A group's fdatasync fails once (fsync of a new segment is counted apart and never hit): the group
    # must not be acknowledged; the next ones may be.
    "fdatasync_eio_once": {"op": "fdatasync", "errno": "EIO", "after_calls": 15, "times": 1},
    # The fsync of a new segment (header written, before the directory fsync) fails once: rotation is refused.
    "segment_fsync_eio_once": {"op": "fsync", "errno": "EIO", "after_calls": 1, "times": 1},
    # fsync keeps failing for a while: read-only, then back by itself.
    "fsync_eio_burst": {"op": ("fsync", "fdatasync"), "errno": "EIO", "after_calls": 10, "times": 6},
    "write_eio": {"op": ("write", "pwrite", "writev"), "errno": "EIO", "after_calls": 40, "times": 3},
    # Like a disk filling up: the write crossing the boundary is cut short, the next ones fail.
    "write_enospc_after_bytes": {"op": ("write", "pwrite", "writev"), "errno": "ENOSPC", "after_bytes": 48 * 1024,
                                 "times": 5},
    # Short writes, no error at all: a store must finish each write (or refuse it), never leave half a frame.
    "short_writes": {"op": ("write", "pwrite", "writev"), "mode": "short", "after_calls": 5},
}
#: Scenarios aimed at a call only lighthouse makes (fsync of a freshly created segment file).
LIGHTHOUSE_ONLY = {"segment_fsync_eio_once"}
TARGET = {"lighthouse": ".seg", "sqlite": "events.db"}
RESUME_ACKS = 10
ADAPTERS = {
    # 16 KiB segments: several rotations (new file, header write, directory fsync) inside the faulty phase.
    "lighthouse": stores.lighthouse(probe_interval=0.05, segment_bytes=16 * 1024),
    "sqlite": stores.sqlite(),
}


def _marks(sut: str, scenario: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.smoke] if scenario == "fdatasync_eio_once" else []


@pytest.mark.parametrize(("adapter", "scenario"), [
    pytest.param(ADAPTERS[sut], scenario, id=f"{sut}-{scenario}", marks=_marks(sut, scenario))
    for scenario in SCENARIOS for sut in ADAPTERS if sut == "lighthouse" or scenario not in LIGHTHOUSE_ONLY
])
def test_io_errors_on_the_stores_files(adapter: AdapterSpec, scenario: str, tmp_path: Path, testkit_record,
                                       testkit_seed: int, case_seed: int, require) -> None:
    require("LD_PRELOAD shim (gcc)", probe_gcc())
    testkit_record.sut = adapter.name
    sut = "lighthouse" if stores.is_lighthouse(adapter) else "sqlite"
    spec = WorkloadSpec(adapter, str(tmp_path / "data"), str(tmp_path / "journal"), seed=case_seed, clients=3,
                        phases=(Phase(name="faulty", ops_per_client=60),
                                Phase(name="after", seconds=20.0, until_acks=RESUME_ACKS)))
    Path(spec.journal_dir).mkdir()
    with IoFault(TARGET[sut], **SCENARIOS[scenario]) as fault:
        with ChildProcess.python(run_incarnation, (spec, 0), env=fault.child_env()) as child:
            outcome = child.outcome(timeout=120.0)
    record = fault.record
    assert record is not None
    testkit_record.fault(record.kind, record.proven, record.detail, (record.t_start, record.t_end))
    result = outcome.value
    assert outcome.returncode == 0 and result and result["opened"], (
        f"seed {testkit_seed}: worker failed ({outcome.returncode}): {outcome.error or result}")
    tally = Tally(f"io_{scenario}"[:24], adapter.name)
    tally.case(record.proven)
    faulty, after = result["phases"]
    problems: list[str] = []
    untyped = {k: v for phase in result["phases"] for k, v in phase["untyped"].items()}
    tally.violated("typed_errors", 1 if untyped else 0)
    if untyped:
        problems.append(f"untyped errors {untyped}: {faulty['untyped_examples'][:3]}")
    tally.violated("recovers", 0 if after["ok"] >= RESUME_ACKS else 1)
    if after["ok"] < RESUME_ACKS:
        problems.append(f"writes did not resume after the injections stopped: {after}")
    judgement, recovered, damage = recover_and_judge(spec.adapter, spec.data_dir, spec.journal_dir)
    tally.add(judgement)
    unvoided = check_voids_required(load_history(spec.journal_dir), recovered.voided_ranges(), recovered.events)
    tally.violated("prefix_no_holes", len(unvoided))
    problems.extend(unvoided)
    if damage:
        tally.violated("recovers")
        problems.append(f"the log is damaged after the I/O errors: {damage[:3]}")
    if not judgement.ok:
        problems.append(judgement.describe())
    tally.record(testkit_record)
    testkit_record.parameters.update(injections=record.evidence.get("injections"), refused=faulty["errors"])
    assert record.proven, f"seed {testkit_seed}: the shim never injected: {record.detail}"
    aimed = set(SCENARIOS[scenario]["op"]) if isinstance(SCENARIOS[scenario]["op"], tuple) else {
        SCENARIOS[scenario]["op"]}
    hit = set(record.evidence["by_op"])
    assert hit <= aimed, f"seed {testkit_seed}: aimed at {sorted(aimed)}, the shim hit {sorted(hit)}"
    assert not problems, f"seed {testkit_seed}: {adapter.name} under {scenario}:\n" + "\n".join(problems)
