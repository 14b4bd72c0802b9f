"""Freed memory kept by the process for the next batch (glibc's malloc), set by ``prepare``.

Why: inference allocates the same large blocks batch after batch (gasnet's first convolution
writes 17 MB a mini-batch of 256 spectra, the input 8 MB, the verification and line stages
their own), and glibc's malloc hands a freed block at the top of its heap back to the kernel
once more than its trim threshold is free there (a threshold it moves with the sizes it has
seen).  Whether that happens between two mini-batches depends on the order of every
allocation before, so one run of ``propose`` paid 0.4 page faults a spectrum and the next,
the same code, 11 (sys time 1 → 23 µs a spectrum, the re-zeroed pages on top): 2000
simulated spectra, ``benchmarks/predict_ab.py``'s loop, five passes.  With the thresholds
fixed (blocks up to ``mmap_threshold`` from the heap, up to ``trim_threshold`` of it kept
free), freed blocks are reused: ≤ 0.5 page faults and ≈ 1 µs sys a spectrum, run after run.
The cost: the process keeps up to ``trim_threshold`` of freed heap instead of returning it,
i.e. its resident size stays near its peak (which this does not raise).

Process-wide, like the BLAS thread limit of :meth:`.base.SpectralModel.prepare`, and a no-op
where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_freed_memory"]

M_TRIM_THRESHOLD = -1          # glibc's malloc.h
M_MMAP_THRESHOLD = -3
_SET: tuple[int, int] | None = None


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Fix glibc's malloc thresholds (module docstring) for the rest of the process; True
    where they are set (now or by an earlier call), False where the C library is not glibc.
    32 MB is the largest mmap threshold glibc accepts on 64-bit systems."""
    global _SET
    if _SET == (mmap_threshold, trim_threshold):
        return True
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt          # the process's own C library
    except (AttributeError, OSError, ValueError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = (mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
          and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1)
    _SET = (mmap_threshold, trim_threshold) if ok else None
    return ok
