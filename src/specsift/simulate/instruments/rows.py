"""Which instrument observes each simulated spectrum, and observing a block row by row
through them (used by :mod:`..survey`)."""

from __future__ import annotations

import numpy as np

from ..instrument import Resolution

__all__ = ["instrument_of", "observe_rows"]


def instrument_of(instrument, seed, b, block: int = 256) -> np.ndarray:
    """Instrument name per spectrum of block ``b``: one name, or ``'mix'`` drawn from
    :data:`~.instruments.MIX` with its own seed stream (the block's draws stay as they are)."""
    from . import MIX, get
    if str(instrument).lower() != "mix":
        return np.full(block, get(instrument).NAME, dtype="U8")
    r = np.random.default_rng(np.random.SeedSequence([int(seed), int(b), 1]))
    return r.choice(list(MIX), block, p=list(MIX.values())).astype("U8")


def observe_rows(flux, grid, snr, rng, inst, blue, resolution, bad_pixels, noiseless):
    """Each instrument's spectra of one block through that instrument's model."""
    from . import get
    n, p = flux.shape
    out, ivar = np.zeros((n, p), np.float32), np.zeros((n, p), np.float32)
    mask, clean = np.zeros((n, p), bool), np.zeros((n, p), np.float32)
    res = None if resolution is None else Resolution.parse(resolution)
    for name in np.unique(inst):
        sel = np.nonzero(inst == name)[0]
        kw = {"blue_cut": blue[sel], "bad_pixel_rate": 0.3 if bad_pixels else 0.0} \
            if name == "sdss" else {}
        o, iv, mk, info = get(name).observe(flux[sel], grid, snr[sel], rng,
                                            resolution_override=res, noiseless=noiseless, **kw)
        out[sel], ivar[sel], mask[sel], clean[sel] = o, iv, mk, info["noiseless"]
    return out, ivar, mask, {"noiseless": clean}
