"""The plugin works in a throwaway project that installs testkit and has no lighthouse."""

from __future__ import annotations

import json
import re

import pytest

pytest_plugins = ["pytester"]


def test_plugin_fixtures_seed_and_results_in_a_project_without_lighthouse(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_no_lighthouse_needed(testkit_seed, testkit_rng, testkit_record, latency_recorder):
            assert "lighthouse" not in sys.modules
            for i in range(1, 1001):
                latency_recorder.record(i * 1000)
            testkit_record.chaos("kill9", "no_lost_ack", cases=3, proven=3)
            testkit_record.fault("kill9", True, "exit by SIGKILL")
            assert 0 <= testkit_rng.random() < 1

        def test_fails_and_prints_seed():
            assert False
        """
    )
    # Block lighthouse for the child run: the kit must not need it.
    pytester.makeconftest(
        """
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name == "lighthouse" or name.startswith("lighthouse."):
                    raise ImportError("lighthouse is not installed in this project")
        sys.meta_path.insert(0, _Block())
        """
    )
    result = pytester.runpytest_subprocess("--testkit-seed", "1234", "--testkit-results", "out", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*testkit: seed 1234*",
            "*rerun: pytest *test_fails_and_prints_seed --testkit-seed 1234",
            "*testkit latency percentiles*",
            "*fault x invariant matrix*",
            "*kill9*3/3/0*",
        ]
    )
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    assert document["run"]["seed"] == 1234
    outcomes = {t["nodeid"].split("::")[-1]: t["outcome"] for t in document["tests"]}
    assert outcomes == {"test_no_lighthouse_needed": "passed", "test_fails_and_prints_seed": "failed"}
    assert document["chaos_matrix"]["counts"]["kill9"]["no_lost_ack"] == {"cases": 3, "proven": 3, "violations": 0}


def test_same_seed_gives_same_test_rng(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_draw(testkit_rng):
            print("DRAW", testkit_rng.random())
        """
    )
    draws = []
    for _ in range(2):
        result = pytester.runpytest_subprocess("--testkit-seed", "99", "-s", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
        draws.append(re.findall(r"DRAW (\S+)", result.stdout.str()))
    assert draws[0] == draws[1] and draws[0]


def test_store_adapter_is_parametrised_over_available_stores(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        def test_roundtrip(store_adapter):
            async def main():
                await store_adapter.open()
                try:
                    stored = await store_adapter.append(
                        {"event_id": "e1", "event_type": "custom", "aggregate_id": "a:1", "data": {"k": 1}}
                    )
                    assert stored.sequence == 1
                    assert [e.event_id async for e in store_adapter.read_all()] == ["e1"]
                finally:
                    await store_adapter.close()
            asyncio.run(main())
        """
    )
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_roundtrip?lighthouse?*PASSED*", "*test_roundtrip?sqlite?*PASSED*"])


def test_report_and_baseline_round_trip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os

        def test_measured(testkit_record):
            slow = float(os.environ.get("SLOWDOWN", "1.0"))
            samples = [100.0 * slow + (i % 7) for i in range(200)]
            testkit_record.metric("op_us", sorted(samples)[100], "us", samples=samples)
        """
    )
    saved = pytester.runpytest_subprocess("--testkit-report", "rep", "--testkit-save-baseline", "base.json")
    saved.assert_outcomes(passed=1)
    assert (pytester.path / "rep" / "index.html").stat().st_size > 1000
    assert (pytester.path / "base.json").exists()
    same = pytester.runpytest_subprocess("--testkit-baseline", "base.json")
    assert same.ret == 0, same.stdout.str()
    import os

    os.environ["SLOWDOWN"] = "1.3"
    try:
        slower = pytester.runpytest_subprocess("--testkit-baseline", "base.json")
    finally:
        del os.environ["SLOWDOWN"]
    assert slower.ret == 1, slower.stdout.str()
    slower.stdout.fnmatch_lines(["*BLOCKING regression*"])


def test_load_runner_runs_reach_the_results(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from testkit.load import ConstantRate

        async def noop():
            return None

        def test_open_loop(load_runner):
            result = load_runner.open_loop(noop, ConstantRate(200, 1.0))
            assert result.completed == 200
        """
    )
    result = pytester.runpytest_subprocess("--testkit-results", "out")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_open_loop / load1*200*"])
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    (test,) = document["tests"]
    assert test["metrics"]["load1.achieved_rate"]["value"] > 150
    assert test["timelines"][0]["name"] == "load1" and sum(test["timelines"][0]["series"]["completed"]) == 200
