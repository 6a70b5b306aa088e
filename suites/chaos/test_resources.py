"""Resource exhaustion in a child: no file descriptor to spare, little memory, files capped in size.

The worker appends agent traffic in three phases: before, under the limit, after. The limit is
lowered (in the worker only: a lowered hard limit can never be raised again) relative to what the
worker uses at that moment, and proven by a self-probe (EMFILE, MemoryError, EFBIG) before the phase
runs. The store must answer with typed errors, corrupt nothing, lose nothing acknowledged, and take
writes again once the limit is lifted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.faults import Limits
from testkit.faults.workload import Phase, WorkloadServer, WorkloadSpec

from . import stores, variants
from .judging import Tally, recover_and_judge

MIB = 1024 * 1024
PRESSURE = {
    # Not one descriptor to spare: lighthouse rotates every 4 KiB here, so it must open new segments.
    "rlimit_nofile": Phase(name="pressure", ops_per_client=15, headroom=Limits(nofile=1)),
    # No address space to spare while events of 400-900 KB arrive (each needs fresh mappings).
    "rlimit_as": Phase(name="pressure", ops_per_client=6, headroom=Limits(address_space=1),
                       payload_min_bytes=400_000, payload_max_bytes=900_000),
    # Segment files may grow 16 KiB more, then writes meet a short write and EFBIG.
    "rlimit_fsize": Phase(name="pressure", ops_per_client=15, headroom=Limits(file_size=16 * 1024)),
}
def _adapter(limit: str, name: str) -> AdapterSpec:
    if name == "sqlite":
        return stores.sqlite()
    # Small segments make rotations (new descriptors) frequent; file-size limits need one big segment.
    return stores.lighthouse(probe_interval=0.05, segment_bytes=4096 if limit != "rlimit_fsize" else 64 * MIB)


def _marks(limit: str, name: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.smoke] if limit == "rlimit_fsize" else []


CASES = [
    pytest.param(limit, _adapter(limit, name), id=f"{name}-{limit}", marks=_marks(limit, name))
    for limit in PRESSURE for name in ("lighthouse", "sqlite")
]
RESUME_ACKS = 10


@pytest.mark.parametrize(("limit", "adapter"), CASES)
def test_resource_exhaustion_in_a_child(adapter: AdapterSpec, limit: str, tmp_path: Path, testkit_record,
                                        testkit_seed: int, case_seed: int) -> None:
    testkit_record.sut = adapter.name
    phases = (Phase(name="before", ops_per_client=8), PRESSURE[limit],
              Phase(name="after", seconds=20.0, until_acks=RESUME_ACKS))
    spec = WorkloadSpec(adapter, str(tmp_path / "data"), str(tmp_path / "journal"), seed=case_seed, clients=2,
                        phases=phases)
    with WorkloadServer(spec, preload=[variants.__name__]) as server:
        worker = server.spawn(0)
        code = server.join(worker, timeout=120.0)
        result = server.result(worker)
    assert code == 0 and result is not None and result["opened"], (
        f"seed {testkit_seed}: the worker failed (exit {code}): {result}")
    before, pressure, after = result["phases"]
    proofs = pressure["limit_records"]
    tally = Tally(limit, adapter.name)
    tally.case(bool(proofs) and all(r["proven"] for r in proofs))
    for record in proofs:
        testkit_record.fault(record["kind"], record["proven"], record["detail"], (record["t_start"], record["t_end"]))
    problems: list[str] = []
    untyped = {k: v for phase in result["phases"] for k, v in phase["untyped"].items()}
    tally.violated("typed_errors", 1 if untyped else 0)
    if untyped:
        problems.append(f"untyped errors {untyped}: {[e for p in result['phases'] for e in p['untyped_examples']][:3]}")
    tally.violated("recovers", 0 if after["ok"] >= RESUME_ACKS else 1)
    if after["ok"] < RESUME_ACKS:
        problems.append(f"writes did not resume after the limit was lifted: {after}")
    judgement, _, damage = recover_and_judge(spec.adapter, spec.data_dir, spec.journal_dir)
    tally.add(judgement)
    if damage:
        tally.violated("recovers")
        problems.append(f"the log is damaged after the pressure: {damage[:3]}")
    if not judgement.ok:
        problems.append(judgement.describe())
    tally.record(testkit_record)
    testkit_record.parameters.update(refused_under_pressure=pressure["errors"], acked_under_pressure=pressure["ok"],
                                     harness_errors=pressure["harness_errors"])
    assert tally.proven, f"seed {testkit_seed}: {limit} not proven: {proofs}"
    assert not problems, f"seed {testkit_seed}: {adapter.name} under {limit}:\n" + "\n".join(problems)
