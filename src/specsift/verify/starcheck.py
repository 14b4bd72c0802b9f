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

from .fit import NPOLY, bin_basis, bin_sums, legendre, prepare
from .frames import Scratch
from .polyfirst import poly_factor, scan_poly_first
from .resolution import convolved
from .templates import bases_for

__all__ = ["STARCHECK_NPOLY", "STARCHECK_FACTOR", "star_beats_winner",
           "noise_star_beats_winner", "whole_pixel_models", "catalog_models", "pixel_gap", "chi2_gap"]

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
        pf = poly_factor(pb)             # the 16-term block: once a row, for both scans
        n = len(pb.w)
        star = _at(pb, pf, bases, np.full(n, "STAR"), np.zeros(n), factor, hb)
        win = _at(pb, pf, bases, np.asarray(win_type)[sl],
                  np.asarray(win_shift, np.float64)[sl], factor, 1)
        delta[sl] = win - star
    return np.isfinite(delta) & (delta > margin), delta


def noise_star_beats_winner(batch, good, sigma, rows, win_type, win_ishift, win_coef,
                            star_ishift, star_coef, boost, margin: float):
    """For the spectra ``rows`` of ``batch`` (``good`` (N, P): the pixels the fit used,
    ``sigma`` (N,): their LSF beyond the templates', :mod:`.resolution`): (mask where STAR
    wins, Δχ² = χ²(winner) − χ²(STAR)) with the variance σ²·(1 + ``boost``) per pixel
    (``boost`` (P,), :func:`.survey_noise.survey_var_boost`) — the STAR fit near z = 0 and the
    winner (``win_type``) each drawn at the integer shift its coefficients were fitted at
    (``*_ishift``, ``*_coef``: the decision's fit, before any template-error refit, whose
    coefficients were fitted on other weights; :func:`whole_pixel_models`), no refit: the
    question is which of the two fits the decision made explains the pixels a survey's ivar
    can be trusted on.  STAR wins by more than ``margin``.

    Cost of the two models (``benchmarks/starcheck_cost.py --n 400``: GALAXY and QSO winners
    on the default grid, 4 LSF widths; loaded 2-core machine): 0.06–0.07 ms per checked row,
    against 0.54–0.61 ms drawn row by row with ``np.interp`` (:func:`.model_flux.model_flux`);
    the whole stage with the check on, 48 SDSS galaxies/quasars as LAMOST (26 checked):
    +0.08–0.12 ms per spectrum, +0.35–0.43 before (``--only-stage``, docs/verify.md)."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros(0, bool), np.zeros(0)
    sig = np.asarray(sigma, np.float64)[rows]
    m_star = whole_pixel_models(batch.loglam, np.full(len(rows), "STAR"), star_ishift,
                                star_coef, sig)
    m_win = whole_pixel_models(batch.loglam, win_type, win_ishift, win_coef, sig)
    w = np.where(good[rows], np.asarray(batch.ivar[rows], np.float64), 0.0)
    delta = pixel_gap(batch.flux[rows], w / (1.0 + np.asarray(boost, np.float64))[None, :],
                      m_star, m_win).sum(1)
    return delta > margin, delta


def whole_pixel_models(loglam, types, ishift, coef, sigma=None) -> np.ndarray:
    """(n, P) float64 model flux of ``n`` fits: basis ``types[i]`` (broadened by ``sigma[i]``
    pixels, :func:`.resolution.convolved`) at the integer pixel shift ``ishift[i]`` times
    ``coef[i]`` (templates, then :data:`.fit.NPOLY` Legendre terms) — the model the fit scored,
    where :func:`.model_flux.model_flux` interpolates to a catalog's Z.  At a whole pixel the
    templates a row meets are a slice of the basis: one matrix-vector product a row, no
    interpolation; NaN rows where the type has no basis.  The one drawing the survey-noise check, its α
    (``benchmarks/build_lamost_var.py``) and its diagnostics (``benchmarks/verify_proposers.py``)
    share."""
    loglam = np.asarray(loglam, np.float64)
    bases = bases_for(loglam)
    types = np.asarray(types).astype(str)
    n, npix = len(types), loglam.size
    ishift = np.asarray(ishift, np.int64)
    coef = np.asarray(coef, np.float64)
    sig = np.zeros(n) if sigma is None else np.broadcast_to(np.asarray(sigma, np.float64), (n,))
    out = np.full((n, npix), np.nan)
    P = legendre(npix)
    for t, s in sorted(set(zip(types, sig))):
        if t not in bases:
            continue
        b = convolved(bases[t], s)
        T = b.ntemplate
        sel = np.flatnonzero((types == t) & (sig == s))
        # at integer shift s, data pixel p meets template pixel p + offset − s: a slice of
        # the templates (zero-padded by the grid's length on each side, so every slice is in)
        pad = np.zeros((T, b.vectors.shape[1] + 2 * npix), np.float64)
        pad[:, npix:npix + b.vectors.shape[1]] = b.vectors
        start = np.clip(b.offset - ishift[sel] + npix, 0, pad.shape[1] - npix)
        c = coef[sel, :T]
        for k, i in enumerate(sel):
            out[i] = c[k] @ pad[:, start[k]:start[k] + npix]
        out[sel] += coef[sel, T:T + NPOLY] @ P
    return out


def catalog_models(loglam, catalog, flux, w, sigma=None) -> np.ndarray:
    """(n, P) :func:`whole_pixel_models` of the rows of a verified ``catalog`` (Z, SPECTYPE,
    COEFF), for scripts that have the catalog, not the stage's integer shifts: the shift is
    Z's nearest pixel, and where Z sits half-way between two (the fine stage's parabola
    clipped at ±0.5) the one of the two whose model has the lower χ² on ``flux``, ``w`` —
    the coefficients were fitted at one of them.  A quasar's Z after
    :func:`.zfind.quasar_posterior` may lie pixels from its fit: its model is that far off."""
    step = bases_for(np.asarray(loglam, np.float64))["STAR"].step
    shift = np.log10(1.0 + np.asarray(catalog["Z"], np.float64)) / step
    types = np.asarray(catalog["SPECTYPE"]).astype(str)
    coef = np.asarray(catalog["COEFF"], np.float64)
    lo = np.floor(shift).astype(np.int64)
    half = np.abs(shift - lo - 0.5) < 1e-6
    out = whole_pixel_models(loglam, types, np.where(half, lo, np.rint(shift)), coef, sigma)
    if half.any():
        h = np.flatnonzero(half)
        sig = None if sigma is None else np.broadcast_to(np.asarray(sigma), (len(types),))[h]
        up = whole_pixel_models(loglam, types[h], lo[h] + 1, coef[h], sig)
        f, ww = np.nan_to_num(np.asarray(flux, np.float64)[h]), np.asarray(w, np.float64)[h]
        better = (ww * (f - up) ** 2).sum(1) < (ww * (f - out[h]) ** 2).sum(1)
        out[h[better]] = up[better]
    return out


def chi2_gap(flux, w, model_a, model_b) -> np.ndarray:
    """(N, P) each good pixel's χ²(``model_a``) − χ²(``model_b``) on the weights ``w`` (0 where
    w ≤ 0 or the flux is not finite; NaN where a model is): the pixels that decide between two
    fits (they sum to the χ² gap).  In the input's dtype; eigen's robust check and ``explain``
    read it too (:func:`specsift.models.eigen.zsolve.pixel_chi2_gap`)."""
    good = (w > 0) & np.isfinite(flux)
    return np.where(good, w * ((flux - model_a) ** 2 - (flux - model_b) ** 2), 0.0)


def pixel_gap(flux, w, m_star, m_win) -> np.ndarray:
    """(n, P) per-pixel χ² gap w·((f − m_win)² − (f − m_star)²) (> 0: STAR fits the pixel
    better) on the weights ``w``, in float64, 0 where w ≤ 0 or a model or the flux is not
    finite — summed, the survey-noise check's Δχ²."""
    f = np.asarray(flux, np.float64)
    w = np.asarray(w, np.float64)
    with np.errstate(invalid="ignore"):
        gap = chi2_gap(f, w, m_win, m_star)
    return np.where(np.isfinite(m_star) & np.isfinite(m_win), gap, 0.0)


def _at(pb, pf, bases, types, shifts, factor: int, reach: int) -> np.ndarray:
    """Lowest binned χ² of each row's basis ``types[r]`` at bin round(shift/factor) ± reach
    (``pf``: :func:`.polyfirst.poly_factor` of ``pb``)."""
    out = np.full(len(types), np.inf)
    for t in np.unique(types):
        sel = np.flatnonzero(types == t)
        kc = np.rint(shifts[sel] / factor).astype(np.int64)
        out[sel] = scan_poly_first(pb, pf, bin_basis(bases[t], factor), sel, kc,
                                   np.arange(-reach, reach + 1)).min(1)
    return out

def _binned(prep, rows, npoly: int, factor: int):
    """The fit products of ``rows`` on pixels binned by ``factor`` (ivar summed, flux
    ivar-weighted), with the polynomial evaluated on the bins: binning before the 16
    polynomial products instead of after them costs a quarter (the products were 3/4 of
    the check's time).  Taken from the stage's own products (weights 0 where masked, flux
    scaled; χ² comparisons do not depend on the scale).  Bins start at pixel 0, as
    :func:`.fit.bin_basis` expects.  Held in :data:`_BINNED_SCRATCH` (valid until the next
    call)."""
    nb = prep.npix // factor
    wb = _bin_plane(prep, 0, rows, nb, factor)
    wfb = _bin_plane(prep, prep.npoly, rows, nb, factor)
    fb = np.divide(wfb, wb, out=np.zeros_like(wfb), where=wb > 0)
    return prepare(fb, wb, wb <= 0, npoly=npoly, scratch=_BINNED_SCRATCH)


def _bin_plane(prep, k: int, rows, nb: int, factor: int) -> np.ndarray:
    """:func:`.fit.bin_sums` of plane ``k`` of ``prep.d`` for ``rows`` (sorted): binned
    straight from a view of the rows' enclosing range where the rows fill at least half of
    it (the stage checks most rows of a bright batch), then indexed — the same sums without
    the (rows, P) copy that fancy indexing made first (≈ half of the binning's time)."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return bin_sums(prep.d[rows, k], nb, factor)
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if hi - lo > 2 * len(rows) or np.any(np.diff(rows) <= 0):
        return bin_sums(prep.d[rows, k], nb, factor)
    b = bin_sums(prep.d[lo:hi, k], nb, factor)
    return b if hi - lo == len(rows) else b[rows - lo]


#: memory for :func:`_binned`'s products (17 rows of ~500 bins a spectrum, 256 spectra a
#: chunk: ~9 MB), reused chunk after chunk: each chunk's are dead once its two scans return,
#: and fresh pages every chunk were system time of their own
_BINNED_SCRATCH = Scratch()
