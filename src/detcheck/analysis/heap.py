"""Keep analysis's freed memory in the process instead of handing it back page by page.

Analysing 10^7 responses allocates and frees arrays of tens of MB many times over (per-batch
temporaries, then per-response arrays in the statistics). glibc serves allocations above its
mmap threshold with fresh mappings and unmaps them on free, and trims the heap top back to the
kernel, so every such array is faulted in again, page by page; numpy additionally asks for huge
pages, whose faults are dearer still in a VM. Measured on this 2-core VM, analysing 10M stored
responses: 580k page faults and ~2.1 s of system time -> 175k and ~1.2 s with both off.

Both knobs are process-wide, so they are set for the duration of an analysis and put back after
(a long replay keeps its flat memory profile). Where they do not exist (not glibc, another numpy)
nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Iterator

# glibc <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD_BYTES = 128 * 1024
DEFAULT_MMAP_MAX = 65_536
KEEP_BYTES = 2**30  # freed memory up to this stays in the heap for the next array


@functools.cache  # find_library runs ldconfig: ~3 ms, once per history line otherwise
def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def _set_numpy_hugepage(enabled: bool) -> bool | None:
    """numpy's switch for madvise(MADV_HUGEPAGE) on large arrays; the previous value, or None
    where this numpy has no such switch."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage  # numpy 2
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage  # numpy 1.x
        except ImportError:
            return None
    return bool(_set_madvise_hugepage(enabled))


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[None]:
    libc = _glibc()
    if libc is not None:
        # what a long run freed goes back first: holes too small for the analysis's arrays
        # would otherwise stay resident under them
        libc.malloc_trim(0)
        libc.mallopt(M_MMAP_MAX, 0)  # large arrays from the heap, reused once freed
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)
    hugepage_before = _set_numpy_hugepage(False)
    try:
        yield
    finally:
        if hugepage_before is not None:
            _set_numpy_hugepage(hugepage_before)
        if libc is not None:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD_BYTES)
            libc.malloc_trim(0)  # what the analysis kept goes back now it is over
