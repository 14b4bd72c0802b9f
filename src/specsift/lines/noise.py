"""Correlated pixel noise of resampled spectra, in the one form the line fit, the
continuum fit and the simulator's noise all use.

SDSS coadds are resampled onto their log-λ grid, which correlates neighbouring pixels'
noise; ivar does not say so.  The resampling kernel is modelled as [c, 1, c]: lag-1
correlation ρ₁ = 2c / (1 + 2c²) (given, measured on real spectra), lag-2 ρ₂ = c² / (1 + 2c²),
nothing beyond.  Averaging b pixels into a bin then multiplies the white variance of the
mean by v = 1 + 2((b−1)ρ₁ + (b−2)ρ₂)/b, and neighbouring bins correlate by
(ρ₁ + 2ρ₂)/(b v).
"""

from __future__ import annotations

import numpy as np

__all__ = ["kernel_weight", "kernel_lags", "correlate_rows", "bin_noise"]


def kernel_weight(rho1: float) -> float:
    """c of the [c, 1, c] kernel whose lag-1 correlation is ``rho1`` (0 for none)."""
    if rho1 <= 0:
        return 0.0
    return float((1 - np.sqrt(max(1 - 2 * rho1 ** 2, 0.0))) / (2 * rho1))


def kernel_lags(rho1: float) -> tuple[float, float]:
    """(ρ₁, ρ₂) of the [c, 1, c] kernel whose lag-1 correlation is ``rho1``."""
    if rho1 <= 0:
        return 0.0, 0.0
    c = kernel_weight(rho1)
    return float(rho1), float(c * c / (1 + 2 * c * c))


def correlate_rows(e: np.ndarray, rho1: float) -> np.ndarray:
    """White unit noise ``e`` (n, p), float32, given the kernel's correlations in place
    (interior pixels, unit variance kept): how the simulator makes the noise this module's
    fits expect."""
    c = np.float64(kernel_weight(rho1))         # the sum in float64, rounded once on storing
    if c > 0:
        e[:, 1:-1] = (e[:, 1:-1] + c * (e[:, :-2] + e[:, 2:])) / np.float32(np.sqrt(1 + 2 * c * c))
    return e


def bin_noise(b: int, rho1: float) -> tuple[float, tuple[tuple[int, float], ...]]:
    """(variance factor v of a b-pixel mean relative to white noise, ((lag, correlation),
    …) between such means); for b = 1 the pixels' own lags 1 and 2."""
    r1, r2 = kernel_lags(rho1)
    if b == 1:
        return 1.0, ((1, r1), (2, r2))
    v = 1 + 2 * ((b - 1) * r1 + max(b - 2, 0) * r2) / b
    return v, ((1, (r1 + 2 * r2) / (b * v)),)
