"""Adapter registration: references, options, expectations, capabilities, and the pytest options and hook."""

from __future__ import annotations

import json
import os

import pytest

from testkit.chaos.capabilities import Capabilities, Footprint, capabilities_of
from testkit.chaos.registry import parse_options, system_from_arguments
from testkit.chaos.sut import SystemUnderTest, load_factory

pytest_plugins = ["pytester"]


def test_options_are_literals_and_expected_loss_is_an_expectation_not_an_option() -> None:
    options, expected = parse_options(["synchronous=OFF", "segment_bytes=4096", "sync=False",
                                       "expected_loss=power_cut,posix_crash"])
    assert options == {"synchronous": "OFF", "segment_bytes": 4096, "sync": False}
    assert expected == {"power_cut", "posix_crash"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["novalue"])


def test_a_reference_builds_a_named_system_with_declared_and_given_expectations() -> None:
    system = system_from_arguments("testkit.adapters.sqlite:SqliteAdapter",
                                   ["synchronous=NORMAL", "expected_loss=power_cut"])
    assert system.spec.options == {"synchronous": "NORMAL"}
    assert system.name == "SqliteAdapter[synchronous=NORMAL]"
    assert system.expects_loss("power_cut") and not system.expects_loss("sigkill")
    assert system.expects_loss("corruption")  # declared by the SQLite adapter: no page checksums
    assert system.capabilities.io_target == "events.db"


@pytest.mark.parametrize(("reference", "message"), [
    ("no_colon", "PKG.MODULE:FACTORY"),
    ("no_such_module_xyz:F", "cannot import"),
    ("testkit.adapters.sqlite:Nope", "has no 'Nope'"),
])
def test_bad_references_say_what_is_wrong(reference: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_factory(reference)


def test_capabilities_from_a_dict_and_unknown_faults_refused() -> None:
    class Factory:
        testkit_capabilities = {"crash_points": ["a"], "expected_loss": ["power_cut"], "file_based": False}

    caps = capabilities_of(Factory)
    assert caps == Capabilities(file_based=False, crash_points=("a",), expected_loss=frozenset({"power_cut"}))
    assert capabilities_of(object) == Capabilities()

    class Server:
        testkit_capabilities = {"footprint": {"mib": 32, "files": 1100}}

    assert capabilities_of(Server).footprint == Footprint(mib=32, files=1100)
    with pytest.raises(ValueError, match="unknown faults"):
        Capabilities(expected_loss=frozenset({"meteor"}))


def test_lighthouse_offers_crash_points_and_its_oracle() -> None:
    system = SystemUnderTest.from_reference("testkit.adapters.lighthouse:LighthouseAdapter")
    spec = system.crash_point_spec()
    assert spec is not None and spec.factory.endswith(":crash_point_adapter")
    assert "before_sync" in system.capabilities.crash_points
    assert system.capabilities.corruption_oracle and not system.capabilities.expected_loss


def test_store_adapter_is_parametrised_over_the_option_hook_and_results_name_the_sut(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_x="""
        def test_sut(store_adapter, system_under_test):
            assert store_adapter.name.startswith("sqlite")
    """)
    result = pytester.runpytest_subprocess("--testkit-adapter", "testkit.adapters.sqlite:SqliteAdapter",
                                           "--testkit-option", "synchronous=NORMAL", "--testkit-results", "out",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    assert [t["sut"] for t in document["tests"]] == ["sqlite[synchronous=NORMAL]"]


def test_the_hook_registers_systems_when_no_adapter_is_named(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        from testkit.chaos.sut import SystemUnderTest

        def pytest_testkit_adapters(config):
            return [SystemUnderTest.from_reference("testkit.adapters.sqlite:SqliteAdapter", name="peer-a"),
                    SystemUnderTest.from_reference("testkit.adapters.sqlite:SqliteAdapter", {"synchronous": "OFF"},
                                                   name="peer-b")]
    """)
    pytester.makepyfile(test_y="""
        def test_sut(system_under_test):
            assert system_under_test.name in ("peer-a", "peer-b")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_sut?peer-a?*PASSED*", "*test_sut?peer-b?*PASSED*"])


def test_an_installed_distribution_registers_adapters_through_entry_points(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``[project.entry-points."testkit.adapters"]``: found without any option or hook."""
    info = pytester.path / "site" / "peer_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: peer-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[testkit.adapters]\nsqlite-peer = testkit.adapters.sqlite:SqliteAdapter\n")
    pytester.makepyfile(test_z="""
        def test_sut(system_under_test):
            assert system_under_test.name == "sqlite-peer"
    """)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path / "site"), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_name_that_is_no_registered_entry_point_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="one of the registered names"):
        system_from_arguments("no-such-adapter-name")


def test_postgres_fsync_off_leaves_its_expected_loss_to_the_power_cut_not_the_posix_model() -> None:
    """fsync=off loses unsynced WAL overwrites, which the POSIX crash model keeps: the shipped test skips it."""
    pytest.importorskip("psycopg")
    fsync_off = SystemUnderTest.from_reference("testkit.adapters.postgres:postgres_fsync_off")
    sync_off = SystemUnderTest.from_reference("testkit.adapters.postgres:postgres_sync_off")
    assert fsync_off.capabilities.unsynced_overwrites and fsync_off.capabilities.footprint.mib >= 27
    assert fsync_off.expects_loss("power_cut") and fsync_off.expects_loss("posix_crash")
    assert not fsync_off.expects_loss("sigkill")  # so test_posix_crash_model skips it with the reason
    assert sync_off.expects_loss("sigkill")  # a SIGKILL alone loses its commits: the posix test still runs
