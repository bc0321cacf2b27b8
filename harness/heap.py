"""The C heap of a command-line process: memory the tables and the report free is given back to
the system rather than kept by glibc's malloc (issue 9's memory targets)."""

from __future__ import annotations

import functools
import sys


M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def map_large_blocks() -> None:
    """Have glibc's malloc map every block of 128 KiB or more on its own from here on, and so give it
    back when it is freed. By default, once a large block is freed, blocks up to that size come from
    the heap instead, and what is freed there stays with the process: the tables' arrays and their
    temporaries (megabytes each) left 8 to 14 MiB of a 100,000-image run's peak so. Called by this
    process only, once the images are hashed (the workers keep the default); a no-op elsewhere.
    What the pass freed on the heap is given back now too (trim_heap)."""
    if _glibc() is not None:
        _glibc().mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    trim_heap()


def trim_heap() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim). Small blocks freed by the
    pass and by the making of the tables stay with the process otherwise, and the report's large
    blocks, mapped on their own, never reuse them (megabytes at 100,000 images). A no-op elsewhere."""
    if _glibc() is not None:
        _glibc().malloc_trim(0)


@functools.lru_cache(maxsize=1)
def _glibc():
    """The C library when it is glibc on Linux (mallopt and malloc_trim are glibc's), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None
