"""Observe true spectra through an instrument whose noise, masks and LSF were measured from
its real files (``data/templates/instruments.npz``, made by ``tools/measure_instruments.py``).

Shared by the LAMOST and DESI models.  The per-pixel variance is the measured
v(λ) = (α(λ)·f⁺(λ) + ρ·m·β(λ)) / k: α the source's photon-noise shape (throughput), β the
background's (sky, read, dark; the arm joins' noise bumps live here), ρ the background-to-
source ratio of one spectrum (drawn from the real files' distribution; m the spectrum's median
flux) and k the exposure factor that gives the requested median S/N.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...lines.noise import correlate_rows
from ...spectra import LogGrid
from ..instrument import Resolution, apply_lsf, masked_median, refine_snr_scale
from ..lines import C_KMS
from ..templates import template_dir

__all__ = ["measured", "CurveResolution", "observe_measured"]


@lru_cache(maxsize=None)
def _npz() -> dict:
    path = template_dir() / "instruments.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: bundled instrument measurements missing; rebuild "
                                f"with tools/measure_instruments.py")
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def measured(prefix: str) -> dict:
    """The measured arrays of one instrument ('lamost', 'desi'), keys without the prefix."""
    d = _npz()
    return {k[len(prefix) + 1:]: v for k, v in d.items() if k.startswith(prefix + "_")}


@dataclass(frozen=True, eq=False)
class CurveResolution:
    """Gaussian LSF with σ(λ) tabulated on ``loglam`` (km/s); duck-types ``Resolution``."""

    loglam: np.ndarray
    sigma: np.ndarray
    name: str = "curve"

    def sigma_kms(self, loglam: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(loglam, float), self.loglam, self.sigma)


def _const(sigma_kms: float) -> Resolution:
    return Resolution(C_KMS / (2.3548 * float(sigma_kms)))


def lsf_piecewise(flux, grid: LogGrid, res, levels: int = 4):
    """LSF with σ(λ) varying a lot (a jump at an arm join): ``levels`` constant-σ passes,
    interpolated linearly in σ² between the two levels that bracket each pixel's σ."""
    s = res.sigma_kms(grid.loglam)
    lv = np.sqrt(np.linspace(s.min() ** 2, s.max() ** 2, levels))
    if lv[-1] - lv[0] < 1e-3 * lv[0]:
        return apply_lsf(flux, grid, _const(lv[0]))
    passes = [apply_lsf(flux, grid, _const(x)) for x in lv]
    pos = np.interp(s ** 2, lv ** 2, np.arange(levels))
    k = np.clip(np.floor(pos).astype(int), 0, levels - 2)
    w = (pos - k).astype(np.float32)
    stack = np.stack(passes)                                    # (levels, n, P)
    cols = np.arange(grid.size)
    return stack[k, :, cols].T * (1 - w) + stack[k + 1, :, cols].T * w


def _on_grid(m: dict, key: str, grid: LogGrid, fill: float) -> np.ndarray:
    return np.interp(grid.loglam, m["loglam"], m[key], left=fill, right=fill)


def _quantile_draw(rng, q: np.ndarray, n: int) -> np.ndarray:
    """Draws from the distribution given by its quantiles ``q`` (equally spaced in p)."""
    return np.interp(rng.random(n), np.linspace(0, 1, q.size), q)


def observe_measured(flux, grid: LogGrid, snr, rng, m: dict, resolution,
                     bad_pixel_rate: float = 0.0, noiseless: bool = False,
                     pre=None, post=None, convolve: bool = True):
    """Observe true f_λ (n, P) through the measured instrument ``m`` (see module doc).

    ``pre(flux, rng) → flux`` acts before the LSF (telluric absorption), ``post(n, rng) →
    factor (n, P)`` multiplies flux and error after the noise (flux-calibration errors, arm
    join steps).  Returns flux, ivar, mask, info like :func:`~..instrument.apply_instrument`.
    """
    flux = np.atleast_2d(np.asarray(flux, np.float32))
    n, p = flux.shape
    snr = np.broadcast_to(np.asarray(snr, float), (n,))
    if pre is not None:
        flux = pre(flux, rng)
    if convolve:
        flux = lsf_piecewise(flux, grid, resolution)
    alpha = _on_grid(m, "alpha", grid, float(m["alpha"][-1]))
    beta = _on_grid(m, "beta", grid, float(m["beta"][-1]))
    # coverage per spectrum (measured first/last good pixel) and measured mask probability
    lo = _quantile_draw(rng, m["wmin_q"], n)
    hi = _quantile_draw(rng, m["wmax_q"], n)
    mask = (grid.wave[None, :] < lo[:, None]) | (grid.wave[None, :] > hi[:, None])
    pm = _on_grid(m, "pmask", grid, 1.0)
    # one uniform draw per spectrum: pixel masked where its measured probability exceeds it,
    # which keeps each pixel's real masked fraction and the real masks' correlation in λ
    mask |= pm[None, :] > rng.random((n, 1))
    if bad_pixel_rate > 0:
        for i in np.nonzero(rng.poisson(bad_pixel_rate, n))[0]:
            start = rng.integers(0, p)
            mask[i, start:start + rng.integers(1, 12)] = True
    fpos = np.clip(flux, 0, None)
    med = masked_median(fpos, mask)
    med = np.where(np.isfinite(med) & (med > 0), med, np.maximum(fpos.mean(1), 1e-6))
    rho = np.exp(_quantile_draw(rng, m["log_rho"], n))
    base = alpha[None, :] * fpos + (rho * med)[:, None] * beta[None, :]
    sq = np.sqrt(np.maximum(base, 1e-20)).astype(np.float32)
    e = rng.standard_normal((n, p)).astype(np.float32)
    rc = float(m["noise_corr"])
    if rc > 0.02:
        correlate_rows(e, rc)
    # sky-subtraction residuals: extra scatter at sky-line pixels, not in the quoted ivar
    sky_w = _on_grid(m, "sky_weight", grid, 0.0) if "sky_weight" in m else np.zeros(p)
    sky_w = np.where(sky_w > 0.3, sky_w, 0.0)              # the lines, not their wings
    excess = np.sqrt(float(m["sky_excess"]) * sky_w).astype(np.float32)
    e_sky = rng.standard_normal((n, p)).astype(np.float32) * excess[None, :]
    # quoted errors off the true scatter by a per-spectrum factor: the measured
    # χ_real/χ_twin distribution (pixel-difference χ of real spectra over their simulated
    # twins'); the S/N asked for is the quoted one, as pipelines report it
    quoted = np.ones(n) if "chi_q" not in m or noiseless else 1.0 / np.clip(
        _quantile_draw(rng, m["chi_q"], n), 0.5, 2.0)
    snr = snr * quoted
    q = flux / sq
    a = snr / np.where((mq := masked_median(q, mask)) > 0, mq, 1.0)
    if not noiseless:
        a = refine_snr_scale(a, q, e, mask, snr)
    sigma = sq / a[:, None]
    out = flux.copy()
    if not noiseless:
        out += sigma * (e + e_sky)
    ivar = (1.0 / (sigma * quoted[:, None].astype(np.float32)) ** 2).astype(np.float32)
    noiseless_flux = flux
    if post is not None:
        fac = post(n, rng).astype(np.float32)
        out *= fac
        ivar /= fac ** 2
        noiseless_flux = flux * fac
    ivar[mask] = 0.0
    out[mask] = 0.0
    return out.astype(np.float32), ivar, mask, {"exposure": (a ** 2).astype(np.float32),
                                                "noiseless": noiseless_flux}
