"""The kit imports and its commands start without the server stack or the report stack installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("starlette", "uvicorn", "websockets", "prometheus_client", "httpx", "pandas", "matplotlib", "lighthouse")


def test_testkit_and_the_chaos_kit_import_without_server_report_or_lighthouse() -> None:
    program = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import testkit, testkit.plugin, testkit.cli, testkit.faults, testkit.adapters
        import testkit.chaos.registry, testkit.chaos.command, testkit.chaos.crashes, testkit.chaos.disk
        import testkit.chaos.corruption, testkit.chaos.network, testkit.chaos.io_errors, testkit.chaos.resources
        import testkit.chaos.lighthouse_oracle, testkit.chaos.lighthouse_log, testkit.chaos.restarts
        import testkit.chaos.snapshots, testkit.chaos.failed_sync, testkit.chaos.store_events, testkit.chaos.mutation
        testkit.cli.build_parser().parse_args(["chaos", "--adapter", "m:f"])
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_results_schema_the_docstrings_cite_ships_in_the_package() -> None:
    from importlib.resources import files

    schema = files("testkit") / "docs" / "results-schema.md"
    assert "expectations" in schema.read_text(encoding="utf-8")
