"""The C heap's free pages really go back to the kernel (checked on RSS, not on the call's return)."""

from __future__ import annotations

import ctypes.util
import platform

import psutil
import pytest

from lighthouse.heap import release_free_memory

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or "musl" in (ctypes.util.find_library("c") or ""),
    reason="malloc_trim is glibc's (Linux); elsewhere release_free_memory says False and does nothing",
)

CHUNK = 4000  # above CPython's small-object limit: each one is a malloc of its own, below glibc's mmap threshold
COUNT = 25_000  # ~100 MB


def test_free_pages_held_by_the_heap_are_returned() -> None:
    process = psutil.Process()
    release_free_memory()
    baseline = process.memory_info().rss
    chunks = [bytes(CHUNK) for _ in range(COUNT)]
    allocated = process.memory_info().rss - baseline
    assert allocated > COUNT * CHUNK * 0.8, "the chunks were not made resident"
    kept = chunks[::32]  # one in 32 stays alive: the heap cannot shrink from its top past them
    del chunks
    retained = process.memory_info().rss - baseline
    assert retained > allocated * 0.6, f"glibc returned the freed chunks by itself ({retained:,} of {allocated:,} B)"

    assert release_free_memory()

    after = process.memory_info().rss - baseline
    assert after < retained - allocated * 0.5, f"RSS {retained:,} -> {after:,} B above the baseline"
    assert len(kept) == len(range(0, COUNT, 32))
