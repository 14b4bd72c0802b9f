"""Template error: where a quasar's fit is limited by the templates, not by the noise.

The four spEigenQSO vectors reproduce a real quasar to a few per cent of its flux (line-shape
diversity: C IV blueshifts, associated and broad absorbers, a proximate damped Lyα system).  At
high S/N that mismatch, not the photon noise, sets the χ², and the χ² is then decided by the
few brightest, worst-modelled pixels (Lyα and C IV, where the absorbers sit) instead of by every
line at once: a DESI quasar at S/N 27 with an associated absorber at z ≈ z_em in Lyα, N V,
Si IV and C IV fitted z 2.916 with χ²/pixel 27 while its C III] and the absorber put it at
2.886 (Redrock 2.8855).

The remedy is the one photometric-redshift template fitting uses (Brammer, van Dokkum & Coppi
2008, EAZY's "template error function"): add the template's own error, a fraction ε of the
flux, to each pixel's variance, σ² = σ²_noise + (ε F)².  F is the data smoothed over 15 pixels
(≈ 1000 km/s; a median, so narrow absorbers do not set it): the same weights for every candidate
of a spectrum, so that all its χ² are compared on the same pixels and weights.  It is applied
only where the template limits the fit: a QSO winner with χ² > ``chi2_ratio`` × N whose
template error exceeds the noise on its median pixel (median ε·F·√ivar > 1, a median S/N above
1/ε ≈ 15); elsewhere the noise dominates and nothing changes.  And it only refines the winner's
z within a window of quasar line velocities (the stage's ``template_error_halfwidth``): re-deciding
among every candidate on these weights sent a real SDSS BAL quasar (z 2.18, its C IV trough
given the continuum's weight) to z 2.99.  ε = 0.068: the median excess fractional
scatter of the 17 real SDSS quasars with S/N > 5 about their verified fits
(``benchmarks/qso_template_error.py``).
"""

from __future__ import annotations

import numpy as np

from ..rowstats import median_snr, running_median
from .fit import prepare
from .frames import Scratch
from .zfind import FIT_KEYS

__all__ = ["QSO_TEMPLATE_ERROR", "with_template_error", "needs_template_error",
           "template_error_dominates", "refit_template_limited"]

#: ε, the quasar templates' fractional error (benchmarks/qso_template_error.py)
QSO_TEMPLATE_ERROR = 0.068
#: F is the data's running median over this many pixels (≈ 1000 km/s on the default grid)
SMOOTH_PIX = 15


def with_template_error(flux: np.ndarray, ivar: np.ndarray, eps: float,
                        smooth: int = SMOOTH_PIX, level=None, iv=None) -> np.ndarray:
    """(N, P) float32 inverse variance with the template error added:
    1 / (1/ivar + (ε·F)²) = ivar / (1 + ivar·(ε·F)²), F = |running median of the flux|
    (0 where ivar is 0 or not finite); ``level``: F already computed for these rows, ``iv``:
    :func:`_clean_ivar` of ``ivar`` already computed."""
    iv = _clean_ivar(ivar) if iv is None else iv
    lev = _level(flux, smooth) if level is None else level
    t = np.multiply(lev, eps, dtype=np.float64)  # float64 whatever level's type; in place
    np.square(t, out=t)      # from here: the operations of iv / (1 + iv·(ε·F)²), in order,
    t *= iv                  # without four temporaries
    t += 1.0
    np.divide(iv, t, out=t)
    return t.astype(np.float32)


def template_error_dominates(flux: np.ndarray, ivar: np.ndarray, good: np.ndarray, eps: float,
                             smooth: int = SMOOTH_PIX, level=None, iv=None) -> np.ndarray:
    """(N,) True where the template error exceeds the noise on the median good pixel,
    median(ε·F·√ivar) > 1 (a median S/N above 1/ε ≈ 15): only there can it set the χ²;
    ``level``: F already computed for these rows (finite, as :func:`_level` gives it: the
    counting test of :func:`_median_above_one` assumes it), ``iv``: :func:`_clean_ivar` of
    ``ivar``."""
    iv = _clean_ivar(ivar) if iv is None else iv
    lev = _level(flux, smooth) if level is None else level
    return _median_above_one(eps * lev, iv, np.asarray(good, bool))


def _clean_ivar(ivar: np.ndarray) -> np.ndarray:
    """ivar in float64, NaN → 0, inf → the float64 max, negative → 0: what both read."""
    iv = np.array(ivar, np.float64)    # a copy: cleaned in place, as nan_to_num + clip would
    np.nan_to_num(iv, copy=False)
    return np.clip(iv, 0, None, out=iv)


def _median_above_one(level: np.ndarray, iv: np.ndarray, good: np.ndarray) -> np.ndarray:
    """(N,) ``median_snr(level, iv, good) > 1`` (:func:`specsift.rowstats.median_snr`: the
    mean of the two middle good values of |level|·√iv; 0 without good pixels), the same
    answer without sorting every row.  Why: the sort was most of the test's cost (≈ 12 ms
    for 150 rows of 4000 pixels), and the answer needs only how many good values exceed 1:
    with n good values of which c exceed 1, both middle ones (sorted positions ⌊(n−1)/2⌋ and
    ⌊n/2⌋) exceed 1 when ⌊(n−1)/2⌋ ≥ n − c, and neither does when ⌊n/2⌋ < n − c (their
    mean is then > 1, resp. ≤ 1, in floating point too: rounding is monotone).  Only a row
    with exactly half of an even count above 1 needs the middle values: ``median_snr``.
    ``level`` and ``iv`` finite (as :func:`_level` and :func:`_clean_ivar` give them)."""
    good = np.asarray(good, bool)
    sn = np.abs(level) * np.sqrt(np.where(good, iv, 0.0))
    n = np.count_nonzero(good, axis=1)
    c = np.count_nonzero(good & (sn > 1.0), axis=1)
    lo, hi = (n - 1) // 2, n // 2
    out = (n > 0) & (lo >= n - c)
    tie = np.flatnonzero((n > 0) & (lo < n - c) & (hi >= n - c))
    if len(tie):
        out[tie] = median_snr(level[tie], iv[tie], good[tie]) > 1.0
    return out


def _level(flux: np.ndarray, smooth: int) -> np.ndarray:
    """F (float64): |running median| of the flux over ``smooth`` pixels (narrow absorbers do
    not set it); scipy's 1-D path (:func:`specsift.rowstats.running_median`).

    Float32 flux without infinities is filtered as float32: a median of an odd count is one
    of its values and float32 → float64 keeps their order, so F is the same numbers, ≈ 20 %
    faster (the filter is most of the refit's own cost on bright quasars).  NaN → 0 either
    way; ±inf → ±(float64 max) as before, hence float64 where the flux has any."""
    f = np.asarray(flux)
    if f.dtype == np.float32 and not np.isinf(f).any():
        return np.abs(running_median(np.nan_to_num(f), smooth)).astype(np.float64)
    return np.abs(running_median(np.nan_to_num(np.asarray(f, np.float64)), smooth))


def needs_template_error(spectype: np.ndarray, chi2: np.ndarray, ngood: np.ndarray,
                         chi2_ratio: float) -> np.ndarray:
    """True where a QSO winner's χ² exceeds ``chi2_ratio`` × its good pixels: the fit is
    worse than the noise allows (the first of the two tests; :func:`template_error_dominates`
    the second)."""
    return (np.asarray(spectype) == "QSO") & (np.asarray(chi2) > chi2_ratio * np.asarray(ngood))


#: memory for the refit's fit products, reused batch after batch (dead once the refit
#: returns; fresh pages each batch were system time of their own)
_REFIT = Scratch()


def refit_template_limited(batch, bad, bases, todo, sol, opt, sigma, ngood, fit_rows) -> None:
    """Rows (``todo``, solutions ``sol``, in place) whose QSO fit is limited by the template:
    the QSO z is refined again within ±``opt.template_error_halfwidth`` pixels on
    template-error weights (``bad``: the stage's (N, P) pixel mask; ``fit_rows``: its window
    fitter).  SPECTYPE and DELTACHI2 stay those of the decision; z, ZERR, CHI2 (now on those
    weights) and COEFF are the new fit's."""
    pos = np.flatnonzero(needs_template_error(sol["type"], sol["chi2"], ngood[todo],
                                              opt.template_error_chi2))
    if not len(pos):
        return
    flux, ivar, bad = batch.flux[todo[pos]], batch.ivar[todo[pos]], bad[todo[pos]]
    eps, iv, good = opt.qso_template_error, _clean_ivar(ivar), (ivar > 0) & ~bad
    lev = _level(flux, SMOOTH_PIX)        # row by row: the same F for the test and the weights
    keep = template_error_dominates(flux, ivar, good, eps, level=lev, iv=iv)
    if not keep.any():
        return
    pos, rows = pos[keep], todo[pos[keep]]
    sub = prepare(flux[keep], with_template_error(flux[keep], ivar[keep], eps, level=lev[keep],
                                                  iv=iv[keep]), bad[keep], scratch=_REFIT)
    k = len(rows)
    res = fit_rows(sub, bases, np.arange(k), np.full(k, "QSO", "U6"), sol["z"][pos],
                   np.full(k, opt.template_error_halfwidth), opt,
                   None if sigma is None else np.asarray(sigma)[rows])
    sol["z"][pos] = bases["QSO"].z_of(res["shift"])
    for key in FIT_KEYS:
        sol[key][pos] = res[key]
