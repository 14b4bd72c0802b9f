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
than ≈ 350 Å absorbed), on pixels binned by 8 (550 km/s, ≈ 9 Å at 5000 Å: the stellar
features that type a star — Balmer lines, Ca II H&K, the G band, Mg b, Na D, TiO bands — are
that wide or wider at R ≈ 1800; the whole-z rescue scan bins by 8 too), and STAR wins where
its χ² is lower by more than ``margin``.

On the 48 real SDSS galaxies and quasars every verified winner keeps its class under this
comparison by Δχ² ≥ 64, and the LAMOST galaxies verified as GALAXY by ≥ 81 (docs/verify.md):
a star fits its own lines at z ≈ 0, which no redshifted galaxy or quasar does.  Cost: one
16-term fit at 5 + 3 binned shifts per checked row (the stage skips winners that fit to within
the noise); on 1000 simulated spectra ≈ 70 µs per spectrum of the batch, no SPECTYPE changed.

A third look, for rows of a survey with a measured residual variance (LAMOST,
:mod:`.survey_noise`) that the line-driven comparison leaves to the galaxy or quasar
(:func:`noise_star_beats_winner`): the same two 3-term fits compared once more with the
variance σ²·(1 + α_p) that real stars of the survey show about the STAR fit.  Spurious
candidates that beat STAR on real LAMOST stars put one line where every LAMOST star is missed
— most often the last ≈ 20 Å of the red arm (≈ 9085 Å: [O II] of a galaxy at z 1.438, Hα of a
quasar at z 0.384) — and the 16-term comparison still rewards that line; a real galaxy or
quasar wins on pixels where LAMOST's ivar holds.  docs/verify.md "Survey-noise STAR check".
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from .fit import bin_basis, bin_sums, prepare, scan
from .model_flux import model_flux

__all__ = ["STARCHECK_NPOLY", "STARCHECK_FACTOR", "star_beats_winner",
           "noise_star_beats_winner"]

#: Legendre terms of the line-driven comparison
STARCHECK_NPOLY = 16
#: pixels per bin of the comparison (as the whole-z rescue scan of the stage)
STARCHECK_FACTOR = 8


def star_beats_winner(prep, bases, rows, win_type, win_shift, star_halfwidth: int,
                      margin: float, npoly: int = STARCHECK_NPOLY,
                      factor: int = STARCHECK_FACTOR, chunk: int = 256):
    """For the spectra ``rows`` of the stage's products ``prep`` (:func:`.fit.prepare`) whose
    winner is ``win_type`` (GALAXY/QSO) at fractional pixel shift ``win_shift``: (mask where
    STAR wins, Δχ² = χ²(winner) − χ²(STAR)) under the line-driven comparison (module
    docstring).  STAR is tried over its whole window around z = 0 (``star_halfwidth``
    pixels, in bins), not at the shift its 3-term fit found: where the continuum is bent
    enough to lose a star, it pulls that shift too.  The winner: its bin ± 1.  In chunks of
    ``chunk`` rows: the 16-term products are 64 kB a spectrum."""
    rows = np.asarray(rows, np.int64)
    delta = np.zeros(len(rows))
    hb = -(-star_halfwidth // factor)
    for lo in range(0, len(rows), chunk):
        sl = slice(lo, lo + chunk)
        pb = _binned(prep, rows[sl], npoly, factor)
        n = len(pb.w)
        star = _at(pb, bases, np.full(n, "STAR"), np.zeros(n), factor, hb)
        win = _at(pb, bases, np.asarray(win_type)[sl], np.asarray(win_shift, np.float64)[sl],
                  factor, 1)
        delta[sl] = win - star
    return np.isfinite(delta) & (delta > margin), delta


def noise_star_beats_winner(batch, good, sigma, rows, win_type, win_shift, win_coef,
                            star_shift, star_coef, boost, margin: float, step: float):
    """For the spectra ``rows`` of ``batch`` (``good`` (N, P): the pixels the fit used,
    ``sigma`` (N,): their LSF beyond the templates', :mod:`.resolution`): (mask where STAR
    wins, Δχ² = χ²(winner) − χ²(STAR)) with the variance σ²·(1 + ``boost``) per pixel
    (``boost`` (P,), :func:`.survey_noise.survey_var_boost`) — the STAR fit near z = 0 and the
    winner (``win_type``) each at the integer shift its coefficients were fitted at
    (``*_shift`` fractional, ``*_coef`` the stage's COEFF), drawn by
    :func:`.model_flux.model_flux` from those coefficients (no refit: the question is which of
    the two fits the stage made explains the pixels a survey's ivar can be trusted on).  STAR
    wins by more than ``margin``."""
    rows = np.asarray(rows, np.int64)
    n = len(rows)
    if not n:
        return np.zeros(0, bool), np.zeros(0)

    def model(types, shift, coef):
        z = 10.0 ** (np.rint(np.asarray(shift, np.float64)) * step) - 1.0
        t = Table({"Z": z, "SPECTYPE": np.asarray(types, "U6"), "COEFF": np.asarray(coef),
                   "CHI2": np.zeros(n)})
        return model_flux(batch.loglam, t, np.asarray(sigma)[rows]).astype(np.float64)
    m_star = model(np.full(n, "STAR"), star_shift, star_coef)
    m_win = model(win_type, win_shift, win_coef)
    f = np.nan_to_num(np.asarray(batch.flux[rows], np.float64))
    w = np.where(good[rows], np.asarray(batch.ivar[rows], np.float64), 0.0)
    w = w / (1.0 + np.asarray(boost, np.float64))[None, :]
    ok = (w > 0) & np.isfinite(m_star) & np.isfinite(m_win)
    delta = np.where(ok, w * ((f - m_win) ** 2 - (f - m_star) ** 2), 0.0).sum(1)
    return delta > margin, delta


def _at(pb, bases, types, shifts, factor: int, reach: int) -> np.ndarray:
    """Lowest binned χ² of each row's basis ``types[r]`` at bin round(shift/factor) ± reach."""
    out = np.full(len(types), np.inf)
    for t in np.unique(types):
        sel = np.flatnonzero(types == t)
        kc = np.rint(shifts[sel] / factor).astype(np.int64)
        out[sel] = scan(pb, bin_basis(bases[t], factor), sel, kc, np.arange(-reach, reach + 1)).min(1)
    return out

def _binned(prep, rows, npoly: int, factor: int):
    """The fit products of ``rows`` on pixels binned by ``factor`` (ivar summed, flux
    ivar-weighted), with the polynomial evaluated on the bins: binning before the 16
    polynomial products instead of after them costs a quarter (the products were 3/4 of
    the check's time).  Taken from the stage's own products (weights 0 where masked, flux
    scaled; χ² comparisons do not depend on the scale).  Bins start at pixel 0, as
    :func:`.fit.bin_basis` expects."""
    nb = prep.npix // factor
    wb = bin_sums(prep.w[rows], nb, factor)
    wfb = bin_sums(prep.x3[rows, prep.npoly - 1], nb, factor)
    fb = np.divide(wfb, wb, out=np.zeros_like(wfb), where=wb > 0)
    return prepare(fb, wb, wb <= 0, npoly=npoly)
