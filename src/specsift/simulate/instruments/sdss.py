"""SDSS/BOSS spectrograph: the model of :mod:`..instrument` (measured from real SDSS spec
files: LSF ``wdisp`` curve, sky, noise gain, lag-1 noise correlation), unchanged."""

from __future__ import annotations

from ...spectra import LogGrid
from ..instrument import Resolution, apply_instrument

__all__ = ["NAME", "COVERAGE", "resolution", "observe"]

NAME = "sdss"
COVERAGE = (3600.0, 10400.0)      # BOSS; SDSS-I/II from ≈ 3800 Å to 9200 Å (blue_cut)


def resolution() -> Resolution:
    return Resolution(None)


def observe(flux, grid: LogGrid, snr, rng, resolution_override=None, noiseless=False,
            bad_pixel_rate: float = 0.3, blue_cut=None, convolve: bool = True):
    return apply_instrument(flux, grid, snr, rng, resolution=resolution_override,
                            bad_pixel_rate=bad_pixel_rate, blue_cut=blue_cut,
                            noiseless=noiseless, convolve=convolve)


