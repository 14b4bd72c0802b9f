"""Instrument models: what each survey's spectrograph does to a true spectrum.

    from specsift.simulate.instruments import get, INSTRUMENTS
    flux, ivar, mask, info = get("lamost").observe(true_flux, grid, snr, rng)

``sdss`` (the default of every simulation), ``lamost`` (LRS: R ≈ 1800, two arms joined
near 5700–5900 Å, residual tellurics, relative flux calibration) and ``desi`` (B/R/Z arms
with their measured resolution).  Each module has NAME, COVERAGE (Å), ``resolution()`` and
``observe(flux, grid, snr, rng, ...)``; the measured numbers are in
``data/templates/instruments.npz`` (provenance in that folder's PROVENANCE.md).
"""

from __future__ import annotations

from . import desi, lamost, sdss

__all__ = ["INSTRUMENTS", "get", "MIX"]

INSTRUMENTS = {"sdss": sdss, "lamost": lamost, "desi": desi}
#: share of each instrument in ``instrument="mix"`` simulations
MIX = {"sdss": 0.4, "lamost": 0.4, "desi": 0.2}


def get(name: str):
    """The instrument module called ``name`` (case-insensitive)."""
    key = str(name).lower()
    if key not in INSTRUMENTS:
        raise ValueError(f"unknown instrument {name!r}; choose from "
                         f"{', '.join(INSTRUMENTS)} or 'mix'")
    return INSTRUMENTS[key]
