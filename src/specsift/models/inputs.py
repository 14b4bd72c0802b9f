"""The network input every neural model reads: spectra → scale-free (flux, S/N) channels.

Here (not in the training loop) because prediction needs it as much as training does.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..spectra import row_median_mad

__all__ = ["normalise"]


def normalise(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray | None = None,
              clip: float = 50.0, *, good: np.ndarray | None = None,
              n_good: np.ndarray | None = None, channels_last: bool = False) -> np.ndarray:
    """Spectra → (N, 2, P) float32 network input, independent of flux units and brightness.

    Channel 0: flux / s, with s = max(|median f|, 1.4826·MAD f) over good pixels, clipped to
    ±``clip`` (so a bright emission line cannot dominate, and a flat faint continuum is not
    blown up to noise-only scale).  Channel 1: log1p(s·√ivar), the per-pixel S/N of one unit
    of scaled flux, 0 at bad pixels — it tells the network how much to trust each pixel.
    Bad pixels (mask or ivar ≤ 0) are 0 in both channels; a spectrum with no good pixel is
    all zeros.

    ``good``: the good-pixel mask (ivar > 0, not masked, finite flux) when the caller has it
    already (gasnet's predict needs it for its S/N and flags too: one pass less);
    ``n_good``: its count per row, where the caller has that too (≈ 2 µs a spectrum).
    ``channels_last``: the same (N, 2, P) values laid out as (N, P, 2) in memory (strides
    (2P, 1, 2) elements), the layout gasnet's CPU trunk convolves without a transposing copy
    (:mod:`.gasnet.fast`); ``np.ascontiguousarray`` gives the usual layout back.
    """
    flux = np.atleast_2d(np.asarray(flux, np.float32))
    ivar = np.atleast_2d(np.asarray(ivar, np.float32))
    if good is None:
        good = good_pixels(flux, ivar, mask)
    bad = ~good
    # NaN at bad pixels: a copy and a masked fill, ≈ 2 µs a spectrum less than np.where
    f = flux.copy()
    np.copyto(f, np.nan, where=bad)
    if n_good is None:
        # a byte count summed as int32: the same counts, faster than summing bools
        n_good = np.add.reduce(good.view(np.uint8), axis=1, dtype=np.int32)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med, mad = row_median_mad(f, n_good, overwrite_input=True)   # f: sorted after
        mad *= 1.4826
    scale = np.fmax(np.abs(med), mad)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0).astype(np.float32)
    n, p = flux.shape
    if channels_last:
        out = np.empty((n, p, 2), np.float32).transpose(0, 2, 1)
    else:
        out = np.empty((n, 2, p), np.float32)
    _channels(flux, ivar, bad, scale, clip, f, out)      # f: spent, the scratch
    return out


def good_pixels(flux, ivar, mask) -> np.ndarray:
    """Pixels the input reads: ivar > 0, finite flux, not masked — built in place in one
    array (``good > mask`` is ``good and not mask`` for booleans): ≈ 2 µs a spectrum less
    than three temporaries."""
    good = ivar > 0
    good &= np.isfinite(flux)
    if mask is not None:
        np.greater(good, np.atleast_2d(np.asarray(mask, bool)), out=good)
    return good


def _channels(flux, ivar, bad, scale, clip, scratch, out) -> None:
    """Both channels into ``out`` (N, 2, P), each chain of operations in the contiguous
    ``scratch`` (N, P); √ivar straight from ``ivar`` (its NaN at negative or NaN ivar zeroed
    with the bad pixels).  Where ``out`` is channels-last (strided pixels), each channel is
    finished in ``scratch`` and copied once: a strided copy costs ≈ 2 µs a spectrum, a
    strided ``np.minimum``/``np.log1p`` output ≈ 7 (the same values; 29 → 23 µs a spectrum
    for both channels).  np.minimum/np.maximum rather than np.clip: the same values (NaN
    propagates through both), without np.clip's Python wrapper and slower loop; channel 1
    needs no lower clip (√ of ivar ≥ 0 times s > 0, ivar 0 at bad pixels)."""
    direct = out.strides[-1] == out.itemsize            # pixels contiguous: write out itself
    with np.errstate(all="ignore"):
        np.divide(flux, scale, out=scratch)                 # any value at bad pixels,
        np.maximum(scratch, -clip, out=scratch)
        np.copyto(scratch, 0.0, where=bad)                  # set to 0 here
        _finish(np.minimum, scratch, clip, out[:, 0], direct)
        np.sqrt(ivar, out=scratch)                          # NaN at negative ivar,
        np.copyto(scratch, 0.0, where=bad)                  # 0 at every bad pixel
        scratch *= scale
        np.minimum(scratch, 1e4, out=scratch)
        _finish(log1p, scratch, None, out[:, 1], direct)


def log1p(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.log1p(x, out=out)`` for float32, by torch's vectorised kernel: numpy's float32
    log1p is vectorised only with AVX-512 (SVML) and falls back to the scalar libm loop
    elsewhere — 51–78 µs a 4076-pixel spectrum on an AVX2 AMD EPYC against torch's 7–10
    on one thread (``benchmarks/ufunc_costs.py``), the largest single cost of the network input there.
    Within 1 ulp of numpy's (4.6 % of values differ by one ulp on that machine).  ``out`` may be strided (torch writes
    through any strides); ``x`` and ``out`` may be the same array."""
    torch.log1p(torch.from_numpy(x), out=torch.from_numpy(out))
    return out


def _finish(ufunc, scratch, arg, dest, direct: bool) -> None:
    """``dest = ufunc(scratch[, arg])``: straight into ``dest`` when its pixels are
    contiguous, else in ``scratch`` and then one strided copy (:func:`_channels`)."""
    args = (scratch,) if arg is None else (scratch, arg)
    if direct:
        ufunc(*args, out=dest)
    else:
        ufunc(*args, out=scratch)
        np.copyto(dest, scratch)
