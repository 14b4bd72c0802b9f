"""Injected anomalies for evaluating anomaly scores (kinds a model never saw in training).

Instrument artefacts are applied to copies of normal spectra; new kinds of object come
from templates.  Every function takes an explicit ``numpy.random.Generator`` and returns
a new :class:`~specsift.spectra.SpectraBatch` with ``meta['ANOMALY_KIND']`` set.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from .constants import C_KMS
from .spectra import DEFAULT_GRID, LogGrid, SpectraBatch

__all__ = ["sky_residuals", "bad_columns", "flux_jump", "superpose", "from_rest_templates",
           "KINDS"]

KINDS = ("sky_residuals", "bad_columns", "flux_jump", "superposition", "bal_qso",
         "white_dwarf", "cataclysmic_variable")


def _copy(batch: SpectraBatch, kind: str) -> SpectraBatch:
    out = batch[np.arange(len(batch))]
    out.flux, out.ivar, out.mask = batch.flux.copy(), batch.ivar.copy(), batch.mask.copy()
    out.meta = batch.meta.copy()
    out.meta["ANOMALY_KIND"] = np.full(len(out), kind, dtype="U24")
    return out


def _sigma(batch):
    return np.where(batch.ivar > 0, 1.0 / np.sqrt(np.where(batch.ivar > 0, batch.ivar, 1)), 0.0)


def sky_residuals(batch: SpectraBatch, rng: np.random.Generator, amplitude=(0.1, 0.3)):
    """Badly subtracted sky: ± a fraction (default 10–30 %, 5–15× a normal 2 % residual)
    of the sky's line structure (SDSS sky spectrum of the simulator) added to the flux."""
    from .simulate.instrument import sky_on_grid
    out = _copy(batch, "sky_residuals")
    sky, _ = sky_on_grid(LogGrid.from_loglam(batch.loglam))
    structure = sky - uniform_filter1d(sky, 25)
    a = rng.uniform(*amplitude, len(out)) * rng.choice([-1.0, 1.0], len(out))
    out.flux = np.where(out.mask, 0.0, out.flux + a[:, None] * structure[None, :]).astype(np.float32)
    return out


def bad_columns(batch: SpectraBatch, rng: np.random.Generator, nsigma=(5.0, 15.0)):
    """1–3 unmasked runs of 3–15 pixels offset by 5–15 σ (hot or dead CCD columns)."""
    out = _copy(batch, "bad_columns")
    sig = _sigma(out)
    p = out.npix
    for i in range(len(out)):
        for _ in range(rng.integers(1, 4)):
            lo = int(rng.integers(0, p - 16))
            hi = lo + int(rng.integers(3, 16))
            amp = rng.uniform(*nsigma) * rng.choice([-1.0, 1.0])
            good = ~out.mask[i, lo:hi]
            out.flux[i, lo:hi] += np.where(good, amp * sig[i, lo:hi], 0.0).astype(np.float32)
    return out


def flux_jump(batch: SpectraBatch, rng: np.random.Generator, size=(0.15, 0.4),
              break_aa=(4500.0, 8000.0)):
    """Flux-calibration jump: everything red of a break (near the dichroic) scaled by
    1 ± 15–40 %."""
    out = _copy(batch, "flux_jump")
    w = out.wave
    brk = rng.uniform(*break_aa, len(out))
    f = 1.0 + rng.uniform(*size, len(out)) * rng.choice([-1.0, 1.0], len(out))
    scale = np.where(w[None, :] > brk[:, None], f[:, None], 1.0)
    out.flux = (out.flux * scale).astype(np.float32)
    out.ivar = (out.ivar / scale ** 2).astype(np.float32)
    return out


def superpose(a: SpectraBatch, b: SpectraBatch, rng: np.random.Generator, ratio=(0.5, 1.0)):
    """a + r·b (b rescaled to a's median flux): two objects in one fibre."""
    if len(a) != len(b):
        raise ValueError("superpose needs batches of equal length")
    out = _copy(a, "superposition")
    def med(x, m):
        v = np.nanmedian(np.where(m, np.nan, np.abs(x)), axis=1)
        return np.where(np.isfinite(v) & (v > 0), v, 1.0)
    r = rng.uniform(*ratio, len(a)) * med(a.flux, a.mask) / med(b.flux, b.mask)
    mask = a.mask | b.mask
    var = np.where(mask, 0.0, 1.0 / np.where(a.ivar > 0, a.ivar, 1)
                   + r[:, None] ** 2 / np.where(b.ivar > 0, b.ivar, 1))
    out.flux = np.where(mask, 0.0, a.flux + r[:, None] * b.flux).astype(np.float32)
    out.ivar = np.where(mask, 0.0, 1.0 / np.where(var > 0, var, 1)).astype(np.float32)
    out.mask = mask
    out.meta["Z_SECOND"] = np.asarray(b.meta["Z"], float) if "Z" in b.meta.colnames else np.nan
    return out


def from_rest_templates(wave_aa: np.ndarray, spectra: np.ndarray, rng: np.random.Generator,
                        kind: str, snr=(5.0, 30.0), grid: LogGrid = DEFAULT_GRID,
                        rv_kms: float = 100.0) -> SpectraBatch:
    """Observe template spectra (n, len(wave)) f_λ with the simulator's SDSS instrument
    model at S/N drawn from ``snr`` and a radial velocity N(0, rv_kms)."""
    from .simulate.instrument import apply_instrument
    n = spectra.shape[0]
    z = rng.normal(0.0, rv_kms, n) / C_KMS
    flux = np.empty((n, grid.size), np.float32)
    for i in range(n):
        flux[i] = np.interp(grid.wave / (1 + z[i]), wave_aa, spectra[i], left=np.nan, right=np.nan)
    flux = np.nan_to_num(flux, nan=0.0)
    med = np.median(np.abs(flux), axis=1, keepdims=True)
    flux = flux / np.where(med > 0, med, 1.0) * 10.0
    s = rng.uniform(*snr, n)
    f, ivar, mask, _ = apply_instrument(flux, grid, s, rng)
    from astropy.table import Table
    meta = Table({"TARGETID": np.arange(n, dtype=np.int64), "Z": z, "SNR": s,
                  "ANOMALY_KIND": np.full(n, kind, dtype="U24")})
    return SpectraBatch(grid.loglam, f, ivar, mask, meta)
