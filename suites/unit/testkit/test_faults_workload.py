"""The workload driver: a forked worker journals every write, survives SIGKILL, and a phase's limits bite."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.checkers import check_durability
from testkit.checkers.history import OK, History
from testkit.faults import InvalidFaultSpec, Limits
from testkit.faults.workload import JOURNAL_NAME, Phase, WorkloadServer, WorkloadSpec, load_history, recover

SQLITE = AdapterSpec("sqlite", "testkit.adapters.sqlite:SqliteAdapter")


def _spec(tmp_path: Path, **changes: object) -> WorkloadSpec:
    options: dict[str, object] = {"clients": 2, **changes}
    return WorkloadSpec(SQLITE, str(tmp_path / "data"), str(tmp_path / "journal"), seed=7, **options)  # type: ignore[arg-type]


def _wait_for_acks(journal_dir: str, deadline_s: float = 30.0) -> None:
    """Poll (with a deadline) until the worker has journalled a few outcomes."""
    end = time.monotonic() + deadline_s
    while load_history(journal_dir).status_counts()["ok"] < 5:
        assert time.monotonic() < end, "the worker acknowledged nothing"
        time.sleep(0.01)


def test_a_finished_worker_reports_its_phases_and_its_journal_matches_the_store(tmp_path: Path) -> None:
    spec = _spec(tmp_path, phases=(Phase(name="only", ops_per_client=10),))
    with WorkloadServer(spec) as server:
        worker = server.spawn(0)
        assert server.join(worker, timeout=60) == 0
        result = server.result(worker)
    assert result is not None and result["opened"]
    (phase,) = result["phases"]
    assert phase["name"] == "only" and phase["ok"] == 20 and not phase["untyped"]
    history = load_history(spec.journal_dir)
    assert history.status_counts()["ok"] == 20
    verdict = check_durability(history, recover(spec.adapter, spec.data_dir).events)
    assert verdict.ok, verdict.summary()


def test_kill9_is_proven_and_the_journal_survives_it(tmp_path: Path) -> None:
    spec = _spec(tmp_path)  # runs until killed
    with WorkloadServer(spec) as server:
        worker = server.spawn(0)
        assert server.wait_opened(worker) is not None
        _wait_for_acks(spec.journal_dir)
        record = server.kill9(worker)
    assert record.proven and record.evidence["returncode"] == -signal.SIGKILL
    history = load_history(spec.journal_dir)
    assert history.status_counts()["ok"] >= 5  # journalled before the kill; calls in flight became unknown
    verdict = check_durability(history, recover(spec.adapter, spec.data_dir).events)
    assert verdict.ok, verdict.summary()


def test_wait_acknowledged_returns_after_the_first_acknowledged_write_and_false_for_a_worker_that_ended(
        tmp_path: Path) -> None:
    spec = _spec(tmp_path)  # runs until killed
    (tmp_path / "not-a-dir").write_text("")
    with WorkloadServer(spec) as server:
        worker = server.spawn(0)
        assert server.wait_acknowledged(worker, timeout=30.0)
        assert load_history(spec.journal_dir).status_counts()["ok"] >= 1  # returned only once a write was acked
        assert server.kill9(worker).proven
        writing = server.spawn(2)
        assert server.wait_writing(writing) is not None  # its open report, returned once it also acked a write
        assert OK in bytes(History.load(Path(spec.journal_dir) / JOURNAL_NAME.format(2)).columns().status)
        assert server.kill9(writing).proven
        unopenable = server.spawn(1, spec.replace(data_dir=str(tmp_path / "not-a-dir" / "data")))
        assert server.wait_opened(unopenable) is None  # it ended without opening
        assert not server.wait_acknowledged(unopenable, timeout=30.0)
        assert server.wait_writing(unopenable) is None
        server.join(unopenable)


def test_a_phase_under_a_descriptor_limit_proves_the_limit_then_gives_it_back(tmp_path: Path) -> None:
    spec = _spec(tmp_path, phases=(Phase(name="tight", ops_per_client=3, headroom=Limits(nofile=1)),
                                   Phase(name="after", ops_per_client=3)))
    with WorkloadServer(spec) as server:
        worker = server.spawn(0)
        assert server.join(worker, timeout=60) == 0
        result = server.result(worker)
    assert result is not None
    tight, after = result["phases"]
    (proof,) = tight["limit_records"]
    assert proof["kind"] == "rlimit_nofile" and proof["proven"]
    assert after["ok"] == 6


def test_bad_specs_are_refused_with_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidFaultSpec):
        _spec(tmp_path, clients=0)
    with pytest.raises(InvalidFaultSpec):
        Phase(headroom=Limits(nofile=1))  # limits need a known number of writes
    with pytest.raises(InvalidFaultSpec):
        _spec(tmp_path, phases=())
