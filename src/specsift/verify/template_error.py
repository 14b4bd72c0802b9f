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
    # |level|·√iv, in place in one float64 buffer (five fresh (N, P) temporaries were most
    # of the test's time); off the good pixels its values differ (√iv, not 0) but are not read
    sn = np.sqrt(iv)
    sn *= np.abs(level)
    above = np.greater(sn, 1.0)
    above &= good
    n = np.count_nonzero(good, axis=1)
    c = np.count_nonzero(above, axis=1)
    lo, hi = (n - 1) // 2, n // 2
    out = (n > 0) & (lo >= n - c)
    tie = np.flatnonzero((n > 0) & (lo < n - c) & (hi >= n - c))
    if len(tie):
        out[tie] = median_snr(level[tie], iv[tie], good[tie]) > 1.0
    return out


#: pixels a block of :func:`_may_dominate`'s bound on F
_BOUND_BLOCK = 8


def _may_dominate(flux: np.ndarray, ivar: np.ndarray, good: np.ndarray, eps: float,
                  smooth: int = SMOOTH_PIX) -> np.ndarray:
    """(N,) False only where :func:`template_error_dominates` is False whatever the running
    median F is: there the median good pixel's ε·U·√ivar ≤ 1 for an upper bound U ≥ F, the
    largest |flux| of the ``_BOUND_BLOCK``-pixel blocks that can meet the pixel's
    ``smooth``-pixel window (a median of a window is at most its largest |value|; the edge
    copies of the filter's padding are end pixels, inside the end blocks).  The median of
    the bounds is then ≥ that of the values (order statistics of a pointwise larger set),
    and the products are formed in the test's order (|ε|·U first, then ×√ivar: rounding is
    monotone), so a row rejected here is rejected by the test too, bit for bit.

    Why: the running median is most of the refit's cost (≈ 0.18 ms a row), and a quasar
    with χ² > 2N (a BAL trough, a strong absorber) at S/N below ≈ 1/ε needs none: the bound
    is ≈ 1.2 × the value at S/N ≈ 10, a few µs a row.  Rows with an infinite flux pass
    (their F takes the float64 path, beyond any float32 bound)."""
    f = np.asarray(flux)
    a = np.abs(f)                  # NaN flux is 0 to the filter: fmax below passes over it
    n, P = a.shape
    B = _BOUND_BLOCK
    reach = -(-(smooth // 2) // B)             # blocks on each side a window can reach
    cut = P - P % B
    bm = np.empty((n, -(-P // B)), a.dtype)    # each block's largest |flux| (strided fmax:
    bm[:, :cut // B] = a[:, 0:cut:B]           # a reduce over a short last axis is ≈ 6×
    for j in range(1, B):                      # slower)
        np.fmax(bm[:, :cut // B], a[:, j:cut:B], out=bm[:, :cut // B])
    if cut < P:
        bm[:, -1] = np.fmax.reduce(a[:, cut:], axis=1)
    u = bm.copy()
    for k in range(1, reach + 1):
        np.fmax(u[:, k:], bm[:, :-k], out=u[:, k:])
        np.fmax(u[:, :-k], bm[:, k:], out=u[:, :-k])
    with np.errstate(invalid="ignore"):        # NaN or negative ivar: not good, not read
        sn = np.sqrt(ivar, dtype=np.float64)
        sn *= np.multiply(np.repeat(u, B, axis=1)[:, :P], abs(eps), dtype=np.float64)
        above = np.greater(sn, 1.0)
    above &= good
    ng = np.count_nonzero(good, axis=1)
    c = np.count_nonzero(above, axis=1)
    return ((ng > 0) & (ng // 2 >= ng - c)) | np.isinf(a).any(1)


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
    eps, good = opt.qso_template_error, (ivar > 0) & ~bad
    maybe = _may_dominate(flux, ivar, good, eps)   # the others fail the test whatever F is
    if not maybe.any():
        return
    if not maybe.all():
        pos, flux, ivar, bad, good = pos[maybe], flux[maybe], ivar[maybe], bad[maybe], good[maybe]
    iv = _clean_ivar(ivar)
    lev = _level(flux, SMOOTH_PIX)        # row by row: the same F for the test and the weights
    keep = template_error_dominates(flux, ivar, good, eps, level=lev, iv=iv)
    if not keep.any():
        return
    if not keep.all():                # (where all pass, no copies of five (N, P) arrays)
        pos, flux, ivar, bad, lev, iv = (x[keep] for x in (pos, flux, ivar, bad, lev, iv))
    rows = todo[pos]
    sub = prepare(flux, with_template_error(flux, ivar, eps, level=lev, iv=iv), bad,
                  scratch=_REFIT)
    k = len(rows)
    res = fit_rows(sub, bases, np.arange(k), np.full(k, "QSO", "U6"), sol["z"][pos],
                   np.full(k, opt.template_error_halfwidth), opt,
                   None if sigma is None else np.asarray(sigma)[rows])
    sol["z"][pos] = bases["QSO"].z_of(res["shift"])
    for key in FIT_KEYS:
        sol[key][pos] = res[key]
