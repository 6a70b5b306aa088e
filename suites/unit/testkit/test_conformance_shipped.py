"""Every adapter the kit ships keeps every conformance rule (each skips, saying why, without its package)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from testkit.adapters.factory import available_adapters
from testkit.chaos.sut import load_factory
from testkit.adapters.shipped import SHIPPED
from testkit.conformance import run_conformance

pytestmark = pytest.mark.ci

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None  # conformance judges behaviour, not fsync
#: Random programs per adapter: a server start per example makes PostgreSQL the costly one.
EXAMPLES = {"postgres": 4, "postgres-sync-off": 3, "postgres-fsync-off": 3}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_adapter_keeps_every_rule(name: str, testkit_seed: int) -> None:
    shipped = SHIPPED[name]
    missing = shipped.missing()
    if missing:
        pytest.skip(f"{name}: {missing}")
    report = run_conformance(load_factory(shipped.factory), seed=testkit_seed, max_examples=EXAMPLES.get(name, 8),
                             workdir=SHM)
    assert report.passed, report.describe()
    assert report.examples >= EXAMPLES.get(name, 8)


@pytest.mark.parametrize("spec", available_adapters(), ids=lambda spec: spec.name)
def test_in_house_adapter_keeps_every_rule(spec, testkit_seed: int) -> None:
    factory = functools.partial(load_factory(spec.factory), **spec.options)
    report = run_conformance(factory, seed=testkit_seed, max_examples=6, workdir=SHM)
    assert report.passed, report.describe()


def test_entry_points_name_the_shipped_adapters() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    registered = pyproject["project"]["entry-points"]["testkit.adapters"]
    assert {name: shipped.factory for name, shipped in SHIPPED.items()}.items() <= registered.items()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_expected_losses_follow_the_documented_contracts(name: str, tmp_path: Path) -> None:
    shipped = SHIPPED[name]
    if shipped.missing():
        pytest.skip(f"{name}: {shipped.missing()}")
    adapter = load_factory(shipped.factory)(tmp_path)
    unsafe = {"postgres-sync-off", "postgres-fsync-off", "lmdb-nosync", "sqlite-normal", "sqlite-off"}
    power_loss = frozenset({"power_cut", "posix_crash"}) if name in unsafe else frozenset()
    # Only an asynchronous commit is documented to lose acknowledged writes when the database process dies.
    process_crash = frozenset({"sigkill"}) if name == "postgres-sync-off" else frozenset()
    assert adapter.expected_loss == power_loss | process_crash
