"""A line-driven second look at rows the fit gave to a galaxy or quasar: is it a star after all?

Why: the decision of :mod:`.stage` compares χ² with 3 polynomial terms, so the broad shape of a
spectrum weighs as much as its lines.  LAMOST's relative flux calibration, its arm join near
5800 Å and uncorrected telluric bands bend real stellar spectra by more than 3 terms absorb; at
S/N 30–150 that bend is worth 10³–10⁶ in χ², and a galaxy or quasar template at z 0.3–1.4,
whose rest-frame continuum happens to bend the same way, then beats the star by thousands
although it matches none of the star's lines (34 of 1466 LAMOST stars with S/N_g ≥ 10 went
this way between the three bundled models).  The LAMOST pipeline meets the same problem by
adjusting the templates' continuum before its χ² so that "the lines, not the continuum, drive
the match" (Luo et al. 2015, LAMOST DR1 paper); here the STAR solution near z = 0 and the
winner at its own z are compared once more with ``npoly`` = 16 Legendre terms (shapes broader
than ≈ 350 Å absorbed), on pixels binned by 4 (the coarse-scan binning: 276 km/s bins keep the
stellar lines), and STAR wins where its χ² is lower by more than ``margin``.

On the 48 real SDSS galaxies and quasars every verified winner keeps its class under this
comparison by Δχ² ≥ 77 (docs/verify.md), so the check costs a real extragalactic spectrum
nothing; a star fits its own lines at z ≈ 0, which no redshifted galaxy or quasar does.
"""

from __future__ import annotations

import numpy as np

from .fit import bin_basis, bin_prepared, prepare, scan

__all__ = ["STARCHECK_NPOLY", "STARCHECK_FACTOR", "star_beats_winner"]

#: Legendre terms of the line-driven comparison
STARCHECK_NPOLY = 16
#: pixels per bin of the comparison (as the coarse scan of :func:`.fit.refine`)
STARCHECK_FACTOR = 4


def star_beats_winner(batch, bases, rows, win_type, win_shift, star_halfwidth: int,
                      margin: float, npoly: int = STARCHECK_NPOLY,
                      factor: int = STARCHECK_FACTOR):
    """For the spectra ``rows`` of ``batch`` whose winner is ``win_type`` (GALAXY/QSO) at
    fractional pixel shift ``win_shift``: (mask where STAR wins, Δχ² = χ²(winner) − χ²(STAR))
    under the line-driven comparison (module docstring)."""
    rows = np.asarray(rows, np.int64)
    n = len(rows)
    if not n:
        return np.zeros(0, bool), np.zeros(0)
    prep = prepare(batch.flux[rows], batch.ivar[rows], batch.mask[rows], npoly=npoly)
    pb = bin_prepared(prep, factor)
    local = np.arange(n)
    sb = bin_basis(bases["STAR"], factor)
    hb = -(-star_halfwidth // factor)
    star = scan(pb, sb, local, np.zeros(n, np.int64), np.arange(-hb, hb + 1)).min(1)
    win = np.full(n, np.inf)
    for t in np.unique(win_type):
        sel = np.flatnonzero(win_type == t)
        bb = bin_basis(bases[t], factor)
        kc = np.rint(np.asarray(win_shift, np.float64)[sel] / factor).astype(np.int64)
        win[sel] = scan(pb, bb, sel, kc, np.arange(-1, 2)).min(1)
    delta = win - star
    return np.isfinite(delta) & (delta > margin), delta
