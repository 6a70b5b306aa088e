"""The suite must be able to fail: known-bad configurations and broken store variants are caught.

Each test runs a fault campaign against something that breaks a durability rule on purpose and
passes only when the checker reports the damage (the verdict is not ok and names the lost events).
Attempts per configuration are sized from measured catch rates (lowest seen: ack-before-fsync ~27%
per power cut, sqlite synchronous=OFF ~50%) so that a miss is rarer than about one in 10^5 runs;
the measured catch rate is recorded as a metric and in the chaos matrix under a ``known-bad:``
fault kind (rows where violations are the expected outcome). Smoke variants stop at the first catch.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.faults import CorruptionKind
from testkit.faults.probe import probe_shutdown_ioctl, probe_strace

from . import stores, variants
from .campaigns import CampaignResult, run_posix_crashes, run_power_cuts
from .corruption_oracle import plan_cases, run_cases
from .judging import Tally
from .logfiles import PristineLog, build_pristine_log

Campaign = Callable[..., CampaignResult]


def _report(testkit_record, label: str, attempts: int, catches: int) -> float:
    rate = catches / attempts if attempts else 0.0
    testkit_record.metric(f"sensitivity.{label}.catch_rate", rate, "ratio", direction="higher")
    return rate


@pytest.mark.parametrize(
    ("adapter", "attempts", "label"),
    [
        pytest.param(stores.lighthouse(durability="none"), 10, "lighthouse-durability-none", id="lighthouse-none"),
        pytest.param(stores.sqlite("OFF"), 20, "sqlite-synchronous-off", id="sqlite-off"),
        # Loses only the last acknowledged group, so fewer cuts land in its window (~30% per cut).
        pytest.param(stores.variant(variants.AckBeforeFsync), 30, "ack-before-fsync", id="ack-before-fsync"),
        pytest.param(stores.lighthouse(durability="none"), 12, "lighthouse-durability-none-smoke",
                     id="smoke-lighthouse-none", marks=pytest.mark.smoke),
    ],
)
def test_power_cuts_catch_lost_acknowledgements(
    adapter: AdapterSpec, attempts: int, label: str, tmp_path: Path, testkit_rng: random.Random, testkit_record,
    testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    require("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl())
    _expect_caught(run_power_cuts, "power_cut", adapter, scaled(attempts), label, tmp_path, testkit_rng,
                   testkit_record, testkit_seed, case_seed, until_caught=label.endswith("-smoke"))


@pytest.mark.parametrize(
    ("adapter", "attempts", "label"),
    [
        # ext4 commits a new file's name with the file's own fsync, so real power cuts never catch this
        # one here; the POSIX model (only a directory fsync makes a name durable) does, ~70% per crash.
        pytest.param(stores.variant(variants.SkipDirectoryFsync, segment_bytes=4096), 15, "skip-directory-fsync",
                     id="skip-directory-fsync"),
        pytest.param(stores.variant(variants.AckBeforeFsync), 15, "ack-before-fsync-posix", id="ack-before-fsync"),
        pytest.param(stores.variant(variants.SkipDirectoryFsync, segment_bytes=4096), 12, "skip-directory-fsync-smoke",
                     id="smoke-skip-directory-fsync", marks=pytest.mark.smoke),
    ],
)
def test_posix_crash_model_catches_missing_syncs(
    adapter: AdapterSpec, attempts: int, label: str, tmp_path: Path, testkit_rng: random.Random, testkit_record,
    testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    require("strace", probe_strace())
    _expect_caught(run_posix_crashes, "posix_crash", adapter, scaled(attempts), label, tmp_path, testkit_rng,
                   testkit_record, testkit_seed, case_seed, until_caught=label.endswith("-smoke"))


def _expect_caught(campaign: Campaign, fault: str, adapter: AdapterSpec, attempts: int, label: str, root: Path,
                   rng: random.Random, testkit_record, seed: int, case_seed: int, *, until_caught: bool) -> None:
    testkit_record.sut = adapter.name
    result = campaign(adapter, attempts, root, rng, case_seed, until_caught=until_caught)
    result.tally.fault_kind = f"known-bad:{label}"[:24]
    result.tally.record(testkit_record)
    result.timeline.record(testkit_record)
    attempts = len(result.new_loss)  # a campaign may add attempts until its faults were proven
    rate = _report(testkit_record, label, attempts, result.catches)
    testkit_record.expectation(fault=fault, expected_unsafe=True, caught=result.catches >= 1, attempts=attempts,
                               catches=result.catches, catch_rate=round(rate, 4), lost_acknowledged=len(result.lost_ids))
    testkit_record.fault(fault, result.tally.proven > 0, f"{result.tally.proven}/{attempts} faults proven")
    assert result.catches >= 1, (
        f"seed {seed}: {adapter.name} lost nothing the checker could see in {attempts} {fault}s; "
        f"the suite cannot tell it from a correct store")
    assert result.last is not None and not result.last.verdict.ok, f"seed {seed}: the final verdict is ok"
    named = result.last.lost_event_ids()
    assert named, f"seed {seed}: the verdict does not name the lost events: {result.last.describe()}"
    print(f"{label}: caught in {result.catches}/{attempts} {fault}s ({rate:.0%}); "
          f"{len(result.lost_ids)} acknowledged events lost, e.g. {sorted(result.lost_ids)[:3]}")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, testkit_seed: int) -> PristineLog:
    return build_pristine_log(tmp_path_factory.mktemp("sensitivity") / "pristine", seed=testkit_seed)


@pytest.mark.parametrize(
    ("store_class", "attempts"),
    [
        pytest.param(variants.TruncateAtFirstBadChecksum, 40, id="truncate-at-first-bad-checksum"),
        pytest.param(variants.TrustUnverifiedFrames, 40, id="trust-unverified-frames"),
        pytest.param(variants.TruncateAtFirstBadChecksum, 5, id="smoke-truncate", marks=pytest.mark.smoke),
    ],
)
def test_corruption_oracle_catches_broken_recovery(
    store_class: type, attempts: int, pristine: PristineLog, tmp_path: Path, testkit_rng: random.Random,
    testkit_record, testkit_seed: int, scaled,
) -> None:
    """Mid-log damage (bit flips, zeroed bytes in frames with good frames after them) against broken recovery."""
    adapter = stores.variant(store_class)
    testkit_record.sut = adapter.name
    attempts = scaled(attempts)
    cases = plan_cases(pristine, testkit_rng, attempts, every_torn_byte=False,
                       kinds=(CorruptionKind.BIT_FLIP, CorruptionKind.ZERO_RANGE), targets=("middle_frame",))
    label = store_class.__name__
    tally = Tally(f"known-bad:{label}"[:24], adapter.name)
    failures = run_cases(pristine, cases, tmp_path, adapter, tally)
    tally.record(testkit_record)
    rate = _report(testkit_record, label, tally.proven, len(failures))
    testkit_record.expectation(fault="corruption", expected_unsafe=True, caught=bool(failures), attempts=tally.proven,
                               catches=len(failures), catch_rate=round(rate, 4))
    assert failures, f"seed {testkit_seed}: {label} survived {tally.proven} mid-log corruption cases unnoticed"
    print(f"{label}: caught in {len(failures)}/{tally.proven} cases ({rate:.0%}), e.g. {failures[0][:300]}")
