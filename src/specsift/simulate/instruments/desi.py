"""DESI spectrograph (B, R, Z arms) as the simulator sees it.

Measured from the real DESI files of ``../shared/data/desi`` (``instruments.npz``,
``tools/measure_instruments.py``): the LSF σ(λ) of each arm from the second moment of the
RESOLUTION diagonals (median over fibres; the B/R and R/Z overlaps average the two arms), and
from the reader's combined spectra the noise curves α(λ), β(λ) (the overlaps, where two arms
are co-added, are quieter), the background-to-source ratio (DESI targets are faint: the
background dominates), the per-pixel mask probability, the coverage (3600–9824 Å: beyond the
default 3600–9200 Å grid, use a wider ``LogGrid`` to see the Z arm's red end) and the
sky-residual excess.  The DESI pipeline calibrates flux and removes tellurics: neither is added.
Only ≈ 30 usable real spectra exist here, so these curves are noisier than LAMOST's.
"""

from __future__ import annotations

from functools import lru_cache

from ...spectra import LogGrid
from ._measured import CurveResolution, measured, observe_measured

__all__ = ["NAME", "COVERAGE", "ARMS", "resolution", "observe"]

NAME = "desi"
COVERAGE = (3600.0, 9824.0)
#: nominal arm ranges (Å); the measured ones are in instruments.npz (desi_arm_ranges)
ARMS = {"B": (3600.0, 5930.0), "R": (5660.0, 7720.0), "Z": (7470.0, 9824.0)}


@lru_cache(maxsize=1)
def resolution() -> CurveResolution:
    m = measured("desi")
    return CurveResolution(m["loglam"], m["sigma_kms"].astype(float), "desi")


def observe(flux, grid: LogGrid, snr, rng, resolution_override=None, noiseless=False,
            bad_pixel_rate: float = 0.0, convolve: bool = True):
    """True f_λ (n, P) → DESI-like flux, ivar, mask, info."""
    res = resolution() if resolution_override is None else resolution_override
    return observe_measured(flux, grid, snr, rng, measured("desi"), res,
                            bad_pixel_rate=bad_pixel_rate, noiseless=noiseless,
                            convolve=convolve)
