"""LAMOST low-resolution spectrograph (LRS) as the simulator sees it.

Measured from the 1535 real spectra of ``../shared/data/lamost-real`` (``instruments.npz``,
``tools/measure_instruments.py``): the noise curves α(λ), β(λ) (including the noise bump of the
blue/red arm join near 5700–5900 Å), the background-to-source ratio, the per-pixel mask
probability (DR1 masks the O2 A band), the coverage edges (≈ 3700–9090/9100 Å), the
sky-residual excess, the residual telluric equivalent widths (real stars minus simulated ones:
the LAMOST pipeline leaves only ≈ 0.2 Å in the O2 A band, ≈ 1.3 Å in the 8200 Å H2O band),
and the scatter of the smooth flux-calibration error (Legendre coefficients of real/simulated
twins: an upper bound, as template mismatch adds to it) and of the flux step at the arm join.

Not measured (no sky lines or arc data in the files): the LSF.  It is the nominal LRS
R ≈ 1800 as a curve, constant FWHM in Å per arm (blue 2.6 Å, red 4.2 Å: R ≈ 1400 at the
blue ends, ≈ 2200 at the red ends), jumping at the join.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...spectra import LogGrid
from ..lines import C_KMS
from ._measured import CurveResolution, measured, observe_measured

__all__ = ["NAME", "COVERAGE", "JOIN", "resolution", "telluric_transmission", "observe"]

NAME = "lamost"
COVERAGE = (3700.0, 9100.0)
#: blue/red arm overlap (Å): the pipeline splices the arms here
JOIN = (5700.0, 5900.0)
FWHM_AA = {"blue": 2.6, "red": 4.2}


@lru_cache(maxsize=1)
def resolution() -> CurveResolution:
    ll = np.linspace(np.log10(3500), np.log10(10500), 2000)
    w = 10 ** ll
    fwhm = np.where(w < np.mean(JOIN), FWHM_AA["blue"], FWHM_AA["red"])
    return CurveResolution(ll, C_KMS * fwhm / w / 2.3548, "lamost")


def _band_shape(wave, band, kind):
    """Unit-depth opacity profile: O2 bands a sharp head decaying redward, H2O a broad hump."""
    lo, hi = band
    x = (wave - lo) / (hi - lo)
    inside = (x >= 0) & (x <= 1)
    if kind == "O2":
        s = np.exp(-x / 0.25)
    else:
        s = np.sin(np.pi * np.clip(x, 0, 1)) ** 2
    return np.where(inside, s, 0.0)


def telluric_transmission(grid: LogGrid, rng, n: int, m: dict | None = None) -> np.ndarray:
    """(n, P) transmission at the telescope: each band's opacity scaled so that its EW
    (before the LSF) follows the measured residual-EW distribution; O2 scales with airmass
    (drawn 1.0–1.6), H2O also with a log-normal water column."""
    m = measured("lamost") if m is None else m
    wave = grid.wave
    dl = np.gradient(wave)
    T = np.ones((n, wave.size))
    airmass = rng.uniform(1.0, 1.6, n)
    for name, band, ew, sd in zip(m["telluric_names"], m["telluric_bands"],
                                  m["telluric_ew"], m["telluric_ew_sd"]):
        kind = str(name)[:2] if str(name).startswith("O2") else "H2O"
        shape = _band_shape(wave, band, "O2" if kind == "O2" else "H2O")
        if shape.sum() == 0 or ew <= 0:
            continue
        water = rng.lognormal(0, 0.4, n) if kind != "O2" else 1.0
        target = np.clip(ew * airmass / 1.3 * water + rng.normal(0, 0.25 * sd, n), 0, None)
        # opacity τ per spectrum: EW(τ) = Σ (1 − e^(−τ s)) Δλ, solved on a lookup table
        taus = np.geomspace(1e-4, 20, 200)
        ews = ((1 - np.exp(-taus[:, None] * shape[None, :])) * dl[None, :]).sum(1)
        tau = np.interp(target, ews, taus, left=0.0)
        T *= np.exp(-tau[:, None] * shape[None, :])
    return T.astype(np.float32)


def calibration_factor(grid: LogGrid, rng, n: int, m: dict | None = None) -> np.ndarray:
    """(n, P) smooth multiplicative flux-calibration error × the arm-join step."""
    m = measured("lamost") if m is None else m
    wave = grid.wave
    x = (np.log(wave) - np.log(wave[0])) / (np.log(wave[-1]) - np.log(wave[0])) * 2 - 1
    sd = np.asarray(m["calib_sd"], float)
    c = np.zeros((n, sd.size + 1))
    c[:, 1:] = rng.normal(0, 1, (n, sd.size)) * sd[None, :]
    logf = np.polynomial.legendre.legval(x, c.T)                 # (n, P)
    step = rng.normal(0, float(m["join_step_sd"]), n)
    ramp = np.clip((wave - JOIN[0]) / (JOIN[1] - JOIN[0]), 0, 1)
    return np.exp(logf + step[:, None] * ramp[None, :]).astype(np.float32)


def observe(flux, grid: LogGrid, snr, rng, resolution_override=None, noiseless=False,
            bad_pixel_rate: float = 0.0, convolve: bool = True):
    """True f_λ (n, P) → LAMOST-like flux, ivar, mask, info (telluric, LSF, noise, masks,
    calibration error and arm-join step)."""
    m = measured("lamost")
    res = resolution() if resolution_override is None else resolution_override
    return observe_measured(
        flux, grid, snr, rng, m, res, bad_pixel_rate=bad_pixel_rate, noiseless=noiseless,
        pre=lambda f, r: f * telluric_transmission(grid, r, f.shape[0], m),
        post=lambda k, r: calibration_factor(grid, r, k, m), convolve=convolve)
