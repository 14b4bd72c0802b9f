"""Common rest frames for the χ² scans of :mod:`.fit`: chunks of rows sorted by shift, each
row's data block copied into one frame barely wider than a spectrum, and the template side of a
whole window of shifts as a view of a cached multi-shift table — so that one GEMM per chunk
gives every row at every shift of the window."""

from __future__ import annotations

import threading

import numpy as np

from .cache import IdentityCache

__all__ = ["Scratch", "common_frames", "shift_block"]

_CHUNK_ROWS = 128
_CHUNK_SPREAD = 512
_MULTI = IdentityCache(maxsize=256)   # ≈ 1 MB an entry; 56 for SDSS + LAMOST + DESI at once


class Scratch(threading.local):
    """One growing float32 buffer per thread, handed out as an array of a given shape: the
    caller owns its contents until it asks again (per thread, so two threads verifying at
    once never share it).  The buffer grows to the largest shape asked for and is kept for
    the thread's life: the stage's (N × (npoly + 1) × P float32) is ≈ 67 MB a thread at
    batch 1024 on the default grid (4076 pixels); the template-error refit's, the subtype's
    and the star check's hold as much as their largest set of rows."""

    def __init__(self):
        self.buf = np.empty(0, np.float32)

    def take(self, shape) -> np.ndarray:
        size = int(np.prod(shape))
        if self.buf.size < size:
            self.buf = np.empty(size, np.float32)
        return self.buf[:size].reshape(shape)


def _multi_shift(y: np.ndarray, S: int, pad: int):
    """(L + 2·pad' + S, S·C) table whose row i, block s is y[i − pad' − s] (zero outside y), and
    pad' ≥ ``pad``: the template side of S consecutive shifts side by side, so that a chunk's
    GEMM operand for a window is a slice of it (a view, no copy).  Cached per (y, S); rebuilt
    wider when a frame reaches past its zero padding."""
    def build(old):
        L, C = y.shape
        p = max(pad, 2 * old[1] if old is not None else 0)       # rarely rebuilt
        out = np.zeros((L + 2 * p + S, S, C), np.float32)
        for s in range(S):
            out[p + s:p + s + L, s] = y
        return out.reshape(L + 2 * p + S, S * C), p
    return _MULTI.get(y, S, build, valid=lambda v: v[1] >= pad)


def shift_block(y: np.ndarray, q0: int, offsets: np.ndarray, J: int) -> np.ndarray:
    """(J, S·C): for frame column j and window shift offsets[s], y[q0 − offsets[s] + j]
    (zero outside y) — a view of :func:`_multi_shift` for consecutive offsets."""
    S = len(offsets)
    if S > 1 and np.any(np.diff(offsets) != 1):
        return np.concatenate([shift_block(y, q0, offsets[s:s + 1], J) for s in range(S)],
                              axis=1)
    lo = q0 - int(offsets[0])
    need = max(-lo, lo + J - len(y), 0)
    table, pad = _multi_shift(y, S, need + 512 if need else 0)
    return table[lo + pad:lo + pad + J]


def _chunks(centres_sorted: np.ndarray):
    """(lo, hi) runs of at most ``_CHUNK_ROWS`` rows whose centres lie within
    ``_CHUNK_SPREAD`` of the run's first: each run as long as it can be, in order — found
    by one search for every row instead of a Python step a row."""
    n = len(centres_sorted)
    ends = np.searchsorted(centres_sorted, centres_sorted + _CHUNK_SPREAD, side="right")
    lo = 0
    while lo < n:
        hi = min(lo + _CHUNK_ROWS, int(ends[lo]))
        yield lo, hi
        lo = hi


def common_frames(prep, spec, centres):
    """Chunks of rows in a common rest frame: (rows, D (n, K+1, J), s_max, J).

    Rows sorted by shift share one frame barely wider than a spectrum; row r's data sit at
    frame columns s_max − centre[r] … + P, so template index (offset − s_max + j − d) meets
    frame column j at shift centre + d for every row at once.  ``D`` is read-only: it may be
    a view of ``prep.d``."""
    P, K1 = prep.npix, prep.npoly + 1
    order = np.argsort(centres, kind="stable")
    # one buffer per call, reused by every chunk: fresh large arrays cost a page fault per
    # 4 kB page, which on a busy machine was most of this function's time
    rows_max = min(_CHUNK_ROWS, len(spec))
    spread = int(np.ptp(centres)) if len(centres) else 0
    width = P + min(spread, _CHUNK_SPREAD)
    buf = np.empty(rows_max * K1 * width, np.float32)
    for lo, hi in _chunks(centres[order]):
        rows = order[lo:hi]
        n = len(rows)
        c = centres[rows]
        s_max = int(c.max())
        J = P + s_max - int(c.min())
        d = prep.d
        first = int(spec[rows[0]])
        if J == P and np.array_equal(spec[rows], np.arange(first, first + n)):
            # one centre for rows that are consecutive in ``prep``: their frame is ``prep``'s
            # own block, no copy (the STAR and low-z GALAXY windows of every spectrum)
            yield rows, d[first:first + n], s_max, J
            continue
        D = buf[:n * K1 * J].reshape(n, K1, J)
        offs = s_max - c
        # zero only the margins (filling the whole buffer first wrote every byte twice), all
        # rows at once: columns left of the largest offset and right of the smallest
        # offset's data; each row's copy then overwrites its own part of them
        o_max, o_min = int(offs.max()), int(offs.min())
        if o_max:
            D[:, :, :o_max] = 0.0
        if o_min + P < J:
            D[:, :, o_min + P:] = 0.0
        for i, r, o in zip(range(n), spec[rows].tolist(), offs.tolist()):
            D[i, :, o:o + P] = d[r]               # a row copy beats np.take here
        yield rows, D, s_max, J
