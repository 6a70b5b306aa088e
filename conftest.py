"""Root pytest configuration for this repository's own suites (the testkit plugin itself is
registered by the ``pytest11`` entry point, so other projects get it without this file)."""

from __future__ import annotations

collect_ignore_glob = ["reports/*", "benchmarks/*"]
