"""Keep the C heap from holding on to memory the store has freed (glibc only; elsewhere these do nothing).

- ``release_free_memory``: glibc keeps what large short-lived allocations free (a checkpoint's merged id
  arrays, the tables and versions it replaces) inside its arenas, resident, for reuse. Measured in-process
  over 8M events checkpointed every million: RSS minus the index's own bytes stepped between ~90 and ~155 MB
  from one checkpoint to the next, so a soak's leak verdict read allocator luck as growth; with a trim after
  each checkpoint it stayed within 81-95 MB over 4M events. ``malloc_trim`` runs without the GIL (ctypes
  releases it) and took up to 6 ms.
- ``keep_large_blocks_mapped``: glibc gives a block of 128 KiB or more its own mapping, returned to the
  kernel when freed, but each time it frees one it raises that threshold to the block's size (up to
  32 MiB). After a few checkpoints their multi-megabyte temporaries (a million ids sorted, their order, the
  merged arrays) were carved from the checkpoint thread's arena instead, and stayed resident once freed,
  beyond the trim's reach: in-process and in a 25-minute HTTP soak, RSS minus the index stepped up ~60 MB
  at the sixth checkpoint and stayed there for another six. With the threshold fixed at 1 MiB (fixing it
  turns the raising off) it stayed at 84-86 MB. The index's chunks are not on the heap at all (see
  ``lighthouse.index_slabs``).
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable
from typing import Final

__all__ = ["MMAP_THRESHOLD_BYTES", "keep_large_blocks_mapped", "release_free_memory"]

#: blocks of this size or more get their own mapping (see ``keep_large_blocks_mapped``)
MMAP_THRESHOLD_BYTES: Final[int] = 1 << 20
_M_MMAP_THRESHOLD: Final[int] = -3  # mallopt's parameter number (glibc's malloc.h)


@functools.cache
def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        function = getattr(ctypes.CDLL(None), name)  # glibc only (musl and macOS have neither)
    except (AttributeError, OSError):
        return None
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Return the heap's free pages to the kernel; ``False`` where the C library cannot (not glibc)."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(ctypes.c_size_t(0))
    return True


def keep_large_blocks_mapped() -> bool:
    """Fix the process's mmap threshold at ``MMAP_THRESHOLD_BYTES`` (see the module doc). ``False`` where
    the C library cannot, or where the process chose its own threshold (``GLIBC_TUNABLES`` or
    ``MALLOC_MMAP_THRESHOLD_``), which is left as it is. Idempotent; it affects the whole process."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD_BYTES)))
