"""From χ² curves to redshift, its error, DELTACHI2, the degeneracy ratio and ZWARN.

The curves come from :class:`~specsift.models.eigen.chi2scan.Chi2Scanner` (possibly float32).
The χ² of the best and of the second solution are recomputed exactly (float64 direct
fits, ``Chi2Scanner.fit_at``) at their integer shifts, and each is refined by a parabola
through the minimum and its two neighbours:

* the best solution: z from the vertex of the parabola through the exact χ² at its
  integer minimum and both neighbours (:func:`exact_vertex`), ZERR from its curvature:
  χ² ≈ χ²_min + a·x², so Δχ² = 1 at x = 1/√a pixels, and dz/dx = ln10·δ·(1+z) on a log
  grid.  The second solution's vertex comes from the scan curve (float32 values accurate
  to ≪ 1 near a minimum, enough for DELTACHI2, not for a curvature).
* DELTACHI2 (Redrock's definition): χ² of the best local minimum of any class whose
  velocity differs from the best solution by more than 1000 km/s, minus the best χ²
  (0 when there is none, as in Redrock).  On a log-λ grid a velocity difference is a
  fixed number of pixels at every z (1000 km/s ≈ 14.5 px for δ = 1e-4), so the
  exclusion window is the same for every class.
* Degeneracy ratio (GaSNet-III): R = (χ²₂ − χ²₁)/χ²₁ with the same second minimum.
* ZWARN: SMALL_DELTA_CHI2 when DELTACHI2 < 9, Z_FITLIMIT when the best minimum is the
  first or last shift of its class's range, NODATA when a spectrum has no good pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...flags import ZWARN
from ...verify.starcheck import chi2_gap as pixel_chi2_gap
from .chi2scan import Chi2Scanner, velocity_pixels, z_to_shift

__all__ = ["ZSolution", "solve_redshifts", "zerr_scales", "parabola", "local_minima",
           "exact_fits", "exact_vertex", "curve_vertex", "curvature_zerr", "pixel_zerr",
           "pixel_chi2_gap", "second_fit", "MIN_DELTACHI2", "MAX_VELO_DIFF"]

MIN_DELTACHI2 = 9.0
MAX_VELO_DIFF = 1000.0     # km/s


@dataclass
class ZSolution:
    best_class: np.ndarray     # (N,) index into the scanner's bases
    shift: np.ndarray          # (N,) refined fractional shift of the best solution
    z: np.ndarray
    zerr: np.ndarray
    chi2: np.ndarray           # (N,) refined best χ²
    chi2_class: np.ndarray     # (N, C) exact χ² at each class's own integer minimum
    z_class: np.ndarray        # (N, C) redshift of each class's integer minimum
    chi2_second: np.ndarray    # (N,) χ² of the next-best solution > 1000 km/s away
    second_class: np.ndarray   # (N,) its class (-1 when none)
    z_second: np.ndarray
    deltachi2: np.ndarray
    degeneracy: np.ndarray
    zwarn: np.ndarray
    model: np.ndarray | None = None   # (N, P) best-fit model at the best integer shift


def parabola(ym, y0, yp):
    """Vertex offset x ∈ [-1, 1], vertex value and curvature a of y = y0 + b·x + a·x²."""
    a = 0.5 * (ym + yp - 2.0 * y0)
    b = 0.5 * (yp - ym)
    good = a > 0
    safe = np.where(good, a, 1.0)
    x = np.where(good, np.clip(-b / (2.0 * safe), -1.0, 1.0), 0.0)
    val = np.where(good, y0 + b * x + a * x * x, y0)
    return x, val, np.where(good, a, np.nan)


def local_minima(curve: np.ndarray) -> np.ndarray:
    """(N, U) bool: y[i] ≤ both neighbours (an edge point counts if ≤ its one neighbour)."""
    lm = np.ones(curve.shape, bool)
    if curve.shape[1] > 1:
        lm[:, 1:] &= curve[:, 1:] <= curve[:, :-1]
        lm[:, :-1] &= curve[:, :-1] <= curve[:, 1:]
    return lm & np.isfinite(curve)


def exact_fits(scanner, flux, ivar, cls, shift, want_model=False):
    """Exact χ² (and model) for rows with class ``cls`` at integer ``shift`` (NaN: cls<0)."""
    out = np.full(len(cls), np.nan)
    model = np.zeros(flux.shape) if want_model else None
    for c in np.unique(cls[cls >= 0]):
        rows = np.nonzero(cls == c)[0]
        m, _, chi2 = scanner.fit_at(flux[rows], ivar[rows], int(c), shift[rows],
                                    return_model=want_model)
        out[rows] = chi2
        if want_model:
            model[rows] = m
    return out, model


def curve_vertex(curves, cls, idx, nsh):
    """Parabola through the curve at idx-1, idx, idx+1 of each row's class."""
    n = len(cls)
    y0, ym, yp = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for c in np.unique(cls[cls >= 0]):
        rows = np.nonzero(cls == c)[0]
        cur = curves[c]
        i = idx[rows]
        y0[rows] = cur[rows, i]
        ym[rows] = cur[rows, np.clip(i - 1, 0, cur.shape[1] - 1)]
        yp[rows] = cur[rows, np.clip(i + 1, 0, cur.shape[1] - 1)]
    edge = (idx <= 0) | (idx >= nsh - 1)
    x, val, a = parabola(np.where(edge, y0, ym), y0, np.where(edge, y0, yp))
    return np.where(edge, 0.0, x), np.where(edge, y0, val), np.where(edge, np.nan, a), edge, y0


def exact_vertex(scanner, flux, ivar, cls, j, e0, edge):
    """Vertex offset, value and curvature of the parabola through the *exact* (float64) χ²
    at integer shifts ``j`` − 1, ``j``, ``j`` + 1 of class ``cls`` (``e0``: the exact χ² at
    ``j``, already computed).  Why not the scan curve's parabola: its curvature is a
    difference of float32 χ² sums of thousands, which moved ZERR by up to 11 % between two
    CPUs' BLAS kernels.  Edge rows (and ``cls`` < 0) keep x = 0, ``e0`` and NaN curvature."""
    inner = ~np.asarray(edge, bool) & (np.asarray(cls) >= 0)
    c_in = np.where(inner, cls, -1)
    em = np.where(inner, exact_fits(scanner, flux, ivar, c_in, j - 1)[0], e0)
    ep = np.where(inner, exact_fits(scanner, flux, ivar, c_in, j + 1)[0], e0)
    return parabola(em, e0, ep)


def curvature_zerr(a, z, step: float):
    """ZERR of χ² ≈ χ²_min + a·x²: Δχ² = 1 at x = 1/√a pixels (1 pixel where a is not a
    positive number), dz/dx = ln10·δ·(1+z) on a log grid."""
    a = np.asarray(a, float)
    ok = np.isfinite(a) & (a > 0)
    return pixel_zerr(np.where(ok, 1.0 / np.sqrt(np.where(ok, a, 1.0)), 1.0), z, step)


def pixel_zerr(sig_px, z, step: float):
    """ZERR of a σ of ``sig_px`` pixels at redshift ``z`` on a log grid of ``step``:
    dz/dx = ln10·δ·(1+z)."""
    return math.log(10.0) * step * (1.0 + np.asarray(z)) * np.asarray(sig_px)


def second_fit(scanner, sol: "ZSolution", flux, ivar, step: float) -> dict:
    """The runner-up solution's model (NaN where there is none) and each pixel's
    χ²(second) − χ²(best) (:func:`pixel_chi2_gap`), for ``explain``."""
    second = np.full_like(sol.model, np.nan)
    for c in np.unique(sol.second_class[sol.second_class >= 0]):
        rows = np.flatnonzero(sol.second_class == c)
        shift = z_to_shift(sol.z_second[rows], step)
        second[rows] = scanner.fit_at(flux[rows], ivar[rows], int(c), shift)[0]
    gap = pixel_chi2_gap(flux, ivar, second, sol.model)
    return {"model_second": second, "chi2_pixel_gap": np.nan_to_num(gap)}


def solve_redshifts(scanner: Chi2Scanner, curves: list[np.ndarray], flux, ivar,
                    step: float, ngood: np.ndarray | None = None,
                    penalty=None) -> ZSolution:
    """Turn the per-class χ² curves of N spectra into the redshift solution.

    The curves locate the minima and give the parabola's shape; the χ² of the best and
    the second solution are then recomputed exactly (two direct fits per spectrum, the
    first also giving the best-fit model, kept in ``ZSolution.model``).
    ``penalty`` (C,): a constant added to each class's χ² (−2 ln prior, as Redrock adds
    its penalties to zchi2); every χ² in the solution includes it.
    """
    pen = np.zeros(len(curves)) if penalty is None else np.asarray(penalty, float)
    curves = [c + p for c, p in zip(curves, pen)]
    flux = np.asarray(flux, np.float64)
    ivar = np.asarray(ivar, np.float64)
    n = flux.shape[0]
    rows = np.arange(n)
    chi2_class = np.stack([c.min(axis=1) for c in curves], axis=1)      # (N, C)
    argm = np.stack([c.argmin(axis=1) for c in curves], axis=1)
    jmins = np.array([b.jmin for b in scanner.bases])
    nshs = np.array([b.nshift for b in scanner.bases])
    z_class = 10.0 ** ((jmins[None, :] + argm) * step) - 1.0
    best = np.argmin(np.where(np.isfinite(chi2_class), chi2_class, np.inf), axis=1)
    bidx = argm[rows, best]
    x1, v1, a1, edge1, y01 = curve_vertex(curves, best, bidx, nshs[best])
    j1 = jmins[best] + bidx
    # next-best local minimum > 1000 km/s from the best, over every class
    win = velocity_pixels(MAX_VELO_DIFF, step)
    sec_val = np.full(n, np.inf)
    sec_cls = np.full(n, -1)
    sec_idx = np.zeros(n, int)
    for c, cur in enumerate(curves):
        sb = scanner.bases[c]
        j = sb.jmin + np.arange(sb.nshift)
        far = np.abs(j[None, :] - (j1 + x1)[:, None]) > win
        cand = np.where(local_minima(cur) & far, cur, np.inf)
        k = cand.argmin(axis=1)
        v = cand[rows, k]
        better = v < sec_val
        sec_val[better], sec_cls[better], sec_idx[better] = v[better], c, k[better]
    has2 = np.isfinite(sec_val)
    sc2 = np.where(has2, sec_cls, 0)
    x2, v2, _, edge2, y02 = curve_vertex(curves, np.where(has2, sec_cls, -1), sec_idx, nshs[sc2])
    j2 = jmins[sc2] + sec_idx
    # exact χ² at the two integer minima; the parabola keeps its (scan) depth below them
    e1, model = exact_fits(scanner, flux, ivar, best, j1, want_model=True)
    e2, _ = exact_fits(scanner, flux, ivar, np.where(has2, sec_cls, -1), j2)
    chi1 = e1 + pen[best] - (y01 - v1)
    chi2v = np.where(has2, e2 + pen[sc2] - (y02 - v2), np.nan)
    # exact values may reorder the two solutions (float32 scan): keep the lower first
    swap = has2 & (chi2v < chi1)
    e_best = np.where(swap, e2, e1)
    if swap.any():
        best, sec_cls = np.where(swap, sec_cls, best), np.where(swap, best, sec_cls)
        x1, x2 = np.where(swap, x2, x1), np.where(swap, x1, x2)
        j1, j2 = np.where(swap, j2, j1), np.where(swap, j1, j2)
        chi1, chi2v = np.where(swap, chi2v, chi1), np.where(swap, chi1, chi2v)
        edge1 = np.where(swap, edge2, edge1)
        sw = np.nonzero(swap)[0]
        model[sw] = exact_fits(scanner, flux[sw], ivar[sw], best[sw], j1[sw], want_model=True)[1]
    # the best solution's vertex and curvature from exact χ² (exact_vertex: why)
    x1, v1, a1 = exact_vertex(scanner, flux, ivar, best, j1, e_best, edge1)
    chi1 = v1 + pen[best]
    shift1 = j1 + x1
    z = 10.0 ** (shift1 * step) - 1.0
    zerr = curvature_zerr(a1, z, step)
    deltachi2 = np.where(has2, chi2v - chi1, 0.0)
    degeneracy = np.where(has2 & (chi1 > 0), deltachi2 / np.where(chi1 > 0, chi1, 1.0), 0.0)
    zwarn = np.zeros(n, np.int64)
    zwarn[deltachi2 < MIN_DELTACHI2] |= int(ZWARN.SMALL_DELTA_CHI2)
    zwarn[edge1] |= int(ZWARN.Z_FITLIMIT)
    if ngood is not None:
        zwarn[np.asarray(ngood) == 0] |= int(ZWARN.NODATA)
    chi2_class[rows, best] = chi1
    s2 = np.nonzero(has2)[0]
    chi2_class[s2, sec_cls[s2]] = np.minimum(chi2_class[s2, sec_cls[s2]], chi2v[s2])
    return ZSolution(best_class=best, shift=shift1, z=z, zerr=zerr, chi2=chi1,
                     chi2_class=chi2_class, z_class=z_class, chi2_second=chi2v,
                     second_class=np.where(has2, sec_cls, -1),
                     z_second=np.where(has2, 10.0 ** ((j2 + x2) * step) - 1.0, np.nan),
                     deltachi2=deltachi2, degeneracy=degeneracy, zwarn=zwarn, model=model)


def zerr_scales(sol: ZSolution, z_true, ngood, labels, coverage: float = 0.6827):
    """(per-class factor on ZERR, report): the ``coverage`` quantile of |Δz|/ZERR over the
    spectra *predicted* as each class (how the factor is applied), failures included.

    A class with fewer than 10 such spectra keeps factor 1 (too few for a quantile).  The
    report has, per class label, the count and the 1σ coverage before and after.
    """
    ratio = np.abs(sol.z - z_true) / np.where(sol.zerr > 0, sol.zerr, np.nan)
    scale = np.ones(len(labels))
    out = {"coverage_target": coverage, "n": {}, "scale": {}, "before": {}, "after": {}}
    for c, label in enumerate(labels):
        r = ratio[(sol.best_class == c) & np.isfinite(ratio) & (ngood > 0)]
        out["n"][label] = int(r.size)
        if r.size < 10:
            continue
        scale[c] = max(float(np.quantile(r, coverage)), 1e-3)
        out["before"][label] = float(np.mean(r < 1.0))
        out["after"][label] = float(np.mean(r < scale[c]))
    out["scale"] = dict(zip(labels, scale.tolist()))
    return scale, out
