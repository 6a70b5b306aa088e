"""Stores that kill their reader (LMDB's SIGBUS on a truncated map): a failing check with the signal, never a dead run."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from suites.unit.testkit.dying_reader import kill_self, refuse_typed
from testkit.adapters import AdapterError, AdapterSpec
from testkit.chaos.crashes import run_kill_cycles
from testkit.chaos.judging import recover_and_judge
from testkit.chaos.reader_process import ReaderDied, ReaderProcess
from testkit.faults.workload import Phase, WorkloadSpec, load_history, run_incarnation

pytestmark = pytest.mark.ci

DYING = AdapterSpec("read-kills-itself", "suites.unit.testkit.dying_reader:ReadKillsItself")


@pytest.mark.parametrize("signal_name", ["SIGBUS", "SIGSEGV"])
def test_a_reader_killed_by_a_signal_is_named_and_replaced(signal_name: str) -> None:
    with ReaderProcess() as reader:
        with pytest.raises(ReaderDied, match=f"killed by {signal_name}"):
            reader.call(kill_self, signal_name)
        child = reader.call(os.getpid)  # the next call gets a new child
        assert child != os.getpid() and reader.call(os.getpid) == child


def test_a_typed_refusal_comes_back_typed() -> None:
    with ReaderProcess() as reader, pytest.raises(AdapterError) as refused:
        reader.call(refuse_typed, "store_corrupted")
    assert refused.value.code == "store_corrupted"


def test_a_hung_reader_is_killed_at_the_timeout() -> None:
    with ReaderProcess(timeout_s=0.5) as reader:
        with pytest.raises(ReaderDied, match="no answer within"):
            reader.call(kill_self, "SIGSTOP")  # stopped, never answers
        reader.timeout_s = 120.0  # the next call starts a fresh child: on a loaded machine that takes seconds
        assert reader.call(os.getpid) != os.getpid()


@pytest.fixture
def importable_only_by_its_root(tmp_path: Path) -> Iterator[ModuleType]:
    """A module imported the way pytest's importlib mode imports test helpers: by file, with no sys.path entry."""
    (tmp_path / "s19_variant_store.py").write_text("import os\n\ndef where():\n    return os.getpid()\n")
    spec = importlib.util.spec_from_file_location("s19_variant_store", tmp_path / "s19_variant_store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["s19_variant_store"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["s19_variant_store"]


def test_a_module_known_only_by_its_file_is_importable_in_the_child(importable_only_by_its_root: ModuleType) -> None:
    with ReaderProcess(["s19_variant_store"]) as reader:
        assert reader.call(importable_only_by_its_root.where) != os.getpid()
    # The child cannot unpickle the call and exits with 1; under the forkserver start method its status can
    # also read as 255 (the parent lost the forkserver's report of it), so any non-zero status is the answer.
    with ReaderProcess() as reader, pytest.raises(ReaderDied, match=r"exited with status [1-9]"):
        reader.call(importable_only_by_its_root.where)


@pytest.mark.parametrize(("adapter", "kind", "named"), [
    (DYING, "reader_died", "killed by SIGBUS"),
    (AdapterSpec("read-raises", "suites.unit.testkit.dying_reader:ReadRaises"), "recovery_failed",
     "store_corrupted: damaged database")])
def test_the_judge_survives_a_store_that_kills_its_reader_or_raises(tmp_path: Path, adapter: AdapterSpec, kind: str,
                                                                     named: str) -> None:
    spec = WorkloadSpec(adapter, str(tmp_path / "data"), str(tmp_path / "journal"), seed=3, clients=2,
                        phases=(Phase(ops_per_client=5),))
    Path(spec.journal_dir).mkdir()
    run_incarnation(spec, 0)  # appends only: nothing reads
    acknowledged = load_history(spec.journal_dir).status_counts()["ok"]
    assert acknowledged == 10
    judgement, recovered, damage = recover_and_judge(spec.adapter, spec.data_dir, spec.journal_dir)
    assert [d["kind"] for d in damage] == [kind]
    assert named in damage[0]["detail"]
    assert not judgement.ok and recovered.events == []
    assert len(judgement.lost_event_ids()) >= acknowledged  # nothing readable: every acknowledged event is gone


def test_an_untyped_error_or_a_reader_that_exits_is_a_harness_failure_never_a_caught_loss(tmp_path: Path) -> None:
    """Counted as "every acknowledged event lost", a harness bug would pass as an unsafe configuration caught."""
    spec = WorkloadSpec(AdapterSpec("read-raises", "suites.unit.testkit.dying_reader:ReadRaises", {"typed": False}),
                        str(tmp_path / "data"), str(tmp_path / "journal"), seed=3, clients=1,
                        phases=(Phase(ops_per_client=2),))
    Path(spec.journal_dir).mkdir()
    run_incarnation(spec, 0)
    with pytest.raises(Exception, match="unpack requires"):
        recover_and_judge(spec.adapter, spec.data_dir, spec.journal_dir)
    with ReaderProcess() as reader, pytest.raises(ReaderDied, match="exited with status"):
        recover_and_judge(AdapterSpec("exits", "suites.unit.testkit.dying_reader:ExitsOnRead"), spec.data_dir,
                          spec.journal_dir, reader=reader)


def test_a_crash_campaign_reports_the_dead_reader_and_goes_on(tmp_path: Path) -> None:
    result = run_kill_cycles(DYING, 12, tmp_path, random.Random(4), 4)
    assert result.tally.cases == 12
    dead = [f for f in result.failures if "reader_died" in f]
    assert len(dead) == 2 and "killed by SIGBUS" in dead[0]  # judged after cycles 10 and 12, both survived
    assert result.tally.violations.get("recovers") == 2
