"""A window of shifts around a candidate, refined: a coarse scan on binned data
(:func:`coarse_stage`), then a walk at full resolution to the integer χ² minimum and a parabola
through it and its neighbours (:func:`fine_stage`).  Two stages so that :mod:`.windows` can
stop a window after its coarse scan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fit import Prepared, scan
from .templates import Basis

__all__ = ["Refined", "Coarse", "CoarsePlan", "coarse_stage", "coarse_plan", "fine_stage"]


def _walk(prep: Prepared, basis: Basis, spec, best, lim_lo, lim_hi, steps: int = 5,
          reach: int = 2, lean=None):
    """Walk downhill one pixel at a time (at most ``steps`` decisions) from ``best`` while the
    χ² minimum of (best − 1, best, best + 1) is at an end: the integer minimum, χ² at it and
    its neighbours (R, 3), and the coefficients at it.

    Why this way: shifts ``best ± reach`` are scanned at once (one common frame, one GEMM per
    chunk: a coarse minimum on 4-pixel bins lies within ±2 pixels of the fine one nearly
    always), and the walk reads them from that table; only a row that walks past them gets
    its one missing shift scanned.  The decisions are those of a walk that scans
    (best − 1, best, best + 1) at every step.

    ``lean`` (R,) of −1, 0, +1: the scanned block is centred on ``best + lean`` — the side
    where the coarse χ² parabola puts the minimum, so that fewer rows walk past the block
    (on simulated spectra 27 % → 18 %); the decisions do not depend on it."""
    R, k = len(spec), basis.ntemplate + prep.npoly
    mid = reach + steps + 1                   # table column of the starting shift
    tab = np.zeros((R, 2 * mid + 1))
    tcf = np.zeros((R, 2 * mid + 1, k))
    known = np.zeros((R, 2 * mid + 1), bool)
    lean = np.zeros(R, np.int64) if lean is None else np.asarray(lean, np.int64)
    offs = np.arange(-reach, reach + 1)
    cols = mid + lean[:, None] + offs[None]
    rr = np.arange(R)[:, None]
    tab[rr, cols], tcf[rr, cols] = scan(prep, basis, spec, best + lean, offs, coef=True)
    known[rr, cols] = True
    best, pos = best.copy(), np.full(R, mid)
    c3, coef = np.zeros((R, 3)), np.zeros((R, k))
    todo = np.arange(R)
    for _ in range(steps):
        if not len(todo):
            break
        # the missing neighbours of both sides in one scan: a scan of a few rows costs
        # mostly its fixed ~0.4 ms (the Cholesky's column loop), so one call, not two
        need = [(todo[~known[todo, pos[todo] + side]], side) for side in (-1, 1)]
        rows = np.concatenate([r for r, _ in need])
        if len(rows):
            col = np.concatenate([pos[r] + side for r, side in need])
            cn, cfn = scan(prep, basis, spec[rows], best[rows] + col - pos[rows],
                           np.zeros(1, np.int64), coef=True)
            tab[rows, col], tcf[rows, col] = cn[:, 0], cfn[:, 0]
            known[rows, col] = True
        c = np.take_along_axis(tab[todo], pos[todo][:, None] + np.array([-1, 0, 1]), 1)
        c3[todo], coef[todo] = c, tcf[todo, pos[todo]]
        kk = np.argmin(c, axis=1)
        move = (kk != 1) & (best[todo] > lim_lo[todo]) & (best[todo] < lim_hi[todo])
        todo, d = todo[move], kk[move] - 1
        best[todo] += d
        pos[todo] += d
    return best, c3, coef


def _lean(chi2: np.ndarray, j: np.ndarray) -> np.ndarray:
    """−1, 0 or +1 per row: the side of the coarse minimum ``j`` (column of ``chi2``) on which
    a parabola through it and its neighbours puts the minimum (0 at the window's edge or
    where the parabola has no minimum)."""
    S = chi2.shape[1]
    if S < 3:
        return np.zeros(len(j), np.int64)
    jj = np.clip(j, 1, S - 2)
    c = np.take_along_axis(chi2, jj[:, None] + np.array([-1, 0, 1]), 1)
    curv = c[:, 0] - 2 * c[:, 1] + c[:, 2]
    side = np.sign(c[:, 0] - c[:, 2]).astype(np.int64)     # toward the lower neighbour
    return np.where((jj == j) & (curv > 0), side, 0)


@dataclass
class Refined:
    shift: np.ndarray      # (R,) fractional pixel shift of the χ² minimum
    shift_err: np.ndarray  # (R,) 1σ in pixels from the curvature (Δχ² = 1)
    chi2: np.ndarray       # (R,) χ² at the integer minimum
    coef: np.ndarray       # (R, T+K) at the integer minimum (flux scale restored)
    at_edge: np.ndarray    # (R,) the minimum stayed at the edge of the allowed range
    ishift: np.ndarray     # (R,) int: the integer minimum ``coef`` was fitted at (``shift``
    #                        may sit exactly ±0.5 from it, where rounding cannot recover it)


@dataclass
class Coarse:
    """Where :func:`coarse_stage` leaves each row for :func:`fine_stage`."""
    spec: np.ndarray       # (R,) spectrum
    best: np.ndarray       # (R,) integer shift the fine walk starts from
    lean: np.ndarray | None  # (R,) side of ``best`` the fine block leans to (:func:`_lean`)
    lim_lo: np.ndarray     # (R,) walk limits
    lim_hi: np.ndarray
    chi2: np.ndarray       # (R,) lowest χ² of the coarse scan
    halfwidth: int

    def take(self, rows) -> "Coarse":
        return Coarse(self.spec[rows], self.best[rows],
                      None if self.lean is None else self.lean[rows], self.lim_lo[rows],
                      self.lim_hi[rows], self.chi2[rows], self.halfwidth)


def coarse_stage(prep: Prepared, basis: Basis, spec, centres, halfwidth: int,
                 coarse: tuple[Prepared, Basis, int] | None = None,
                 lo_limit: int | None = None) -> Coarse:
    """Coarse scan of ``centres ± halfwidth`` on the binned data of ``coarse`` (prep, basis,
    factor) — or every other pixel without it; :func:`fine_stage` then scans (−1, 0, +1) at
    full resolution around its minimum, walking on while the minimum is at an end, and puts a
    parabola through the integer minimum and its neighbours.

    ``lo_limit``: smallest shift allowed (e.g. z ≥ −0.005); centres are moved above it."""
    plan = coarse_plan(prep, basis, spec, centres, halfwidth, coarse, lo_limit)
    return plan.finish(scan(*plan.job))


@dataclass
class CoarsePlan:
    """The scan of :func:`coarse_stage` (``job``: :func:`.fit.scan`'s arguments) and what
    turns its χ² into a :class:`Coarse` — split so that :mod:`.windows` can make the scans of
    all its groups with one Cholesky (:func:`.fit.scan_all`)."""
    job: tuple
    centres: np.ndarray
    halfwidth: int
    factor: int | None

    def finish(self, chi2: np.ndarray) -> Coarse:
        _, _, spec, kc, offs = self.job
        centres, halfwidth, fac = self.centres, self.halfwidth, self.factor
        j = np.argmin(chi2, axis=1)
        if fac is not None:
            best = fac * (kc + offs[j])
            lean = _lean(chi2, j)
        else:
            best = centres + offs[j]
            lean = None
        return Coarse(spec, best, lean, centres - halfwidth - 3, centres + halfwidth + 3,
                      chi2.min(axis=1) if chi2.shape[1] else np.full(len(spec), np.inf),
                      halfwidth)


def coarse_plan(prep: Prepared, basis: Basis, spec, centres, halfwidth: int,
                coarse: tuple[Prepared, Basis, int] | None = None,
                lo_limit: int | None = None) -> CoarsePlan:
    """:func:`coarse_stage`'s scan, not made yet (same arguments)."""
    spec = np.asarray(spec, np.int64)
    centres = np.asarray(np.rint(centres), np.int64)
    if lo_limit is not None:
        centres = np.maximum(centres, lo_limit + halfwidth)
    if coarse is not None:
        pb, bb, fac = coarse
        kc = np.rint(centres / fac).astype(np.int64)
        hb = -(-halfwidth // fac)
        return CoarsePlan((pb, bb, spec, kc, np.arange(-hb, hb + 1)), centres, halfwidth, fac)
    offs = np.arange(-halfwidth, halfwidth + 1, 2)
    return CoarsePlan((prep, basis, spec, centres, offs), centres, halfwidth, None)


def fine_stage(prep: Prepared, basis: Basis, c: Coarse) -> Refined:
    """The fine walk and parabola from the coarse stage ``c`` (:func:`coarse_stage`)."""
    spec, lim_lo, lim_hi = c.spec, c.lim_lo, c.lim_hi
    best, c3, coef = _walk(prep, basis, spec, c.best, lim_lo, lim_hi, lean=c.lean)
    cm, c0, cp = c3[:, 0], c3[:, 1], c3[:, 2]
    curv = cm - 2 * c0 + cp
    ok = curv > 0
    delta = np.where(ok, (cm - cp) / (2 * np.where(ok, curv, 1.0)), 0.0).clip(-0.5, 0.5)
    err = np.where(ok, np.sqrt(2.0 / np.where(ok, curv, 1.0)), float(c.halfwidth))
    chi_min = np.where(ok, c0 - 0.5 * curv * delta ** 2, c0)
    edge = (best <= lim_lo + 1) | (best >= lim_hi - 1)
    coef = coef * prep.scale[spec][:, None]
    return Refined(best + delta, err, chi_min, coef, edge, np.asarray(best, np.int64))
