"""The C heap's free pages really go back to the kernel (checked on RSS, not on the call's return), and large
blocks keep mappings of their own however many have been freed before (checked in /proc/self/maps)."""

from __future__ import annotations

import ctypes.util
import os
import platform
import subprocess
import sys

import psutil
import pytest

from lighthouse.heap import MMAP_THRESHOLD_BYTES, release_free_memory

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


#: In a process of its own (the setting is the whole process's): a 16 MiB block is mapped and freed, which
#: raises glibc's mmap threshold to 16 MiB unless it was fixed; then an 8 MB block (the size of a checkpoint's
#: temporaries for a million ids) is made and freed: the name of the mapping that held it, and whether its
#: address is still mapped once it is freed (a block with a mapping of its own is unmapped with it).
_WHERE_A_BLOCK_LANDS = """
import sys
import numpy as np
from lighthouse.heap import keep_large_blocks_mapped
print(keep_large_blocks_mapped() if sys.argv[1] == "fixed" else None)
def holder(address):
    for line in open("/proc/self/maps"):
        fields = line.split()
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high:
            return fields[5] if len(fields) > 5 else "anonymous"
    return "unmapped"
np.ones(2 << 20).sum()
block = np.ones(1_000_000)
address = block.ctypes.data + 4_000_000
print(holder(address))
del block
print(holder(address))
"""


def _where_a_block_lands(mode: str, **env: str) -> list[str]:
    """``env`` is the probe's only malloc setting: one inherited from this process is not passed on."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_")}
    answer = subprocess.run([sys.executable, "-c", _WHERE_A_BLOCK_LANDS, mode], capture_output=True, text=True,
                            env={**inherited, **env}, timeout=60, check=True)
    return answer.stdout.split()


def test_a_large_block_keeps_a_mapping_of_its_own_once_the_threshold_is_fixed() -> None:
    assert MMAP_THRESHOLD_BYTES < 8_000_000
    assert _where_a_block_lands("fixed") == ["True", "anonymous", "unmapped"]
    # what glibc does by itself, so the check above can fail: the block comes from the heap and stays there
    assert _where_a_block_lands("dynamic") == ["None", "[heap]", "[heap]"]


def test_a_threshold_the_process_chose_is_left_alone() -> None:
    answer = _where_a_block_lands("fixed", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=33554432")
    assert answer[:2] == ["False", "[heap]"]  # below the chosen 32 MiB: from the heap, as that process asked
