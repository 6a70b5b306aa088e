"""A SIGKILL campaign with index checkpoints: recovery from the checkpoint + tail equals a full scan.

Campaign: :func:`testkit.chaos.lighthouse_checkpoints.run_checkpoint_kills` (its docstring says how).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.chaos.lighthouse_checkpoints import run_checkpoint_kills


@pytest.mark.parametrize(
    "default_rounds", [pytest.param(4, id="smoke", marks=pytest.mark.smoke), pytest.param(30, id="campaign")]
)
def test_checkpoints_written_during_sigkills_recover_what_a_full_scan_recovers(
    default_rounds: int, tmp_path: Path, testkit_rng: random.Random, scaled
) -> None:
    kills = run_checkpoint_kills(tmp_path, scaled(default_rounds), testkit_rng)
    print(f"{kills.compared}/{kills.rounds} rounds compared, {kills.with_tail} from a checkpoint plus a tail")
