"""Simulated twins of given (real) spectra: same label, redshift, S/N and instrument."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch
from .instruments.rows import instrument_of
from .survey import BLOCK, LABEL_SPECS, simulate_block

__all__ = ["simulate_like"]


def simulate_like(labels, z, snr, seed=0, instrument="sdss", sdss1=None,
                  grid: LogGrid = DEFAULT_GRID, **kw) -> SpectraBatch:
    """Twins of given spectra: row i has label ``labels[i]`` (a ``thirteen``/``five`` label),
    redshift ``z[i]`` (stars: their own RV; NaN: drawn from the class prior), median S/N
    ``snr[i]``, SDSS-I coverage where ``sdss1[i]`` and ``instrument`` (one name or one per
    row).  For realism tests against
    real spectra (``benchmarks/realism.py``)."""
    labels = np.asarray(labels).astype("U24")
    n = labels.size
    z = np.broadcast_to(np.asarray(z, float), (n,))
    snr = np.broadcast_to(np.asarray(snr, float), (n,))
    sdss1 = np.zeros(n, bool) if sdss1 is None else np.broadcast_to(np.asarray(sdss1, bool), (n,))
    inst = np.broadcast_to(np.asarray(instrument).astype("U8"), (n,))
    for name in np.unique(inst):
        instrument_of(name, seed, 0)
    unknown = sorted(set(labels) - set(LABEL_SPECS))
    if unknown:
        raise ValueError(f"unknown labels {unknown}; known: {', '.join(LABEL_SPECS)}")
    parts = []
    for b in range((n + BLOCK - 1) // BLOCK):
        sl = np.arange(b * BLOCK, min((b + 1) * BLOCK, n))
        pad = np.resize(sl, BLOCK)                     # a full block; the extra rows are cut
        like = {"label": labels[pad], "z": z[pad], "snr": snr[pad], "sdss1": sdss1[pad],
                "instrument": inst[pad]}
        out, ivar, mask, meta = simulate_block(b, seed, "thirteen", None, None, True, grid,
                                               kw.get("resolution"), kw.get("noiseless", False),
                                               kw.get("bad_pixels", True),
                                               kw.get("bal_fraction", 0.1), like=like)
        k = sl.size
        t = Table({c: v[:k] for c, v in meta.items()})
        t["INPUT_FLAGS"] = np.zeros(k, np.int32)
        piece = SpectraBatch._unchecked(grid.loglam, out[:k], ivar[:k], mask[:k], t)
        parts.append(piece)
    return SpectraBatch.concatenate(parts) if len(parts) > 1 else parts[0]
