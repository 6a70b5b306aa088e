"""The suite must be able to fail: known-unsafe configurations and broken store variants are caught.

Each configuration here declares the faults it is expected to lose acknowledged writes under (see
:mod:`stores`), and :func:`testkit.chaos.settle` passes it only when the checker catches a loss.
Attempts per configuration are sized from measured catch rates (lowest seen: lighthouse durability=none
~15% per power cut on a loaded machine, ack-before-fsync ~27%, sqlite synchronous=OFF ~50%) so that a
miss is rare; the measured catch rate is recorded as a metric, as the test's ``expectations``, and in
the chaos matrix under a ``known-bad:`` fault kind. Smoke variants stop at the first catch.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.chaos import CampaignResult, SystemUnderTest, run_posix_crashes, run_power_cuts, settle
from testkit.chaos.lighthouse_log import PristineLog, build_pristine_log
from testkit.chaos.lighthouse_oracle import plan_cases, run_cases
from testkit.faults import CorruptionKind
from testkit.faults.probe import probe_shutdown_ioctl, probe_strace

from . import stores, variants

POWER = frozenset({"power_cut", "posix_crash"})
CORRUPTION = frozenset({"corruption"})


@pytest.mark.parametrize(
    ("system", "attempts", "label"),
    [
        # ~15-30% per cut on a loaded machine (the page cache is often written back before the cut).
        pytest.param(stores.lighthouse(durability="none"), 25, "lighthouse-durability-none", id="lighthouse-none"),
        pytest.param(stores.sqlite("OFF"), 20, "sqlite-synchronous-off", id="sqlite-off"),
        # Loses only the last acknowledged group, so fewer cuts land in its window (~30% per cut).
        pytest.param(stores.variant(variants.AckBeforeFsync, POWER), 30, "ack-before-fsync", id="ack-before-fsync"),
        pytest.param(stores.lighthouse(durability="none"), 40, "lighthouse-durability-none-smoke",
                     id="smoke-lighthouse-none", marks=pytest.mark.smoke),
    ],
)
def test_power_cuts_catch_lost_acknowledgements(
    system: SystemUnderTest, attempts: int, label: str, tmp_path: Path, testkit_rng: random.Random, testkit_record,
    testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    require("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl())
    _expect_caught(run_power_cuts, "power_cut", system, scaled(attempts), label, tmp_path, testkit_rng,
                   testkit_record, testkit_seed, case_seed)


@pytest.mark.parametrize(
    ("system", "attempts", "label"),
    [
        # ext4 commits a new file's name with the file's own fsync, so real power cuts never catch this
        # one here; the POSIX model (only a directory fsync makes a name durable) does, ~70% per crash.
        pytest.param(stores.variant(variants.SkipDirectoryFsync, POWER, segment_bytes=4096), 15,
                     "skip-directory-fsync", id="skip-directory-fsync"),
        pytest.param(stores.variant(variants.AckBeforeFsync, POWER), 15, "ack-before-fsync-posix",
                     id="ack-before-fsync"),
        pytest.param(stores.variant(variants.SkipDirectoryFsync, POWER, segment_bytes=4096), 12,
                     "skip-directory-fsync-smoke", id="smoke-skip-directory-fsync", marks=pytest.mark.smoke),
    ],
)
def test_posix_crash_model_catches_missing_syncs(
    system: SystemUnderTest, attempts: int, label: str, tmp_path: Path, testkit_rng: random.Random, testkit_record,
    testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    require("strace", probe_strace())
    _expect_caught(run_posix_crashes, "posix_crash", system, scaled(attempts), label, tmp_path, testkit_rng,
                   testkit_record, testkit_seed, case_seed)


def _expect_caught(campaign: Callable[..., CampaignResult], fault: str, system: SystemUnderTest, attempts: int,
                   label: str, root: Path, rng: random.Random, testkit_record, seed: int, case_seed: int) -> None:
    """Run until caught (smoke) or all attempts (catch rate); the configuration must be caught."""
    testkit_record.sut = system.name
    result = campaign(system.spec, attempts, root, rng, case_seed, until_caught=label.endswith("-smoke"))
    testkit_record.fault(fault, result.tally.proven > 0, f"{result.tally.proven}/{result.attempts} proven")
    settle(result, testkit_record, fault=fault, expected_unsafe=system.expects_loss(fault), seed=seed, label=label,
           min_proven=0.0)


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
    system = stores.variant(store_class, CORRUPTION)
    testkit_record.sut = system.name
    cases = plan_cases(pristine, testkit_rng, scaled(attempts), every_torn_byte=False,
                       kinds=(CorruptionKind.BIT_FLIP, CorruptionKind.ZERO_RANGE), targets=("middle_frame",))
    result = run_cases(pristine, cases, tmp_path, system.spec)
    settle(result, testkit_record, fault="corruption", expected_unsafe=system.expects_loss("corruption"),
           seed=testkit_seed, label=store_class.__name__, min_proven=0.0)
