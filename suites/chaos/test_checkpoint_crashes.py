"""A SIGKILL campaign with index checkpoints: recovery from the checkpoint + tail equals a full scan.

A child appends (batches, concurrent singles, rotations) with a checkpoint every few dozen events
and is SIGKILLed at a random moment, possibly in the middle of writing a checkpoint or a group.
After each kill the log is opened twice, once with the checkpoint it left and once without any:
both must rebuild the same index, ids, versions, voids and damage record. The next round's child
then continues the same log from where the kill left it (recovering through its checkpoint).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from lighthouse.checkpoint import CHECKPOINT_NAME
from testkit.aio import run_with_deadline
from testkit.faults.process import ChildProcess, kill_at_random

from suites.chaos.recovered import CountingStore, append_until_killed, recovered_state


@pytest.mark.parametrize(
    "default_rounds", [pytest.param(4, id="smoke", marks=pytest.mark.smoke), pytest.param(30, id="campaign")]
)
def test_checkpoints_written_during_sigkills_recover_what_a_full_scan_recovers(
    default_rounds: int, tmp_path: Path, testkit_rng: random.Random, scaled
) -> None:
    async def open_state(path: Path) -> tuple[dict, dict, int]:
        async with CountingStore(path, checkpoint_every=0) as store:
            return await recovered_state(store), dict(store.health().details["checkpoint"]), store.indexed_frames

    def copy(name: str) -> Path:
        return Path(shutil.copytree(log, tmp_path / name, ignore=shutil.ignore_patterns("LOCK")))

    log = tmp_path / "log"
    with_tail = 0
    for round_ in range(scaled(default_rounds)):
        args = (str(log), testkit_rng.randint(10, 150), testkit_rng.choice([8192, 65536, 1 << 20]), testkit_rng.randrange(1 << 30))
        with ChildProcess.python(append_until_killed, args) as child:
            kill = kill_at_random(child, testkit_rng, (1.5, 4.0))  # python starts slowly on a busy machine
            assert kill.proven, f"round {round_}: {kill.detail}\n{child.stderr_text()}\n{child.outcome(5)}"
        if not (log / CHECKPOINT_NAME).exists():
            continue  # killed before its first checkpoint: nothing to compare this round
        full = copy(f"full-{round_}")
        (full / CHECKPOINT_NAME).unlink()
        expected, _, _ = run_with_deadline(open_state(full), 120)
        state, report, indexed_frames = run_with_deadline(open_state(copy(f"ckpt-{round_}")), 120)
        assert state == expected, f"round {round_}: checkpoint + tail recovered a different state ({report})"
        if report.get("loaded_rows") and indexed_frames:
            with_tail += 1
    assert with_tail >= 1, "no round recovered from a checkpoint plus a tail: the campaign proved nothing"
